#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build a small 6.12 kernel with and/or without the faultline patch series,
# boot it under QEMU with static test programs in an initramfs, and check
# each test's result against the expectation for that kernel.
#
#   src/kernel-patches/run.sh [--both|--patched|--unpatched] [--debug]
#                             [--kcsan] [--control] [--host] [--tests a,b]
#                             [--kvm] [--boot-timeout S] [--suite-timeout S]
#                             [--dirty-seconds S] [--suite-filter TEXT]
#
# See README.md next to this script. Build trees live outside the repository
# in $FAULTLINE_KERNEL_CACHE (default /var/cache/faultline-kernel) and are
# built in place, so a second run only rebuilds what changed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${FAULTLINE_KERNEL_CACHE:-/var/cache/faultline-kernel}
SRC_PKG=linux-source-6.12
TARBALL=/usr/src/linux-source-6.12.tar.xz
FRAGMENT=$HERE/faultline.config
DEBUG_FRAGMENT=$HERE/faultline-debug.config
KCSAN_FRAGMENT=$HERE/faultline-kcsan.config
JOBS=${FAULTLINE_KERNEL_JOBS:-2}
BOOT_TIMEOUT=
# the project's own uffd suite (tests/uffd/test_*), built with meson in
# $PROJECT_BUILD, run in the guest by tap_runner: one result per program
SUITE_PROGS=test_resolve,test_contract,test_events,test_dirty,test_api,test_compat
SUITE_TIMEOUT=120
# test_dirty's stress per case in the guest (FL_DIRTY_SECONDS); longer runs
# hunt for rare misses. A filter runs only the suite cases naming it.
DIRTY_SECONDS=1
SUITE_FILTER=
ALL_TESTS=exit_event,uffd_selftest,pinned_scan,fork_pid,pagemap_selftest,wp_racewrite
ALL_TESTS+=,$(echo "$SUITE_PROGS" | sed 's/\([^,]*\)/uffd_suite_\1/g')
TESTS=$ALL_TESTS
KINDS=(unpatched patched)
RUN_HOST=0
TRY_KVM=0
DEBUG=0
KCSAN=0
CONTROL=0

# Tests that need the series: they must FAIL without it (expected failures)
# and PASS with it. All others must PASS on every kernel. An expected
# failure counts only with its own reason: the FAIL line must match this
# extended regular expression, or the result is WRONG-REASON.
declare -A NEEDS_SERIES=([exit_event]=1 [uffd_selftest]=1 [pinned_scan]=1 [fork_pid]=1)
declare -A FAIL_REASON=(
	[exit_event]='UFFDIO_API rejects UFFD_FEATURE_EVENT_EXIT'
	[uffd_selftest]='events-exit skipped: kernel lacks UFFD_FEATURE_EVENT_EXIT'
	[pinned_scan]='missed write through a pin: after-reset .* straddle '
	[fork_pid]='fork event pid 0 .*does not report the child'"'"'s pid'
)
# Negative controls (--control): the patched kernel with an old fix
# reverted (tests/negative/*.patch) must fail each regression test, for
# the reason given here; proof that the test can see the bug at all.
CONTROL_TESTS=wp_racewrite
declare -A CONTROL_REASON=(
	[wp_racewrite]='tracker missed a write'
)

usage() {
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--both) KINDS=(unpatched patched) ;;
	--patched) KINDS=(patched) ;;
	--unpatched) KINDS=(unpatched) ;;
	--debug) DEBUG=1 ;;
	--kcsan) KCSAN=1 ;;
	--control) CONTROL=1 ;;
	--host) RUN_HOST=1 ;;
	--tests) TESTS=$2; shift ;;
	--kvm) TRY_KVM=1 ;;
	--boot-timeout) BOOT_TIMEOUT=$2; shift ;;
	--suite-timeout) SUITE_TIMEOUT=$2; shift ;;
	--dirty-seconds) DIRTY_SECONDS=$2; shift ;;
	--suite-filter) SUITE_FILTER=$2; shift ;;
	-h|--help) usage ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage ;;
	esac
	shift
done
[ "$DEBUG" = 1 ] && KINDS+=(debug)
[ "$KCSAN" = 1 ] && KINDS+=(kcsan)
[ "$CONTROL" = 1 ] && KINDS+=(control)
# the tests each kind boots with
kind_tests() {
	case $1 in
	control) echo "$CONTROL_TESTS" ;;
	*) echo "$TESTS" ;;
	esac
}
sanitizer_kind() { [ "$1" = debug ] || [ "$1" = kcsan ]; }

