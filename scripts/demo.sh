#!/usr/bin/env bash
# Build faultline and run the main demo (installs what it needs).
#
# A lazy restore of a real multi-process workload: a program fills memory
# and is snapshotted (faultline snapshot --pid ... --kill); a monitor
# serves the snapshot (faultline monitor); the program is restored on empty
# memory and runs at once while its pages arrive; three children fork off
# and mremap, MADV_DONTNEED and munmap their copies; every process checks
# what it reads and the parent compares the SHA-256 of all its memory with
# the snapshot's. The monitor prints its statistics at the end.
#   scripts/demo.sh [MiB]          (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build src/cli/faultline examples/lazy-workload examples/lazy-workload-source >/dev/null
echo "== faultline probe (what this machine offers)"
build/src/cli/faultline probe | sed -n '1p;/PAGEMAP_SCAN/,$p'
echo
exec examples/lazy-restore/demo.sh build "${1:-1024}"
