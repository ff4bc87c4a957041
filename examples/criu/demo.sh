#!/usr/bin/env bash
# A real multi-process program (kv.py: a key-value store with forked
# workers talking over pipes) checkpointed with CRIU and restored lazily
# with `faultline lazy-pages`: first from the local images, then as a
# post-copy migration over `criu dump --lazy-pages`'s page server between
# two network namespaces. The program checks every value after each
# restore. (nsenter --net, not `ip netns exec`: that one also makes a mount
# namespace, which CRIU would then have to dump.)
#   examples/criu/demo.sh BUILD_DIR [MiB]      (root; CRIU from ../shared/criu)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
mib=${2:-256}
fl=$build/src/cli/faultline
# Exit 77 (a skip, for meson) only where the demo cannot run at all.
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (CRIU, network namespaces)"
	exit 77
fi
if [ -z "${CRIU:-}" ] && ! CRIU=$("$here/../../../shared/criu/build.sh"); then
	echo "demo: CRIU cannot be built here (../shared/criu/build.sh failed, above)"
	exit 77
fi
criu=$CRIU
tag=flcriu$$
tmp=$(mktemp -d /var/tmp/faultline-criu.XXXXXX)
started=()
cleanup() {
	# a run that failed half-way leaves a tree waiting for its go: end it
	for p in "${started[@]}"; do
		grep -qs kv.py "/proc/$p/cmdline" && kill -9 "$p" 2>/dev/null || true
	done
	ip netns del "$tag-src" 2>/dev/null || true
	ip netns del "$tag-dst" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# kv.py as pid 1 of its own pid namespace (so its restored copy can have
# the same pids however busy this machine is), in its own session.
start_kv() { # DIR [netns exec prefix...]
	local dir=$1
	shift
	mkdir -p "$dir"
	"$@" unshare -p -f setsid python3 "$here/kv.py" "$dir" "$mib" </dev/null >/dev/null 2>&1 &
	local outer=$!
	for _ in $(seq 600); do [ -f "$dir/ready" ] && break; sleep 0.1; done
	[ -f "$dir/ready" ] || { echo "kv.py did not start"; exit 1; }
	awk '{print $1}' "/proc/$outer/task/$outer/children"
}

verdict() { # DIR
	for _ in $(seq 600); do grep -q "^kv:" "$1/kv.log" 2>/dev/null && break; sleep 0.1; done
	cat "$1/kv.log"
	grep -q "^kv: verified" "$1/kv.log"
}

echo "== 1. lazy restore from local images ($mib MiB)"
pid=$(start_kv "$tmp/local")
started+=("$pid")
mkdir "$tmp/local/img"
"$criu" dump -t "$pid" -D "$tmp/local/img" -o dump.log
touch "$tmp/local/go" # the program checks itself as soon as it runs again
"$fl" lazy-pages -D "$tmp/local/img" -d -o lazy.log
"$criu" restore -D "$tmp/local/img" --lazy-pages -d -o restore.log
verdict "$tmp/local"
for _ in $(seq 300); do grep -q "lazy-pages: done" "$tmp/local/img/lazy.log" && break; sleep 0.1; done
grep -E "lazy-pages: (done|[0-9]+ processes)|faults:|pages:" "$tmp/local/img/lazy.log"

echo "== 2. post-copy migration over CRIU's page server, netns $tag-src -> $tag-dst"
ip netns add "$tag-src"
ip netns add "$tag-dst"
ip link add "$tag-a" type veth peer name "$tag-b"
ip link set "$tag-a" netns "$tag-src"
ip link set "$tag-b" netns "$tag-dst"
ip -n "$tag-src" addr add 10.214.7.1/24 dev "$tag-a"
ip -n "$tag-dst" addr add 10.214.7.2/24 dev "$tag-b"
for ns in src dst; do ip -n "$tag-$ns" link set lo up; done
ip -n "$tag-src" link set "$tag-a" up
ip -n "$tag-dst" link set "$tag-b" up
pid=$(start_kv "$tmp/pc" nsenter --net=/run/netns/$tag-src)
started+=("$pid")
mkdir "$tmp/pc/src" "$tmp/pc/dst"
nsenter --net=/run/netns/$tag-src "$criu" dump -t "$pid" -D "$tmp/pc/src" --lazy-pages \
	--address 10.214.7.1 --port 7800 -o dump.log --status-fd 3 3>"$tmp/pc/status" &
dump=$!
# criu writes a byte to its status fd once the page server listens
for _ in $(seq 600); do [ -s "$tmp/pc/status" ] && break; sleep 0.1; done
[ -s "$tmp/pc/status" ] || { echo "criu dump --lazy-pages did not start:"; tail "$tmp/pc/src/dump.log"; exit 1; }
cp "$tmp/pc/src"/*.img "$tmp/pc/dst/" # no lazy page is in them
touch "$tmp/pc/go"
nsenter --net=/run/netns/$tag-dst "$fl" lazy-pages -D "$tmp/pc/dst" --page-server \
	--address 10.214.7.1 --port 7800 -d -o lazy.log
nsenter --net=/run/netns/$tag-dst "$criu" restore -D "$tmp/pc/dst" --lazy-pages -d -o restore.log
verdict "$tmp/pc"
wait "$dump" && echo "criu dump: the source tree is gone, the migration is complete"
for _ in $(seq 300); do grep -q "lazy-pages: done" "$tmp/pc/dst/lazy.log" && break; sleep 0.1; done
grep -E "lazy-pages: (done|[0-9]+ processes)|faults:|pages:" "$tmp/pc/dst/lazy.log"
