#!/usr/bin/env bash
# The library shows the world exactly its public API:
#  1. every global symbol the static library defines is public (fl_),
#     internal (fl__) or protobuf-c's generated code (faultline__);
#  2. the shared library exports exactly the names src/libfaultline.map lists;
#  3. the map lists exactly the fl_ names the public headers declare that
#     the library defines (static inline helpers are not symbols).
# TAP output; usage: check-exports.sh LIBFAULTLINE.a LIBFAULTLINE.so MAP INCLUDE_DIR
set -uo pipefail
a=$1 so=$2 map=$3 inc=$4
echo "1..3"
status=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# AddressSanitizer adds an ODR indicator (__odr_asan.NAME) per global: the
# compiler's, not ours.
nm -g --defined-only "$a" 2>/dev/null | awk 'NF==3 && $2 ~ /[TDBRV]/ {print $3}' |
	grep -v '^__odr_asan\.' | sort -u >"$tmp/static"
grep -vE '^(fl_|fl__|faultline__)' "$tmp/static" >"$tmp/bad"
if [ -s "$tmp/bad" ]; then
	status=1; echo "not ok 1 - static library defines unprefixed globals: $(tr '\n' ' ' <"$tmp/bad")"
else
	echo "ok 1 - every global of the static library is fl_, fl__ or faultline__"
fi

nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | grep -v '^FAULTLINE_' | sort -u >"$tmp/so"
grep -oE '^[[:space:]]+fl_[a-z0-9_]+;' "$map" | tr -d ' \t;' | sort -u >"$tmp/map"
if diff -u "$tmp/map" "$tmp/so" >"$tmp/d1"; then
	echo "ok 2 - the shared library exports exactly the map's $(wc -l <"$tmp/map") names"
else
	status=1; echo "not ok 2 - exports differ from the map:"; sed 's/^/# /' "$tmp/d1"
fi

cat "$inc"/faultline/*.h | grep -oE '\bfl_[a-z0-9_]+\b' | sort -u >"$tmp/named"
comm -12 "$tmp/named" "$tmp/static" >"$tmp/public"
if diff -u "$tmp/public" "$tmp/map" >"$tmp/d2"; then
	echo "ok 3 - the map is the public headers' API"
else
	status=1; echo "not ok 3 - map and public headers differ (- headers, + map):"; sed 's/^/# /' "$tmp/d2"
fi
exit $status
