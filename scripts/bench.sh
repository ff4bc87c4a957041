#!/usr/bin/env bash
# Build an optimized faultline and run the benchmark table (installs what
# it needs). Arguments go to bench: --quick, --json, --mib N, --reps N.
#
# scripts/bench.sh --forktree [--mib N] [--procs N] runs bench-forktree
# instead: a lazy restore whose restored process forks N workers that all
# read the image (bytes read per byte of image, pages installed, time,
# beside the first-touch and UFFDIO_COPY rates).
set -euo pipefail
cd "$(dirname "$0")/.."
target=bench/bench
if [ "${1:-}" = --forktree ]; then
	target=bench/bench-forktree
	shift
fi
scripts/setup.sh
[ -f build-release/build.ninja ] || meson setup build-release -Dbuildtype=release -Dtests=false >/dev/null
ninja -C build-release "$target" >/dev/null
exec "build-release/$target" "$@"
