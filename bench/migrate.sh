#!/usr/bin/env bash
# The migration benchmark: migrate-workload migrated over loopback at 1 GiB
# and 4 GiB, plain TCP and TLS, each figure beside loopback TCP bandwidth
# measured in the same run. Two modes for each:
#   postcopy  post-copy from the start, the program a service doing
#             FL_BENCH_RATE operations a second (default 40000: random
#             page reads checked against their version, every other one
#             then a write), on both sides; its rate is reported before
#             the migration, while post-copy brings the pages in (mean and
#             slowest 100 ms) and after;
#   demo      the README demo's way: 2 threads writing flat out, pre-copy
#             rounds until they stop converging, then post-copy; the
#             destination reads all its memory at once on arrival.
# peak/RAM: the destination's peak memory (faultline receive and the
# restored program together, sampled every 10 ms until every page is in)
# over the RAM migrated. FL_BENCH_KEEP=1 keeps the logs in /tmp.
# cpu_s/GiB: CPU seconds faultline spent per GiB, on the source (per GiB
# sent, the migration's threads) and on the destination (faultline
# receive's threads, per GiB of RAM); the program's own are not counted.
#   bench/migrate.sh [BUILD_DIR] [MiB...]      (default build-release, 1024 4096)
# Never fails on a time; every run checks the destination's memory.
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
trap '[ -n "${FL_BENCH_KEEP:-}" ] || rm -rf "$tmp"' EXIT
"$fl" certs --out "$tmp/certs" >/dev/null

# The machine's limits, measured in this run before the migrations (at the
# smallest size and 4x it, for the first touch of fresh memory).
echo "measuring this machine's limits (bench --limits)..." >&2
"$build/bench/bench" --limits --json --mib "${sizes[0]}" --reps 3 --faults 5000 \
	>"$tmp/limits.json" 2>/dev/null || { echo "bench --limits failed" >&2; exit 1; }
python3 - "$tmp/limits.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
def get(op, per=None, key="gbps"):
    for r in rows:
        if r["operation"].startswith(op) and (per is None or r["per_call"] == per):
            return r[key]
    return float("nan")
print("limits measured in this run (every figure below is quoted against them):")
print("  loopback TCP, one stream %.2f GB/s; round trip p50 %.1f us, p99 %.1f us" % (
    get("loopback TCP, one"), get("loopback TCP, round", key="p50_us"), get("loopback TCP, round", key="p99_us")))
print("  AES-128-GCM on one core %.2f GB/s; memcpy %.2f GB/s" % (get("AES-128-GCM"), get("memcpy")))
print("  fresh memory, first touch: " + ", ".join("%.2f GB/s at %s" % (r["gbps"], r["per_call"])
      for r in rows if r["operation"].startswith("fresh memory")))
print("  UFFDIO_COPY %.2f GB/s (4 KiB) %.2f GB/s (2 MiB); UFFDIO_MOVE %.2f GB/s (2 MiB)" % (
    get("UFFDIO_COPY", "4 KiB"), get("UFFDIO_COPY", "2 MiB"), get("UFFDIO_MOVE", "2 MiB")))
print("  UFFDIO_COPY in 2 MiB calls, one pass over new memory: " + ", ".join(
      "%.2f GB/s at %s" % (r["gbps"], r["per_call"]) for r in rows
      if r["operation"].startswith("UFFDIO_COPY 2 MiB, one pass")))
print("  raw fault round trip p50 %.1f us same core, %.1f us across cores" % (
    get("fault round trip, same", key="p50_us"), get("fault round trip, across", key="p50_us")))
# What makes fresh memory dear here: a virtual machine's first touch of a
# page may trap to its host, and free page reporting hands freed guest
# memory back to the host, so it is fresh again on the next allocation.
import os, re
flags = open("/proc/cpuinfo").read()
cmdline = open("/proc/cmdline").read()
facts = ["%d CPUs" % os.cpu_count()]
facts.append("a virtual machine (cpuinfo: hypervisor)" if re.search(r"\bhypervisor\b", flags)
             else "bare metal")
if not re.search(r"\b(vmx|svm)\b", flags):
    facts.append("no hardware virtualization for its own guests")
m = re.search(r"page_reporting\.page_reporting_order=(\d+)", cmdline)
if m or os.path.exists("/sys/module/page_reporting"):
    facts.append("free page reporting on%s (freed memory goes back to the host)" %
                 (" from %d KiB blocks" % (4 << int(m.group(1))) if m else ""))
