#!/usr/bin/env bash
# The lazy restore of a multi-process workload, end to end, with real
# processes: run it, snapshot it (and kill it), start a monitor on the
# snapshot, restore it lazily and let it fork, mremap, madvise and munmap.
#   examples/lazy-restore/demo.sh BUILD_DIR [MiB]
set -euo pipefail
build=${1:-build}
mib=${2:-1024}
fl=$build/src/cli/faultline
wl=$build/examples/lazy-workload
src=$build/examples/lazy-workload-source
tmp=$(mktemp -d /var/tmp/faultline-demo.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

echo "== 1. a workload fills $mib MiB"
$src --mib "$mib" --state "$tmp/state" &
pids+=($!)
for _ in $(seq 600); do [ -s "$tmp/state" ] && break; sleep 0.1; done
[ -s "$tmp/state" ] || { echo "the workload did not start" >&2; exit 1; }

echo "== 2. faultline snapshot --pid ${pids[0]} --kill"
$fl snapshot --pid "${pids[0]}" -o "$tmp/snap" --kill

echo "== 3. faultline monitor (in the background)"
$fl monitor --snapshot "$tmp/snap" --socket "$tmp/sock" --stats-json "$tmp/stats.json" &
mon=$!
pids+=($mon)
for _ in $(seq 100); do [ -S "$tmp/sock" ] && break; sleep 0.05; done

echo "== 4. restore: the program runs at once on empty memory"
$wl restore --state "$tmp/state" --snapshot "$tmp/snap" --socket "$tmp/sock"
wait "$mon"
echo "== the monitor's statistics are above; as JSON:"
cat "$tmp/stats.json"
