#!/usr/bin/env bash
# faultline as Firecracker's page-fault handler, end to end, with a
# stand-in for Firecracker (fc-standin.c does what Firecracker does when it
# restores a snapshot with a Uffd memory backend):
#   examples/firecracker/demo.sh BUILD_DIR [MiB]
set -euo pipefail
build=${1:-build}
mib=${2:-256}
fl=$build/src/cli/faultline
vm=$build/examples/fc-standin
tmp=$(mktemp -d /var/tmp/faultline-fc-demo.XXXXXX)
mon=
cleanup() { [ -n "$mon" ] && kill "$mon" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

echo "== 1. a memory snapshot file of $mib MiB (what Firecracker's snapshot/create writes; holes are zero pages)"
$vm make-file "$tmp/mem" --mib "$mib"

echo "== 2. faultline monitor --firecracker-socket $tmp/uffd.sock --memory-file $tmp/mem (in the background)"
$fl monitor --firecracker-socket "$tmp/uffd.sock" --memory-file "$tmp/mem" \
	--stats-json "$tmp/stats.json" &
mon=$!
for _ in $(seq 100); do [ -S "$tmp/uffd.sock" ] && break; sleep 0.05; done

echo "== 3. a malformed region list is refused; the monitor keeps serving"
$vm bad --socket "$tmp/uffd.sock" --memory-file "$tmp/mem" --kind missing

echo "== 4. the VM: two regions with a gap, 4 vCPU threads fault in scattered order, the balloon inflates twice"
set +e
$vm run --socket "$tmp/uffd.sock" --memory-file "$tmp/mem" --layout two --threads 4
rc=$?
set -e
if [ $rc -eq 77 ]; then
	echo "SKIP: this machine cannot create a userfaultfd for kernel faults"
	exit 77
fi
[ $rc -eq 0 ]
wait "$mon"
mon=
echo "== the monitor's statistics are above; as JSON:"
cat "$tmp/stats.json"
