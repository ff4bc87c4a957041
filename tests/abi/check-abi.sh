#!/usr/bin/env bash
# The ABI of the built libfaultline.so is the recorded one
# (abi/libfaultline.abi): abidiff, over the types of the public headers
# only, must find no difference, compatible or not. A change on purpose is
# recorded with scripts/abi-update.sh (README: "The ABI baseline").
# A sanitizer build is compared too: the instrumentation exports no
# symbol and changes no public type, so its ABI is the normal build's.
# TAP output; usage: check-abi.sh LIBFAULTLINE.so BASELINE INCLUDE_DIR
set -uo pipefail
so=$1 baseline=$2 headers=$3
name="test_abi_equals_the_baseline"
echo "1..1"
if ! command -v abidiff >/dev/null; then
	echo "ok 1 - $name # SKIP abidiff is not installed (Debian package abigail-tools; scripts/setup.sh installs it)"
	exit 0
fi
if ! readelf -S "$so" | grep -c '\.debug_info' >/dev/null; then
	echo "ok 1 - $name # SKIP $so was built without debug info (-g): abidiff would see symbols only"
	exit 0
fi
report=$(mktemp)
trap 'rm -f "$report"' EXIT
abidiff --headers-dir2 "$headers" --drop-private-types "$baseline" "$so" >"$report" 2>&1
status=$?
if [ $status -eq 0 ]; then
	echo "ok 1 - $name"
	exit 0
fi
# abidiff's status is a bit set: 1 error, 2 usage, 4 ABI change,
# 8 incompatible ABI change.
if [ $((status & 8)) -ne 0 ]; then
	what="INCOMPATIBLE ABI change (existing programs break): bump the version node in src/libfaultline.map and the soname"
elif [ $((status & 4)) -ne 0 ]; then
	what="ABI change (an addition, or a public type changed)"
else
	what="abidiff failed (status $status)"
fi
echo "not ok 1 - $name: $what"
sed 's/^/# /' "$report"
echo "# if the change is on purpose: scripts/abi-update.sh, and commit abi/libfaultline.abi with it"
exit 1
