# SPDX-License-Identifier: MIT
# Two network namespaces joined by veth, for the migration tests; sourced.
#   netns_create TAG NET    TAG-src (NET.1) and TAG-dst (NET.2), veth TAG-a/TAG-b
#   netns_slow TAG [RATE]   1 ms each way with netem; without sch_netem, a
#                           tbf rate limit (RATE, e.g. 2gbit) or nothing;
#                           prints a TAP comment saying which
#   netns_destroy TAG

netns_create() {
	local tag=$1 net=$2
	ip netns add "$tag-src" && ip netns add "$tag-dst" &&
	ip link add "$tag-a" type veth peer name "$tag-b" &&
	ip link set "$tag-a" netns "$tag-src" && ip link set "$tag-b" netns "$tag-dst" &&
	ip -n "$tag-src" addr add "$net.1/24" dev "$tag-a" &&
	ip -n "$tag-dst" addr add "$net.2/24" dev "$tag-b" &&
	ip -n "$tag-src" link set "$tag-a" up && ip -n "$tag-dst" link set "$tag-b" up &&
	ip -n "$tag-src" link set lo up && ip -n "$tag-dst" link set lo up
}

netns_slow() {
	local tag=$1 rate=${2:-}
	if ip netns exec "$tag-src" tc qdisc add dev "$tag-a" root netem delay 1ms 2>/dev/null &&
	   ip netns exec "$tag-dst" tc qdisc add dev "$tag-b" root netem delay 1ms 2>/dev/null; then
		echo "# link: veth with netem, 1 ms each way"
	elif [ -n "$rate" ]; then
		ip netns exec "$tag-src" tc qdisc add dev "$tag-a" root tbf rate "$rate" burst 256kb latency 5ms
		ip netns exec "$tag-dst" tc qdisc add dev "$tag-b" root tbf rate "$rate" burst 256kb latency 5ms
		echo "# link: veth limited to $rate with tbf (this kernel has no sch_netem)"
	else
		echo "# link: veth, no delay (this kernel has no sch_netem)"
	fi
}

netns_destroy() {
	ip netns del "$1-src" 2>/dev/null
	ip netns del "$1-dst" 2>/dev/null
	return 0
}
