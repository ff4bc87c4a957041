#!/usr/bin/env bash
# Build faultline and run the main demo (installs what it needs).
#
# Today the demo is a local lazy restore: a program's memory is saved to a
# sparse snapshot, then a new process runs on empty memory while faultline
# serves each missing page from the snapshot through userfaultfd and streams
# the rest; the process verifies its memory (SHA-256) at the end.
#   scripts/demo.sh [--mib N]      (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build examples/local-restore src/cli/faultline >/dev/null
echo "== faultline probe (what this machine offers)"
build/src/cli/faultline probe | sed -n '1p;/PAGEMAP_SCAN/,$p'
echo
echo "== lazy restore"
exec build/examples/local-restore "$@"
