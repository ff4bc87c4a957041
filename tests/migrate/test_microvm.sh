#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The microvm (examples/microvm) migrated between two network namespaces
# over TLS, its guest still running on all of its RAM:
#   - pre-copy then post-copy, the destination holding its vCPU until every
#     page arrived, then comparing guest RAM with the source's sha256 at
#     the pause, byte for byte;
#   - post-copy only with two vCPUs, resumed at once (the real post-copy
#     path: the guest faults its RAM in through KVM).
# In both the guest verifies its own per-page counters and checksum after
# the migration and again after running on. Skips without root (network
# namespaces) or without a usable /dev/kvm, saying which.
#   test_microvm.sh BUILD_DIR [MiB]
set -uo pipefail
build=$1
. "$(dirname "$0")/netns-lib.sh"
mib=${2:-256}
fl=$build/src/cli/faultline
mvm=$build/examples/microvm/microvm
tag=flvm$$
tmp=$(mktemp -d /tmp/fl-microvm.XXXXXX)
n=0
failed=0
tests=(precopy_postcopy_over_tls_ram_equal_at_switchover postcopy_only_two_vcpus_over_tls_resumed_at_once)

say() { printf '%s\n' "$*"; }
ok() { n=$((n + 1)); say "ok $n - test_$1${2:+ # SKIP $2}"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); say "not ok $n - test_$1"; sed 's/^/# /' "$2" | grep -v "guest: progress" | tail -60; }
skip_all() { for t in "${tests[@]}"; do ok "$t" "$1"; done; exit 0; }

cleanup() {
	netns_destroy "$tag"
	rm -rf "$tmp"
}
trap cleanup EXIT

say "1..${#tests[@]}"
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
	skip_all "needs root and iproute2 for network namespaces"
fi
if ! "$mvm" run --mem 4 --seconds 0 >"$tmp/kvm.log" 2>&1; then
	skip_all "KVM is not usable here: $(grep -m1 microvm: "$tmp/kvm.log")"
fi

netns_create "$tag" 10.213.9 || { say "Bail out! cannot create network namespaces"; exit 1; }
netns_slow "$tag"
"$fl" certs --out "$tmp/certs" --hosts source,dest >/dev/null 2>"$tmp/certs.err" ||
	{ say "Bail out! faultline certs failed: $(cat "$tmp/certs.err")"; exit 1; }

port=7900
# migrate NAME DEST-ARGS -- SOURCE-ARGS: microvm receive in dst, migrate in src.
# The timeouts only keep a hung run from hanging the suite.
migrate() {
	local name=$1 dargs=() sargs=(); shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do dargs+=("$1"); shift; done
	shift
	sargs=("$@")
	port=$((port + 1))
	rm -f "$tmp/sha"
	ip netns exec "$tag-dst" timeout 600 "$mvm" receive --listen "10.213.9.2:$port" \
		--certs "$tmp/certs" --seconds 1 "${dargs[@]}" >"$tmp/$name.dst" 2>&1 &
	local rpid=$!
	for _ in $(seq 200); do grep -q listening "$tmp/$name.dst" && break; sleep 0.05; done
	ip netns exec "$tag-src" timeout 600 "$mvm" migrate --to "10.213.9.2:$port" \
		--certs "$tmp/certs" --mem "$mib" --seconds 1 "${sargs[@]}" >"$tmp/$name.src" 2>&1
	local s=$?
	wait $rpid
	local d=$?
	{ echo "== source (exit $s)"; cat "$tmp/$name.src"; echo "== destination (exit $d)"; cat "$tmp/$name.dst"; } >"$tmp/$name.log"
	grep -E "migration report|total |downtime|destination:|resumed|complete|faults|latency" \
		"$tmp/$name.log" | grep -v "guest: progress" | sed "s/^/# $name: /"
	[ $s -eq 0 ] && [ $d -eq 0 ] &&
		grep -q "verified its memory after the migration: ok" "$tmp/$name.dst" &&
		grep -q "verified its memory after running on here: ok" "$tmp/$name.dst" &&
		! grep -q MISMATCH "$tmp/$name.log"
}

t=${tests[0]}
if migrate precopy --hold-until-complete --sha "$tmp/sha" -- --sha "$tmp/sha" &&
   grep -q "guest RAM equals the source's at the switch-over" "$tmp/precopy.dst" &&
   grep -q "round 1" "$tmp/precopy.src"; then
	ok "$t"
else
	not_ok "$t" "$tmp/precopy.log"
fi
t=${tests[1]}
if migrate postcopy -- --postcopy-only --vcpus 2 &&
   grep -q "0 rounds" "$tmp/postcopy.src" && grep -q "2 vCPUs resumed" "$tmp/postcopy.dst"; then
	ok "$t"
else
	not_ok "$t" "$tmp/postcopy.log"
fi
exit $((failed > 0))
