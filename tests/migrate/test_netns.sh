#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Post-copy live migration between two network namespaces joined by veth,
# created here: the workload keeps writing while it moves; the destination
# checks its memory against the source's at the switch-over (SHA-256) and
# against its own bookkeeping, then runs on. The link is slowed with
# `tc netem` (1 ms each way) where the kernel has it, else with `tc tbf`
# (rate limit), and says which.
#   test_netns.sh BUILD_DIR
set -uo pipefail
build=$1
. "$(dirname "$0")/netns-lib.sh"
fl=$build/src/cli/faultline
wl=$build/examples/migrate-workload
src_wl=$build/examples/lazy-workload-source
tag=fl$$
tmp=$(mktemp -d /tmp/fl-netns.XXXXXX)
n=0
failed=0

say() { printf '%s\n' "$*"; }
ok() { n=$((n + 1)); say "ok $n - $1${2:+ # SKIP $2}"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); say "not ok $n - $1"; sed 's/^/# /' "$2" | tail -40; }

cleanup() {
	[ -s "$tmp/state" ] && kill -9 "$(awk '{print $4}' "$tmp/state")" 2>/dev/null
	netns_destroy "$tag"
	rm -rf "$tmp"
}
trap cleanup EXIT

say "1..9"
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
	for t in precopy_postcopy_over_tls postcopy_only_over_tls source_killed_mid_postcopy_gives_sigbus_not_zeros pid_postcopy_over_tls \
		wrong_ca_refused_then_the_real_source_migrates garbage_peer_refused_then_the_real_source_migrates plain_refused_off_loopback \
		resets_and_link_cuts_mid_postcopy_are_rejoined link_cut_past_the_deadline_gives_sigbus_and_says_what_was_lost; do
		ok "test_$t" "needs root and iproute2 for network namespaces"
	done
	exit 0
fi

netns_create "$tag" 10.213.7 || { say "Bail out! cannot create network namespaces"; exit 1; }
netns_slow "$tag" 2gbit

"$fl" certs --out "$tmp/certs" --hosts source,dest >/dev/null 2>"$tmp/certs.err" ||
	{ say "Bail out! faultline certs failed: $(cat "$tmp/certs.err")"; exit 1; }
"$fl" certs --out "$tmp/other" --hosts source,dest >/dev/null 2>&1

port=7700
# migrate NAME SOURCE-ARGS...: receive in dst, run the workload source in src
migrate() {
	local name=$1; shift
	port=$((port + 1))
	rm -f "$tmp/sha"
	ip netns exec "$tag-dst" timeout 120 "$fl" receive --listen "10.213.7.2:$port" --certs "$tmp/certs" \
		--exec "$wl dest --mib 64 --sha $tmp/sha" >"$tmp/$name.dst" 2>&1 &
	local rpid=$!
	sleep 0.3
	ip netns exec "$tag-src" timeout 120 "$wl" source --mib 64 --to "10.213.7.2:$port" \
		--certs "$tmp/certs" --sha "$tmp/sha" "$@" >"$tmp/$name.src" 2>&1
	local s=$?
	wait $rpid
	local d=$?
	cat "$tmp/$name.src" "$tmp/$name.dst" >"$tmp/$name.log"
	[ $s -eq 0 ] && [ $d -eq 0 ] &&
		grep -q "memory equals the source's" "$tmp/$name.dst" &&
		grep -q "consistent after running on here" "$tmp/$name.dst"
}

# start_postcopy NAME MIB [RECEIVE-ARGS...] -- [SOURCE-ARGS...]: receive in
# dst and the workload's source (post-copy only) in src, both in the
# background ($rpid, $spid); returns once the source has switched over.
start_postcopy() {
	local name=$1 mib=$2 rargs=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do rargs+=("$1"); shift; done
	shift
	port=$((port + 1))
	rm -f "$tmp/sha"
	ip netns exec "$tag-dst" timeout 400 "$fl" receive --listen "10.213.7.2:$port" --certs "$tmp/certs" \
		"${rargs[@]}" --exec "$wl dest --mib $mib --sha $tmp/sha" >"$tmp/$name.dst" 2>&1 &
	rpid=$!
	sleep 0.3
	ip netns exec "$tag-src" timeout 400 "$wl" source --mib "$mib" --to "10.213.7.2:$port" \
		--certs "$tmp/certs" --sha "$tmp/sha" --postcopy-only "$@" >"$tmp/$name.src" 2>&1 &
	spid=$!
	for _ in $(seq 600); do grep -q "switch-over" "$tmp/$name.src" 2>/dev/null && break; sleep 0.05; done
}

