#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# libfaultline as an outsider gets it: `meson install` of this build into a
# temporary root (DESTDIR), then tests/install/consumer.c compiled and run
# against what was installed, with flags from pkg-config alone: once
# against the shared library, once against the static one
# (`pkg-config --static`, with the shared library taken out of the root
# as a static-only install has it); then `man` reads an installed page.
# TAP; skips only without pkg-config (and the man check without man or
# without the pages, which need scdoc).
#   test_install.sh BUILD_DIR CONSUMER_C PREFIX LIBDIR MANDIR B_SANITIZE CC...
set -uo pipefail
build=$1 consumer=$2 prefix=$3 libdir=$4 mandir=$5 sanitize=$6
shift 6
cc=("$@")
tests=(meson_install_puts_library_headers_pc_and_man_pages_in_the_prefix
	shared_consumer_builds_with_pkg_config_and_runs
	static_consumer_builds_with_pkg_config_static_and_runs
	man_faultline_migrate_reads_the_installed_page)
n=0
failed=0
say() { printf '%s\n' "$*"; }
ok() { n=$((n + 1)); say "ok $n - test_$1${2:+ # SKIP $2}"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); say "not ok $n - test_$1"; sed 's/^/# /' "$2" | tail -30; }

say "1..${#tests[@]}"
if ! command -v pkg-config >/dev/null; then
	for t in "${tests[@]}"; do ok "$t" "pkg-config is not installed"; done
	exit 0
fi
tmp=$(mktemp -d /tmp/fl-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $mandir in /*) ;; *) mandir=$prefix/$mandir ;; esac

# The consumer is built strictly, as ISO C11 (the public headers need no
# GNU extension); in a sanitizer build the library needs the sanitizer
# runtime, so the consumer links it too.
cflags=(-std=c11 -Wall -Wextra -Werror)
[ "$sanitize" != none ] && cflags+=("-fsanitize=$sanitize")

# 1. Install. PKG_CONFIG_SYSROOT_DIR puts the root in front of the paths
# the .pc files give, as for any staged (DESTDIR) install; the system
# libraries' own paths get it too, harmlessly (they do not exist there,
# and the compiler and linker fall back to their default paths).
root=$tmp/root
if ! meson install -C "$build" --no-rebuild --destdir "$root" >"$tmp/install.log" 2>&1; then
	not_ok "${tests[0]}" "$tmp/install.log"
	for t in "${tests[@]:1}"; do ok "$t" "meson install failed"; done
	exit 1
fi
missing=""
for f in "$libdir/libfaultline.so" "$libdir/libfaultline.a" "$libdir/pkgconfig/libfaultline.pc" \
	"$prefix/include/faultline/uffd.h" "$prefix/include/faultline/vmm.h" "$prefix/bin/faultline"; do
	[ -e "$root$f" ] || missing+=" $f"
done
if [ -e "$build/doc/faultline.1" ]; then # the man pages, when scdoc built them
	for f in "$build"/doc/*.[13]; do
		f=man${f##*.}/${f##*/}
		[ -e "$root$mandir/$f" ] || missing+=" $mandir/$f"
	done
fi
if [ -z "$missing" ]; then
	ok "${tests[0]}"
else
	echo "not installed:$missing" >"$tmp/missing"
	(cd "$root" && find . -type f) >>"$tmp/missing"
	not_ok "${tests[0]}" "$tmp/missing"
fi

# build_and_run NAME ROOT PKG-CONFIG-ARGS...: compile and link the consumer
# with nothing but pkg-config's flags, then run it from the installed tree.
build_and_run() {
	local name=$1 r=$2 flags status
	shift 2
	flags=$(PKG_CONFIG_SYSROOT_DIR=$r PKG_CONFIG_PATH=$r$libdir/pkgconfig \
		pkg-config "$@" --cflags --libs libfaultline 2>"$tmp/$name.log") || return 1
	echo "pkg-config $* --cflags --libs libfaultline: $flags" >>"$tmp/$name.log"
	# shellcheck disable=SC2086 # pkg-config's output is a list of words
	"${cc[@]}" "${cflags[@]}" -o "$tmp/$name" "$consumer" $flags >>"$tmp/$name.log" 2>&1 || return 1
	LD_LIBRARY_PATH=$r$libdir "$tmp/$name" >>"$tmp/$name.log" 2>&1
	status=$?
	[ $status -eq 77 ] && return 77
	[ $status -eq 0 ] || return 1
	readelf -d "$tmp/$name" | grep NEEDED >"$tmp/$name.needed"
	LD_LIBRARY_PATH=$r$libdir ldd "$tmp/$name" >>"$tmp/$name.log" 2>&1
}

# 2. Shared: it must need libfaultline.so, and load the installed one.
build_and_run shared "$root"
s=$?
if [ $s -eq 77 ]; then
	ok "${tests[1]}" "$(tail -1 "$tmp/shared.log")"
elif [ $s -eq 0 ] && grep -q 'libfaultline\.so' "$tmp/shared.needed" &&
     grep -q "libfaultline\.so.* => $root" "$tmp/shared.log"; then
	ok "${tests[1]}"
else
	not_ok "${tests[1]}" "$tmp/shared.log"
fi

# 3. Static: the same root without the shared library; the linker takes
# libfaultline.a, and only --static's Requires.private complete it.
sroot=$tmp/static-root
cp -a "$root" "$sroot"
rm -f "$sroot$libdir"/libfaultline.so*
build_and_run static "$sroot" --static
s=$?
if [ $s -eq 77 ]; then
	ok "${tests[2]}" "$(tail -1 "$tmp/static.log")"
elif [ $s -eq 0 ] && ! grep -q 'libfaultline' "$tmp/static.needed"; then
	ok "${tests[2]}"
else
	cat "$tmp/static.needed" >>"$tmp/static.log" 2>/dev/null
	not_ok "${tests[2]}" "$tmp/static.log"
fi

# 4. The man pages, read by man from the installed tree.
if [ ! -e "$build/doc/faultline.1" ]; then
	ok "${tests[3]}" "the man pages were not built (no scdoc: scripts/setup.sh installs it)"
elif ! command -v man >/dev/null; then
	ok "${tests[3]}" "man is not installed (Debian package man-db)"
elif MANPAGER=cat MANWIDTH=80 man -M "$root$mandir" faultline-migrate >"$tmp/man.log" 2>&1 &&
     grep -q "faultline-migrate" "$tmp/man.log" && grep -q -- "--cert-name" "$tmp/man.log"; then
	ok "${tests[3]}"
else
	not_ok "${tests[3]}" "$tmp/man.log"
fi
exit $((failed > 0))
