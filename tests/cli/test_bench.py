#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The bench program runs and reports every figure (a smoke run: no time is
judged, only that each measurement produced a number or said why not)."""
import json
import subprocess
import sys

p = subprocess.run([sys.argv[1], "--quick", "--json"], capture_output=True,
                   text=True, timeout=300)
print("1..2")
ok = p.returncode == 0
print(("ok" if ok else "not ok") + " 1 - test_bench_quick_run_exits_zero")
if not ok:
    print("# " + p.stderr.replace("\n", "\n# "))
try:
    rows = json.loads(p.stdout)["rows"]
    names = {(r["operation"], r["per_call"]) for r in rows}
    for want in [("memcpy (DRAM to DRAM)", "-"), ("UFFDIO_COPY", "4 KiB"),
                 ("UFFDIO_COPY", "64 KiB"), ("UFFDIO_COPY", "2 MiB"),
                 ("UFFDIO_ZEROPAGE", "4 KiB"), ("UFFDIO_MOVE", "4 KiB"),
                 ("fault round trip, same core", "4 KiB"),
                 ("PAGEMAP_SCAN collect, clean", "-"),
                 ("fresh memory, first touch", "32 MiB"),
                 ("UFFDIO_COPY 2 MiB, one pass", "32 MiB"),
                 ("AES-128-GCM seal, one core", "16 KiB")]:
        assert want in names, want
    for r in rows:
        figures = [r[k] for k in ("ns_per_page", "gbps", "p50_us", "p99_us", "ms_per_gib")]
        assert any(f is not None and f > 0 for f in figures) or r["note"], r
    print("ok 2 - test_bench_reports_every_figure_or_why_not")
except Exception as e:
    print("not ok 2 - test_bench_reports_every_figure_or_why_not")
    print(f"# {type(e).__name__}: {e}")
    ok = False
sys.exit(0 if ok else 1)