if migrate precopy; then ok test_precopy_postcopy_over_tls; else not_ok test_precopy_postcopy_over_tls "$tmp/precopy.log"; fi
# link_rate [RATE]: the link slowed to RATE, or back to 2gbit.
link_rate() {
	ip netns exec "$tag-src" tc qdisc change dev "$tag-a" root netem delay 1ms ${1:+rate $1} 2>/dev/null ||
		ip netns exec "$tag-src" tc qdisc change dev "$tag-a" root tbf rate "${1:-2gbit}" \
			burst 256kb latency 5ms 2>/dev/null
}
# Post-copy only: the destination's threads faulted, and the report says
# how long each waited. The link is slowed so that the background stream
# cannot bring all 64 MiB in before a slow-starting program (ASan, a
# loaded machine) touches it: then it would never fault.
link_rate 200mbit
if migrate postcopy --postcopy-only &&
   grep -qE "^    thread [0-9]+: [0-9.]+ ms over [1-9][0-9]* faults" "$tmp/postcopy.src"; then ok test_postcopy_only_over_tls; else not_ok test_postcopy_only_over_tls "$tmp/postcopy.log"; fi
link_rate

# The source killed in the middle of post-copy (link slowed so that it
# is): once the reconnect deadline (5 s here) has passed, the destination's
# program gets SIGBUS on a page that can no longer arrive, never zeros and
# never a hang, and receive exits non-zero saying its restorer died of it
# (135 through sh -c; under ASan, its BUS report) and what was lost, well
# within the test's time.
link_rate 40mbit
start_postcopy kill 64 --reconnect-deadline 5 -- --seconds 0.2
sleep 1
t0=$(date +%s)
pkill -9 -f "migrate-workload source --mib 64 --to 10.213.7.2:$port"
wait $rpid; d=$?
t1=$(date +%s)
link_rate
wait
cat "$tmp/kill.src" "$tmp/kill.dst" >"$tmp/kill.log"
if [ $d -ne 0 ] && grep -qE "died of signal 7|exited with 135|AddressSanitizer: BUS" "$tmp/kill.dst" && grep -q "poisoned" "$tmp/kill.dst" &&
	grep -q "did not rejoin within 5 s.*pages never arrived" "$tmp/kill.dst" &&
	! grep -q "memory equals the source's" "$tmp/kill.dst" && [ $((t1 - t0)) -lt 30 ]; then
	ok test_source_killed_mid_postcopy_gives_sigbus_not_zeros
else
	not_ok test_source_killed_mid_postcopy_gives_sigbus_not_zeros "$tmp/kill.log"
fi

# A process by pid (post-copy): its restorer maps the region it finds in
# $FAULTLINE_REGIONS at the address the state file names.
port=$((port + 1))
ip netns exec "$tag-src" timeout 120 "$src_wl" --mib 32 --state "$tmp/state" >/dev/null 2>&1 &
for _ in $(seq 100); do [ -s "$tmp/state" ] && break; sleep 0.05; done
spid=$(awk '{print $4}' "$tmp/state") # the program's own pid, not the wrapper's
ip netns exec "$tag-dst" timeout 120 "$fl" receive --listen "10.213.7.2:$port" --certs "$tmp/certs" \
	--exec "$wl dest --state $tmp/state" >"$tmp/pid.dst" 2>&1 &
rpid=$!
sleep 0.3
ip netns exec "$tag-src" timeout 120 "$fl" migrate --pid $spid --to "10.213.7.2:$port" --certs "$tmp/certs" \
	>"$tmp/pid.src" 2>&1
s=$?
wait $rpid; d=$?
kill -9 "$spid" 2>/dev/null # migrate killed it when it worked
wait
cat "$tmp/pid.src" "$tmp/pid.dst" >"$tmp/pid.log"
if [ $s -eq 0 ] && [ $d -eq 0 ] && grep -q "memory equals the state file's" "$tmp/pid.dst"; then
	ok test_pid_postcopy_over_tls
else
	not_ok test_pid_postcopy_over_tls "$tmp/pid.log"
fi

# A source whose certificate another CA signed is refused with the cause,
# and costs the receiver nothing: it goes on waiting, and the real source
# that comes next migrates (memory compared at the switch-over).
port=$((port + 1))
rm -f "$tmp/sha"
ip netns exec "$tag-dst" timeout 120 "$fl" receive --listen "10.213.7.2:$port" --certs "$tmp/certs" \
	--exec "$wl dest --mib 8 --sha $tmp/sha" >"$tmp/ca.dst" 2>&1 &
rpid=$!
sleep 0.3
ip netns exec "$tag-src" timeout 120 "$wl" source --mib 8 --to "10.213.7.2:$port" --certs "$tmp/other" \
	--seconds 0 >"$tmp/ca.src" 2>&1
s=$?
ip netns exec "$tag-src" timeout 120 "$wl" source --mib 8 --to "10.213.7.2:$port" --certs "$tmp/certs" \
	--sha "$tmp/sha" --seconds 0 >"$tmp/ca.src2" 2>&1
s2=$?
wait $rpid; d=$?
cat "$tmp/ca.src" "$tmp/ca.src2" "$tmp/ca.dst" >"$tmp/ca.log"
if [ $s -ne 0 ] && [ $s2 -eq 0 ] && [ $d -eq 0 ] && grep -q "refused a connection" "$tmp/ca.dst" &&
	grep -q "memory equals the source's" "$tmp/ca.dst"; then
	ok test_wrong_ca_refused_then_the_real_source_migrates
