#!/usr/bin/env bash
# Build an optimized faultline and run the benchmark table (installs what
# it needs). Arguments go to bench: --quick, --json, --mib N, --reps N.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f build-release/build.ninja ] || meson setup build-release -Dbuildtype=release -Dtests=false >/dev/null
ninja -C build-release bench/bench >/dev/null
exec build-release/bench/bench "$@"
