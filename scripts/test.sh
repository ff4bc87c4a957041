#!/usr/bin/env bash
# Build faultline and run the whole test suite (installs what it needs).
#
#   scripts/test.sh              the normal build, in build/
#   scripts/test.sh --sanitize   AddressSanitizer + UBSan build, in build-sanitize/
#
# Extra arguments after `--` go to `meson test` (e.g. -- --suite uffd).
# Hugetlb tests need free 2 MiB huge pages; as root, this script reserves
# some for the run and gives them back afterwards (FL_NO_HUGEPAGES=1 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
opts=(-Dwerror=true)
while [ $# -gt 0 ]; do
	case "$1" in
	--sanitize) dir=build-sanitize
		opts+=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug) ;;
	--) shift; break ;;
	*) echo "usage: $0 [--sanitize] [-- meson-test-args]" >&2; exit 2 ;;
	esac
	shift
done

scripts/setup.sh
if [ ! -f "$dir/build.ninja" ]; then
	meson setup "$dir" "${opts[@]}" >/dev/null
else
	meson configure "$dir" "${opts[@]}" >/dev/null
fi
ninja -C "$dir" >/dev/null

hp=/proc/sys/vm/nr_hugepages
restore=""
if [ "$(id -u)" -eq 0 ] && [ -z "${FL_NO_HUGEPAGES:-}" ] && [ -w "$hp" ]; then
	free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
	if [ "$free" -lt 32 ]; then
		restore=$(cat "$hp")
		echo $((restore + 32)) > "$hp"
		trap 'echo "$restore" > "$hp"' EXIT
	fi
fi

status=0
meson test -C "$dir" --print-errorlogs "$@" || status=$?
python3 scripts/tap-summary.py "$dir"
exit $status