log() { printf '[run.sh] %s\n' "$*" >&2; }
die() { printf '[run.sh] error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

PROJECT_BUILD=$CACHE/project-build
# where a suite program lives in the project: tests/uffd, else tests/monitor
suite_path() {
	case $1 in
	test_monitor) echo "tests/monitor/$1" ;;
	*) echo "tests/uffd/$1" ;;
	esac
}
# the suite programs among the selected tests (test_resolve ...)
suite_progs() {
	local t
	for t in ${TESTS//,/ }; do
		case $t in uffd_suite_*) echo "${t#uffd_suite_}" ;; esac
	done
}
# whole-guest limit: kernel hangs only, every test has its own limit
if [ -z "$BOOT_TIMEOUT" ]; then
	BOOT_TIMEOUT=$((300 + 40 * $(echo "${TESTS//,/ }" | wc -w) +
			(SUITE_TIMEOUT + 15) * $(suite_progs | wc -l)))
	{ [ "$DEBUG" = 1 ] || [ "$KCSAN" = 1 ]; } && BOOT_TIMEOUT=$((BOOT_TIMEOUT * 4))
fi

# ---------------------------------------------------------------- packages
ensure_packages() {
	local pkgs=(linux-source-6.12 qemu-system-x86 ccache gcc make flex bison bc
		    libelf-dev libssl-dev cpio lz4 xz-utils perl git libc6-dev)
	local missing=() p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root or install them)"
	log "installing ${missing[*]}"
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------ source trees
SRC_VERSION=
tree_dir() { echo "$CACHE/6.12/$1"; }

# unpack the Debian source once per package version
ensure_tree() {
	local kind=$1 dir stamp
	dir=$(tree_dir "$kind")
	stamp=$dir/.faultline-source
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$SRC_VERSION" ]; then
		return 0
	fi
	rm -rf "$dir"
	# the other patched kinds start as a copy of the built patched tree:
	# no unpacking, and the control kernel recompiles only what its
	# reverts touch (cp -a keeps the timestamps make compares)
	if [ "$kind" != unpatched ] && [ "$kind" != patched ] &&
	   [ "$(cat "$(tree_dir patched)/.faultline-source" 2>/dev/null)" = "$SRC_VERSION" ]; then
		log "copying the patched tree to $dir"
		cp -a "$(tree_dir patched)" "$dir"
		return 0
	fi
	log "unpacking $SRC_PKG $SRC_VERSION into $dir"
	mkdir -p "$dir"
	tar -xf "$TARBALL" -C "$dir" --strip-components=1
	if [ "$kind" != unpatched ]; then
		# a git repository, so the series is applied with git am
		(cd "$dir" &&
		 git init -q -b base &&
		 git config user.name "faultline harness" &&
		 git config user.email dev@faultline.invalid &&
		 git add -f -A . &&
		 git commit -q -m "$SRC_PKG $SRC_VERSION" &&
		 git tag pristine)
	fi
	echo "$SRC_VERSION" > "$stamp"
}

