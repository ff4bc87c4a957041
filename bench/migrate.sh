#!/usr/bin/env bash
# The migration benchmark: migrate-workload (2 threads writing at random all
# the time) migrated over loopback at 1 GiB and 4 GiB, plain TCP and TLS,
# each figure beside loopback TCP bandwidth measured in the same run.
#   bench/migrate.sh [BUILD_DIR] [MiB...]      (default build-release, 1024 4096)
# Never fails on a time.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
shift || true
sizes=("${@:-1024 4096}")
[ $# -eq 0 ] && sizes=(1024 4096)
if [ "$build" = build-release ] && [ ! -f build-release/build.ninja ]; then
	scripts/setup.sh
	meson setup build-release -Dbuildtype=release -Dtests=false >/dev/null
fi
ninja -C "$build" bench/bench src/cli/faultline examples/migrate-workload >/dev/null || exit 1
fl=$build/src/cli/faultline
wl=$build/examples/migrate-workload
tmp=$(mktemp -d /tmp/fl-bench-migrate.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$fl" certs --out "$tmp/certs" >/dev/null

tcp=$("$build/bench/bench" --quick --json 2>/dev/null |
	python3 -c 'import json,sys; print([r["gbps"] for r in json.load(sys.stdin)["rows"] if r["operation"].startswith("loopback TCP")][0])')
echo "loopback TCP, one stream: $tcp GB/s (the limit every throughput below is quoted against)"
printf '%-6s %-6s %8s %9s %10s %10s %6s %9s %9s %9s\n' size link total_s downtime_ms postcopy_s GB/s %tcp rounds p50_us p99_us
port=7790
for mib in "${sizes[@]}"; do
	for link in plain tls; do
		port=$((port + 1))
		opts=(--plain)
		[ $link = tls ] && opts=(--certs "$tmp/certs")
		"$fl" receive -q --listen "127.0.0.1:$port" "${opts[@]}" \
			--exec "$wl dest --mib $mib --seconds 0" >/dev/null 2>&1 &
		r=$!
		sleep 0.3
		"$wl" source --mib "$mib" --to "127.0.0.1:$port" "${opts[@]}" --seconds 1 \
			>"$tmp/out" 2>/dev/null
		wait $r
		python3 - "$tmp/out" "$mib" "$link" "$tcp" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def f(p):
    m = re.search(p, t)
    return float(m.group(1)) if m else float("nan")
total = f(r"total ([\d.]+) s")
down = f(r"downtime ([\d.]+) ms")
post = f(r"post-copy ([\d.]+) s\n")
rounds = f(r"\((\d+) rounds\)")
pre_b = f(r"bytes: ([\d.]+) MiB pre-copy")
post_b = f(r"MiB pre-copy, ([\d.]+) MiB post-copy")
p50 = f(r"p50 ([\d.]+) us")
p99 = f(r"p99 ([\d.]+) us")
gbps = (pre_b + post_b) * 1048576 / total / 1e9 if total == total else float("nan")
tcp = float(sys.argv[4])
print("%-6s %-6s %8.2f %9.1f %10.2f %10.2f %5.0f%% %9.0f %9.1f %9.1f" % (
    sys.argv[2] + "M", sys.argv[3], total, down, post, gbps, 100 * gbps / tcp, rounds, p50, p99))
PY
	done
done