print("  this machine: " + ", ".join(facts))
PY
cat <<'TXT'
%bound: GB/s over the lowest of loopback TCP, UFFDIO_COPY in 2 MiB calls
over new memory the nearest size (every destination page is new) and, for
TLS, AES-GCM on one core. p99/goal: fault p99 over the issue's goal, 3x the raw fault round
trip (the faster of the two) + 2x the loopback round trip (p50s).
TXT
rate=${FL_BENCH_RATE:-40000}
printf '%-6s %-6s %-8s %8s %9s %10s %7s %5s %6s %8s %8s %10s %21s %8s %8s %18s %6s %8s %3s\n' size link mode total_s downtime_ms postcopy_s GB/s %tcp rounds p50_us p99_us ops/s_before ops/s_postcopy,slowest ops/s_after peak/RAM cpu_s/GiB:src,dst %bound p99/goal ok
port=7790
for mib in "${sizes[@]}"; do
	for link in plain tls; do
		for mode in postcopy demo; do
			port=$((port + 1))
			opts=(--plain)
			[ $link = tls ] && opts=(--certs "$tmp/certs")
			if [ $mode = postcopy ]; then
				dopts="--rate $rate --seconds 1"
				sopts=(--rate "$rate" --postcopy-only)
			else
				dopts="--seconds 0"
				sopts=()
			fi
			"$fl" receive --listen "127.0.0.1:$port" "${opts[@]}" \
				--exec "$wl dest --mib $mib $dopts" >"$tmp/dest" 2>&1 &
			r=$!
			sleep 0.3
			"$wl" source --mib "$mib" --to "127.0.0.1:$port" "${opts[@]}" --seconds 1 \
				"${sopts[@]}" >"$tmp/out" 2>/dev/null
			wait $r
			ok=$?
			python3 - "$tmp/out" "$tmp/dest" "$mib" "$link" "$mode" "$tmp/limits.json" "$ok" <<'PY' | tee -a "$tmp/rows"
import json, math, re, sys
t = open(sys.argv[1]).read()
d = open(sys.argv[2]).read()
def f(p, s=t):
    m = re.search(p, s)
    return float(m.group(1)) if m else float("nan")
total = f(r"total ([\d.]+) s")
down = f(r"downtime ([\d.]+) ms")
post = f(r"post-copy ([\d.]+) s\n")
rounds = f(r"\((\d+) rounds\)")
pre_b = f(r"bytes: ([\d.]+) MiB pre-copy")
post_b = f(r"MiB pre-copy, ([\d.]+) MiB post-copy")
p50 = f(r"p50 ([\d.]+) us")
p99 = f(r"p99 ([\d.]+) us")
before = f(r"ops/s before the migration ([\d.]+)")
during = f(r"ops/s during post-copy ([\d.]+)", d)
slow = f(r"slowest 100 ms: ([\d.]+)", d)
after = f(r"after ([\d.]+) \(asked", d)
peak = f(r"peak memory: ([\d.]+) MiB here and the restorer together", d)
src_cpu = f(r"([\d.]+) per GiB sent")
dst_cpu = f(r"receive: CPU seconds here, per thread:.*; ([\d.]+) in all", d) / (float(sys.argv[3]) / 1024)
gbps = (pre_b + post_b) * 1048576 / total / 1e9 if total == total else float("nan")
lim = json.load(open(sys.argv[6]))["rows"]
def get(op, key="gbps"):
    return next((r[key] for r in lim if r["operation"].startswith(op)), float("nan"))
tcp = get("loopback TCP, one")
mib = float(sys.argv[3])
fresh = sorted((abs(math.log(float(r["per_call"].split()[0]) / mib)), r["gbps"])
               for r in lim if r["operation"].startswith("UFFDIO_COPY 2 MiB, one pass"))
bound = min([tcp] + [fresh[0][1]] * bool(fresh) + [get("AES-128-GCM")] * (sys.argv[4] == "tls"))
rt = min(get("fault round trip, same", "p50_us"), get("fault round trip, across", "p50_us"))
goal = 3 * rt + 2 * get("loopback TCP, round", "p50_us")
print("%-6s %-6s %-8s %8.2f %9.1f %10.2f %7.2f %4.0f%% %6.0f %8.1f %8.1f %10.0f %12.0f,%8.0f %8.0f %7.2f %18s %5.0f%% %8.1f %3s" % (
    sys.argv[3] + "M", sys.argv[4], sys.argv[5], total, down, post, gbps, 100 * gbps / tcp,
    rounds, p50, p99, before, during, slow, after, peak / mib, "%.2f,%.2f" % (src_cpu, dst_cpu),
    100 * gbps / bound, p99 / goal, "yes" if sys.argv[7] == "0" else "NO"))
PY
		done
	done
done
# How each grows with size: per GiB, the largest size over the smallest.
[ ${#sizes[@]} -gt 1 ] && python3 - "$tmp/rows" <<'PY'
import sys
rows = [ln.split() for ln in open(sys.argv[1]) if ln[0].isdigit()]
print("growth from %s to %s, per GiB (1.00: linear in size):" % (rows[0][0], rows[-1][0]))
for link in ("plain", "tls"):
    for mode in ("postcopy", "demo"):
        rs = [r for r in rows if r[1] == link and r[2] == mode]
        if len(rs) < 2:
            continue
        a, b = rs[0], rs[-1]
        ga, gb = float(a[0][:-1]) / 1024, float(b[0][:-1]) / 1024
        (sa, da), (sb, db) = ((float(x) for x in r[16].split(",")) for r in (a, b))
        print("  %-5s %-8s total s/GiB %.2fx, src CPU s/GiB %.2fx, dst CPU s/GiB %.2fx, peak/RAM %s -> %s" % (
            link, mode, (float(b[3]) / gb) / (float(a[3]) / ga), sb / sa if sa else float("nan"),
            db / da if da else float("nan"), a[15], b[15]))
PY
exit 0
