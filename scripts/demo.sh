#!/usr/bin/env bash
# Build faultline and run the main demo (installs what it needs).
#
# Post-copy live migration of a running program with a few GiB of memory
# between two network namespaces, over TLS with client certificates: the
# program keeps writing while it is pre-copied in rounds, is paused, resumes
# on the destination at once, its remaining pages follow on demand and in
# the background, and it then checks every page of its memory and compares
# it with the source's at the switch-over (SHA-256).
#   scripts/demo.sh [MiB]        (default 2048)
# The lazy restore from a snapshot: examples/lazy-restore/demo.sh build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build src/cli/faultline examples/migrate-workload >/dev/null
echo "== faultline probe (what this machine offers)"
build/src/cli/faultline probe | sed -n '1p;/PAGEMAP_SCAN/,$p'
echo
exec examples/migrate/demo.sh build "${1:-2048}"
