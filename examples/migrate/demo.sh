#!/usr/bin/env bash
# Post-copy live migration of a running program between two network
# namespaces, over TLS with client certificates. The program keeps writing
# to its memory the whole time; after the move it checks every page and
# compares its memory with the source's at the switch-over, then runs on.
#   examples/migrate/demo.sh BUILD_DIR [MiB]      (root: it creates netns)
set -euo pipefail
build=${1:-build}
mib=${2:-2048}
fl=$build/src/cli/faultline
wl=$build/examples/migrate-workload
tag=fldemo$$
tmp=$(mktemp -d /tmp/faultline-migrate.XXXXXX)
cleanup() {
	ip netns del "$tag-src" 2>/dev/null || true
	ip netns del "$tag-dst" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

src=() dst=() to=127.0.0.1:7700 listen=127.0.0.1:7700
if [ "$(id -u)" -eq 0 ] && ip netns add "$tag-src" 2>/dev/null && ip netns add "$tag-dst"; then
	ip link add "$tag-a" type veth peer name "$tag-b"
	ip link set "$tag-a" netns "$tag-src"
	ip link set "$tag-b" netns "$tag-dst"
	ip -n "$tag-src" addr add 10.213.9.1/24 dev "$tag-a"
	ip -n "$tag-dst" addr add 10.213.9.2/24 dev "$tag-b"
	for ns in src dst; do ip -n "$tag-$ns" link set lo up; done
	ip -n "$tag-src" link set "$tag-a" up
	ip -n "$tag-dst" link set "$tag-b" up
	src=(ip netns exec "$tag-src")
	dst=(ip netns exec "$tag-dst")
	to=10.213.9.2:7700
	listen=10.213.9.2:7700
	echo "== two network namespaces, source 10.213.9.1 and destination 10.213.9.2 (veth)"
else
	echo "== no network namespaces here (needs root): migrating over loopback instead"
fi

echo "== faultline certs: a test CA, and certificates for source and dest"
"$fl" certs --out "$tmp/certs" --hosts source,dest

echo "== destination: faultline receive --listen $listen --exec 'migrate-workload dest'"
"${dst[@]}" "$fl" receive --listen "$listen" --certs "$tmp/certs" --stats-json "$tmp/stats.json" \
	--exec "$wl dest --mib $mib --sha $tmp/sha" &
rpid=$!
sleep 0.5

echo "== source: migrate-workload ($mib MiB, writing all the time) migrates itself to $to"
"${src[@]}" "$wl" source --mib "$mib" --to "$to" --certs "$tmp/certs" --sha "$tmp/sha"
wait $rpid
echo "== done: the destination's monitor statistics as JSON:"
cat "$tmp/stats.json"
