#!/usr/bin/env bash
# Record the ABI of libfaultline.so as the new baseline (abi/libfaultline.abi),
# on purpose: after adding to the public API, or after an incompatible
# change that comes with a new version node in src/libfaultline.map and a
# new soname. The `abi` test (tests/abi/check-abi.sh) compares every
# build's library with this file and fails on any difference.
#
#   scripts/abi-update.sh [BUILD_DIR]     (default build/; a normal build,
#                                          with debug info, not a sanitizer one)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

scripts/setup.sh
[ -f "$build/build.ninja" ] || meson setup "$build" -Dwerror=true >/dev/null
ninja -C "$build" >/dev/null
so=$(find "$build/src" -maxdepth 1 -type f -name 'libfaultline.so.*.*' | head -1)
[ -n "$so" ] || { echo "abi-update: no libfaultline.so.X.Y in $build/src" >&2; exit 1; }
if ! readelf -S "$so" | grep -c '\.debug_info' >/dev/null; then
	echo "abi-update: $so has no debug info: use a build with -g (buildtype debug or debugoptimized)" >&2
	exit 1
fi
# Only types of the public headers; no paths of this machine; type ids
# hashed from the types themselves, so an unrelated change does not
# renumber the whole file.
abidw --headers-dir include/faultline --drop-private-types --drop-undefined-syms \
	--no-corpus-path --no-comp-dir-path --short-locs --type-id-style hash \
	--out-file abi/libfaultline.abi "$so"
echo "abi-update: abi/libfaultline.abi now records $so"
git --no-pager diff --stat -- abi/libfaultline.abi || true