series() { ls "$HERE"/0[0-9][0-9][0-9]-*.patch | grep -v '/0000-cover-letter.patch$'; }
# what a tree of this kind carries: the series, plus the reverts for control
kind_patches() {
	series
	[ "$1" = control ] && ls "$HERE"/tests/negative/*.patch
	return 0
}

# apply the series unless exactly these changes are already on top of pristine
ensure_series() {
	local dir want have
	dir=$(tree_dir "$1")
	want=$(cat $(kind_patches "$1") | git -C "$dir" patch-id --stable | awk '{print $1}' | sort)
	have=$(git -C "$dir" format-patch --stdout pristine..HEAD 2>/dev/null |
	       git -C "$dir" patch-id --stable | awk '{print $1}' | sort)
	if [ -n "$want" ] && [ "$want" = "$have" ]; then
		log "series already applied to $dir"
		return 0
	fi
	# a copy of the patched tree: add only the reverts, so that make
	# recompiles only what they touch
	if [ "$1" = control ] && [ -n "$have" ] &&
	   [ "$have" = "$(cat $(series) | git -C "$dir" patch-id --stable | awk '{print $1}' | sort)" ]; then
		log "applying the negative-control reverts to $dir"
		git -C "$dir" am -q "$HERE"/tests/negative/*.patch ||
			die "the negative-control reverts do not apply"
		return 0
	fi
	log "applying $(kind_patches "$1" | wc -l) patches to $dir"
	git -C "$dir" am --abort >/dev/null 2>&1 || true
	git -C "$dir" checkout -q -B faultline pristine
	git -C "$dir" am -q $(kind_patches "$1") || die "series does not apply to $SRC_PKG $SRC_VERSION"
}

# tinyconfig + fragment(s), redone only when a fragment changed
ensure_config() {
	local dir=$1 sum frags=("$FRAGMENT")
	[ "$(basename "$dir")" = debug ] && frags+=("$DEBUG_FRAGMENT")
	[ "$(basename "$dir")" = kcsan ] && frags+=("$KCSAN_FRAGMENT")
	sum=$(cat "${frags[@]}" | sha256sum | cut -c1-16)
	if [ -f "$dir/.config" ] && [ "$(cat "$dir/.faultline-config" 2>/dev/null)" = "$sum" ]; then
		return 0
	fi
	log "configuring $dir (tinyconfig + $(basename -a "${frags[@]}" | paste -sd+))"
	(cd "$dir" &&
	 make -s tinyconfig >/dev/null &&
	 scripts/kconfig/merge_config.sh -m .config "${frags[@]}" >/dev/null &&
	 make -s olddefconfig >/dev/null)
	local opt
	for opt in $(cat "${frags[@]}" | grep -o '^CONFIG_[A-Z0-9_]*=y' | cut -d= -f1); do
		grep -q "^$opt=y" "$dir/.config" || log "warning: $opt did not stick in .config"
	done
	echo "$sum" > "$dir/.faultline-config"
}

build_kernel() {
	local kind=$1 dir cc=gcc t0 logf
	dir=$(tree_dir "$kind")
	command -v ccache >/dev/null && cc="ccache gcc"
	logf=$CACHE/logs/build-$kind.log
	t0=$(now)
	log "building $kind kernel (make -j$JOBS, CC='$cc', log $logf)"
	if ! nice -n 10 make -C "$dir" -j"$JOBS" CC="$cc" bzImage > "$logf" 2>&1; then
		tail -30 "$logf" >&2
		die "$kind kernel build failed"
	fi
	BUILD_TIME[$kind]=$(since "$t0")
	log "$kind kernel built in ${BUILD_TIME[$kind]} s"
}

# ------------------------------------------------------------------ tests
build_tests() {
	local out=$CACHE/tests-bin t src
	mkdir -p "$out"
	for src in "$HERE"/tests/*.c; do
		t=$(basename "$src" .c)
		if [ ! -x "$out/$t" ] || [ "$src" -nt "$out/$t" ] ||
		   [ "$HERE/tests/fl_kabi.h" -nt "$out/$t" ] || [ "$HERE/tests/fl_ring.h" -nt "$out/$t" ] ||
		   [ "$HERE/../../include/faultline/linux-compat.h" -nt "$out/$t" ]; then
			gcc -static -O2 -Wall -Wextra -Werror -pthread \
				-I "$HERE/../../include" -o "$out/$t" "$src" ||
				die "cannot build test $t"
		fi
	done
}

# the project's uffd suite, from this checkout, in a build directory of
# its own (CI owns build/ and build-sanitize/); ninja rebuilds what changed
build_suite() {
	local progs=() p
	mapfile -t progs < <(suite_progs)
	[ ${#progs[@]} -gt 0 ] || return 0
	command -v meson >/dev/null && command -v ninja >/dev/null ||
		die "the uffd suite needs meson and ninja (and the project's build dependencies)"
	if [ ! -f "$PROJECT_BUILD/build.ninja" ]; then
		log "configuring the project in $PROJECT_BUILD"
		nice -n 10 meson setup "$PROJECT_BUILD" "$REPO" > "$CACHE/logs/project-setup.log" 2>&1 || {
			tail -20 "$CACHE/logs/project-setup.log" >&2
			die "meson setup failed"
		}
	fi
	if ! nice -n 10 ninja -C "$PROJECT_BUILD" -j"$JOBS" \
	     $(for p in "${progs[@]}"; do suite_path "$p"; done) > "$CACHE/logs/project-build.log" 2>&1; then
		tail -30 "$CACHE/logs/project-build.log" >&2
		die "cannot build the uffd suite (log $CACHE/logs/project-build.log)"
	fi
}

# initramfs entries for the suite programs and every shared object ldd
# lists for them, at the same paths, with their parent directories; the
# library directories go to /etc/faultline-ld-library-path for /init
suite_initramfs_entries() {
	local progs=() p lib d libs=() dirs=() libdirs=()
	local -A seen=()
	mapfile -t progs < <(suite_progs)
	[ ${#progs[@]} -gt 0 ] || return 0
	echo "file /bin/tap_runner $CACHE/tests-bin/tap_runner 0755 0 0"
	for p in "${progs[@]}"; do
		[ -x "$PROJECT_BUILD/$(suite_path "$p")" ] || die "no suite program '$p' in $PROJECT_BUILD"
		echo "file /bin/$p $PROJECT_BUILD/$(suite_path "$p") 0755 0 0"
		ldd "$PROJECT_BUILD/$(suite_path "$p")" | grep -q 'not found' &&
			die "ldd $p: a library is not found"
		# "name => /path (addr)" and "/path (addr)"; the vDSO has no path
		for lib in $(ldd "$PROJECT_BUILD/$(suite_path "$p")" |
			     awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
			[ -n "${seen[$lib]:-}" ] && continue
			seen[$lib]=1
			libs+=("$lib")
		done
	done
	for lib in "${libs[@]}"; do
		d=$(dirname "$lib")
		[ -n "${seen[lib:$d]:-}" ] || { seen[lib:$d]=1; libdirs+=("$d"); }
		while [ "$d" != / ]; do
			dirs+=("$d")
			d=$(dirname "$d")
		done
	done
	for d in $(printf '%s\n' "${dirs[@]}" /etc | sort -u); do
		[ "$d" = /bin ] || [ "$d" = /tmp ] || echo "dir $d 0755 0 0"
	done
	# gen_init_cpio reads through symlinks: each lands as a regular file
	for lib in "${libs[@]}"; do
		echo "file $lib $(readlink -f "$lib") 0755 0 0"
	done
	(IFS=:; echo "${libdirs[*]}") > "$CACHE/ld-library-path"
	echo "file /etc/faultline-ld-library-path $CACHE/ld-library-path 0644 0 0"
}

# the kernel's own selftests, static, from the patched tree against its own
# uapi headers: uffd-unit-tests (with the events-exit case of patch 1) and
# pagemap_ioctl (PAGEMAP_SCAN regression check for patch 2)
build_selftest() {
	local dir mm out=$CACHE/tests-bin
	dir=$(tree_dir patched)
	mm=$dir/tools/testing/selftests/mm
	if [ -x "$out/uffd-unit-tests" ] && [ "$out/uffd-unit-tests" -nt "$mm/uffd-unit-tests.c" ] &&
	   [ "$out/uffd-unit-tests" -nt "$dir/include/uapi/linux/userfaultfd.h" ] &&
	   [ -x "$out/pagemap_ioctl" ] && [ "$out/pagemap_ioctl" -nt "$dir/include/uapi/linux/fs.h" ]; then
		return 0
	fi
	log "building selftests/mm uffd-unit-tests and pagemap_ioctl (static)"
	make -s -C "$dir" headers >/dev/null 2>&1 || die "make headers failed in $dir"
	gcc -static -O2 -pthread -w -isystem "$dir/usr/include" -I "$dir/tools/include" \
		-o "$out/uffd-unit-tests" "$mm/uffd-unit-tests.c" "$mm/uffd-common.c" "$mm/vm_util.c" ||
		die "cannot build uffd-unit-tests"
	# relative source path: the test creates files named after __FILE__
	(cd "$mm" && gcc -static -O2 -pthread -w -isystem "$dir/usr/include" \
		-I "$dir/tools/include" -o "$out/pagemap_ioctl" pagemap_ioctl.c vm_util.c) ||
		die "cannot build pagemap_ioctl"
}

make_initramfs() {
	local out=$CACHE/tests-bin list=$CACHE/initramfs.list t
	local gen
	gen=$(tree_dir unpatched)/usr/gen_init_cpio
	[ -x "$gen" ] || gen=$(tree_dir patched)/usr/gen_init_cpio
	[ -x "$gen" ] || die "usr/gen_init_cpio not built"
	{
		echo "dir /bin 0755 0 0"
		echo "dir /dev 0755 0 0"
		echo "dir /proc 0755 0 0"
		echo "dir /sys 0755 0 0"
		echo "dir /tmp 1777 0 0"
		echo "nod /dev/console 0600 0 0 c 5 1"
		echo "file /init $out/init 0755 0 0"
		for t in $(echo "${TESTS//,/ }" "$([ "$CONTROL" = 1 ] && echo "${CONTROL_TESTS//,/ }")" |
			   tr ' ' '\n' | sort -u); do
			case $t in uffd_suite_*) continue ;; esac
			[ -x "$out/$t" ] || die "no test program '$t'"
			echo "file /bin/$t $out/$t 0755 0 0"
		done
		suite_initramfs_entries
		case ",$TESTS," in
		*,uffd_selftest,*)
			echo "file /bin/uffd-unit-tests $out/uffd-unit-tests 0755 0 0" ;;
		esac
		case ",$TESTS," in
		*,pagemap_selftest,*)
			echo "file /bin/pagemap_ioctl $out/pagemap_ioctl 0755 0 0" ;;
		esac
	} > "$list" || exit 1
	"$gen" "$list" > "$CACHE/initramfs.cpio"
}

boot() {
	local kind=$1 accel=$2 logf=$CACHE/logs/boot-$1.log limit=30 slimit=$SUITE_TIMEOUT
	# KASAN + lockdep under TCG is several times slower
	sanitizer_kind "$kind" && limit=150 && slimit=$((SUITE_TIMEOUT * 4))
	timeout --foreground -k 5 "$BOOT_TIMEOUT" \
		qemu-system-x86_64 -accel "$accel" -nographic -no-reboot \
		-kernel "$(tree_dir "$kind")/arch/x86/boot/bzImage" \
		-initrd "$CACHE/initramfs.cpio" \
		-append "console=ttyS0 panic=-1 fltests=$(kind_tests "$kind") fltimeout=$limit flsuitetimeout=$slimit fldirtyseconds=$DIRTY_SECONDS${SUITE_FILTER:+ flsuitefilter=$SUITE_FILTER}" \
		-smp 4 -m 512M < /dev/null > "$logf" 2>&1 || true
	tr -d '\r' < "$logf" > "$logf.txt"
	grep -q '^FAULTLINE-DONE' "$logf.txt"
}

boot_kernel() {
	local kind=$1 t0
	t0=$(now)
	# /dev/kvm on these machines cannot boot stock Linux guests (emulation
	# failures, see KERNEL-NOTES.md): TCG by default, KVM only when asked,
	# falling back to TCG.
	if [ "$TRY_KVM" = 1 ] && [ -w /dev/kvm ]; then
		local save=$BOOT_TIMEOUT
		BOOT_TIMEOUT=15
		if boot "$kind" kvm; then
			BOOT_TIMEOUT=$save
			BOOT_ACCEL[$kind]=kvm
			BOOT_TIME[$kind]=$(since "$t0")
			return 0
		fi
		BOOT_TIMEOUT=$save
		log "KVM boot of the $kind kernel failed, falling back to TCG"
		t0=$(now)
	fi
	BOOT_ACCEL[$kind]=tcg
	if ! boot "$kind" tcg; then
		log "$kind guest did not finish within $BOOT_TIMEOUT s; last lines:"
		tail -15 "$CACHE/logs/boot-$kind.log.txt" >&2
	fi
	BOOT_TIME[$kind]=$(since "$t0")
}

# What each failed case of suite program $1 said: the "prog! " lines
# (cmocka's messages) since the result before it, then its "not ok" line;
# at most 12 lines a case, 60 in all.
suite_failures() {
	awk -v p="$1" '
		index($0, p "! ") == 1 { if (n < 12) said[n++] = $0; next }
		index($0, p "| ok ") == 1 { n = 0; next }
		index($0, p "| not ok ") == 1 {
			for (i = 0; i < n; i++) print said[i]
			print; n = 0
		}' "$2" | head -60 | sed 's/^/      /'
}

# compare results (file with FAULTLINE-RESULT lines) to the expectation;
# mode: unpatched (the series' tests FAIL, each for its reason), patched
# (all PASS) or control (each test FAILs for the reason of its bug)
STATUS=0
check_results() {
	local where=$1 mode=$2 file=$3 tests=$4 t got want line why reason
	for t in ${tests//,/ }; do
		line=$(grep -a "^FAULTLINE-RESULT $t " "$file" | tail -1 || true)
		got=$(echo "$line" | awk '{print $3}')
		why=$(echo "$line" | cut -d' ' -f4-)
		[ -n "$got" ] || got=MISSING
		want=PASS
		reason=
		if [ "$mode" = unpatched ] && [ -n "${NEEDS_SERIES[$t]:-}" ]; then
			want=FAIL
			reason=${FAIL_REASON[$t]}
		elif [ "$mode" = control ]; then
			want=FAIL
			reason=${CONTROL_REASON[$t]}
		fi
		if [ "$got" != "$want" ]; then
			verdict=UNEXPECTED
			STATUS=1
		elif [ "$want" = FAIL ] && ! echo "$why" | grep -qE -- "$reason"; then
			verdict=WRONG-REASON
			STATUS=1
		elif [ "$want" = FAIL ]; then
			verdict="ok (expected failure, reason matched)"
		else
			verdict=ok
		fi
		printf '  %-10s %-24s %-5s %-8s %s\n' "$where" "$t" "$got" "$verdict" "$why"
		# a suite program that failed unexpectedly: show what its cases
		# said (cmocka's messages on stderr, prefixed "prog! " by
		# tap_runner), since CI keeps only this output, not the logs
		if [ "$verdict" = UNEXPECTED ] && [ "${t#uffd_suite_}" != "$t" ]; then
			suite_failures "${t#uffd_suite_}" "$file"
		fi
		[ "$verdict" = WRONG-REASON ] && printf '  %-10s %-24s       want a FAIL matching /%s/\n' \
			"$where" "$t" "$reason"
	done
	return 0
}

# ------------------------------------------------------------------- main
declare -A BUILD_TIME BOOT_TIME BOOT_ACCEL
mkdir -p "$CACHE/logs"
T_ALL=$(now)
ensure_packages
[ -f "$TARBALL" ] || die "$TARBALL missing after installing $SRC_PKG"
SRC_VERSION=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
build_tests
build_suite

# the patched tree is needed for the selftest source even with --unpatched
ensure_tree patched
ensure_series patched
build_selftest
for kind in "${KINDS[@]}"; do
	ensure_tree "$kind"
	[ "$kind" = patched ] || [ "$kind" = unpatched ] || ensure_series "$kind"
	ensure_config "$(tree_dir "$kind")"
	build_kernel "$kind"
done
make_initramfs
for kind in "${KINDS[@]}"; do
	log "booting $kind kernel"
	boot_kernel "$kind"
done

echo
echo "faultline kernel tests ($SRC_PKG $SRC_VERSION, series: $(series | wc -l) patches)"
for kind in "${KINDS[@]}"; do
	f=$CACHE/logs/boot-$kind.log.txt
	printf '%s kernel %s: build %s s, boot+tests %s s (%s, %s CPUs)\n' "$kind" \
		"$(grep -a '^FAULTLINE-KERNEL' "$f" | awk '{print $2}')" \
		"${BUILD_TIME[$kind]}" "${BOOT_TIME[$kind]}" "${BOOT_ACCEL[$kind]}" \
		"$(grep -a '^FAULTLINE-CPUS' "$f" | awk '{print $2}')"
	case $kind in
	unpatched|control) mode=$kind ;;
	*) mode=patched ;;
	esac
	check_results "$kind" "$mode" "$f" "$(kind_tests "$kind")"
	# any kernel complaint on the console is a failure (KASAN, lockdep, BUG)
	if grep -aqE 'BUG:|WARNING:|KASAN|possible (recursive|circular) locking|Kernel panic|Oops|list_(add|del) corruption' "$f"; then
		echo "  $kind: kernel complained on the console:"
		grep -aE 'BUG:|WARNING:|KASAN|locking|Kernel panic|Oops|corruption' "$f" | head -5 | sed 's/^/    /'
		STATUS=1
	fi
done
if [ "$RUN_HOST" = 1 ]; then
	hostlog=$CACHE/logs/host.log
	: > "$hostlog"
	for t in ${TESTS//,/ }; do
		case $t in
		uffd_suite_*)
			FL_DIRTY_SECONDS=1 timeout $((SUITE_TIMEOUT + 15)) "$CACHE/tests-bin/tap_runner" \
				"$t" "$PROJECT_BUILD/$(suite_path "${t#uffd_suite_}")" "$SUITE_TIMEOUT" \
				>> "$hostlog" 2>&1 || true ;;
		*)
			timeout 60 "$CACHE/tests-bin/$t" >> "$hostlog" 2>&1 || true ;;
		esac
	done
	echo "host kernel $(uname -r) (no series):"
	check_results host unpatched "$hostlog" "$TESTS"
fi
echo "total $(since "$T_ALL") s; logs in $CACHE/logs"
[ "$STATUS" = 0 ] && echo "RESULT: all tests as expected" || echo "RESULT: UNEXPECTED results"
exit "$STATUS"
