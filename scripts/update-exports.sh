#!/usr/bin/env bash
# Rewrite src/libfaultline.map from what the public headers declare and the
# built library defines (run after adding or removing a public function;
# tests/abi/check-exports.sh fails until the map matches).
#   scripts/update-exports.sh [BUILD_DIR]   (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ninja -C "$build" src/libfaultline.a >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -g --defined-only "$build/src/libfaultline.a" 2>/dev/null |
	awk 'NF==3 && $2 ~ /[TDBRV]/ {print $3}' | grep '^fl_[a-z]' | sort -u >"$tmp/defined"
cat include/faultline/*.h | grep -oE '\bfl_[a-z0-9_]+\b' | sort -u >"$tmp/named"
{
	sed -n '1,/^FAULTLINE_0.1 {/p' src/libfaultline.map
	echo "	global:"
	comm -12 "$tmp/named" "$tmp/defined" | sed 's/^/		/; s/$/;/'
	echo "	local:"
	echo "		*;"
	echo "};"
} >"$tmp/map"
mv "$tmp/map" src/libfaultline.map
echo "src/libfaultline.map: $(grep -c '^		fl_' src/libfaultline.map) public names"