else
	not_ok test_wrong_ca_refused_then_the_real_source_migrates "$tmp/ca.log"
fi

# A peer that sends garbage (a bad hello, then frames for no region) is
# disconnected with the reason; the real source that comes next migrates.
port=$((port + 1))
rm -f "$tmp/sha"
timeout 120 "$fl" receive --listen "127.0.0.1:$port" --plain --exec "$wl dest --mib 8 --sha $tmp/sha" \
	>"$tmp/garbage.dst" 2>&1 &
rpid=$!
sleep 0.3
python3 "$(dirname "$0")/garbage_peer.py" 127.0.0.1 $port >"$tmp/garbage.src" 2>&1
timeout 120 "$wl" source --mib 8 --to "127.0.0.1:$port" --plain --sha "$tmp/sha" --seconds 0 \
	>"$tmp/garbage.src2" 2>&1
s2=$?
wait $rpid; d=$?
cat "$tmp/garbage.src" "$tmp/garbage.src2" "$tmp/garbage.dst" >"$tmp/garbage.log"
if [ $s2 -eq 0 ] && [ $d -eq 0 ] && grep -qiE "refused a connection.*(hello|region|length|frame|protocol)" "$tmp/garbage.dst" &&
	grep -q "memory equals the source's" "$tmp/garbage.dst"; then
	ok test_garbage_peer_refused_then_the_real_source_migrates
else
	not_ok test_garbage_peer_refused_then_the_real_source_migrates "$tmp/garbage.log"
fi

# Plain TCP to another host is refused unless forced.
ip netns exec "$tag-src" timeout 120 "$wl" source --mib 8 --to "10.213.7.2:1" --plain --seconds 0 \
	>"$tmp/plain.log" 2>&1
s=$?
if [ $s -ne 0 ] && grep -qi "loopback" "$tmp/plain.log"; then
	ok test_plain_refused_off_loopback
else
	not_ok test_plain_refused_off_loopback "$tmp/plain.log"
fi
# Ten connection resets (ss -K) and ten link cuts of 3 s during one
# post-copy migration of 512 MiB over TLS (the link slowed so that it
# lasts): both ends rejoin each time; memory equal at the switch-over and
# after running on; the source's report counts the reconnects (at least
# five: a reset that lands while a rejoin is being set up costs that
# attempt, not another reconnect, and a cut TCP rides out costs none).
link_rate 100mbit
start_postcopy cuts 512 -- --seconds 0.5
for i in $(seq 10); do
	sleep 1
	ip netns exec "$tag-src" ss -K dst 10.213.7.2 >/dev/null 2>&1
	sleep 1
	ip -n "$tag-src" link set "$tag-a" down
	sleep 3
	ip -n "$tag-src" link set "$tag-a" up
done
wait $spid; s=$?
wait $rpid; d=$?
link_rate
cat "$tmp/cuts.src" "$tmp/cuts.dst" >"$tmp/cuts.log"
rc=$(sed -n 's/.*survived \([0-9]*\) broken connections.*/\1/p' "$tmp/cuts.src")
say "# resets and cuts: $(grep -m1 'downtime' "$tmp/cuts.src" | sed 's/^ *//'); ${rc:-0} reconnects"
if [ $s -eq 0 ] && [ $d -eq 0 ] && [ "${rc:-0}" -ge 5 ] &&
	grep -q "memory equals the source's" "$tmp/cuts.dst" &&
	grep -q "consistent after running on here" "$tmp/cuts.dst"; then
	ok test_resets_and_link_cuts_mid_postcopy_are_rejoined
else
	not_ok test_resets_and_link_cuts_mid_postcopy_are_rejoined "$tmp/cuts.log"
fi

# A link cut longer than the deadline (4 s on both ends): after 6 s of
# silence and 4 s of waiting the destination gives up; its program gets
# SIGBUS on a page it lacks, receive exits non-zero naming what was lost,
# the source gives up too and says why.
link_rate 40mbit
start_postcopy long 64 --reconnect-deadline 4 -- --seconds 0.2 --reconnect-deadline 4
sleep 1
t0=$(date +%s)
ip -n "$tag-src" link set "$tag-a" down
wait $rpid; d=$?
t1=$(date +%s)
wait $spid; s=$?
ip -n "$tag-src" link set "$tag-a" up
link_rate
cat "$tmp/long.src" "$tmp/long.dst" >"$tmp/long.log"
if [ $d -ne 0 ] && [ $s -ne 0 ] && grep -qE "died of signal 7|exited with 135|AddressSanitizer: BUS" "$tmp/long.dst" &&
	grep -q "did not rejoin within 4 s.*pages never arrived" "$tmp/long.dst" &&
	grep -q "could not rejoin the destination within 4 s" "$tmp/long.src" &&
	! grep -q "memory equals the source's" "$tmp/long.dst" && [ $((t1 - t0)) -lt 30 ]; then
	ok test_link_cut_past_the_deadline_gives_sigbus_and_says_what_was_lost
else
	not_ok test_link_cut_past_the_deadline_gives_sigbus_and_says_what_was_lost "$tmp/long.log"
fi
exit $((failed > 0))
