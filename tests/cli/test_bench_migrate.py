#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/migrate.sh at a small size: every run migrates, the destination's
memory check passes, and the service mode reports the rate it kept before,
during post-copy and after (a smoke run: no time is judged)."""
import os
import subprocess
import sys

script, build = sys.argv[1], sys.argv[2]
p = subprocess.run(["bash", script, build, "64"], capture_output=True, text=True, timeout=600,
                   env=dict(os.environ, FL_BENCH_RATE="5000"))
print("1..2")
lines = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("64M")]
ok1 = p.returncode == 0 and len(lines) == 4 and all(ln[-1] == "yes" for ln in lines)
print(("ok" if ok1 else "not ok") + " 1 - every migration ran and the destination's memory checked")
if not ok1:
    print("# " + (p.stdout + p.stderr).replace("\n", "\n# "))
ok2 = False
try:
    service = [ln for ln in lines if ln[2] == "postcopy"]
    assert len(service) == 2, service
    for ln in service:
        before, during, after = float(ln[11]), float(ln[12].split(",")[0]), float(ln[14])
        assert before > 0 and during > 0 and after > 0, ln
    ok2 = True
except Exception as e:
    print(f"# {type(e).__name__}: {e}")
print(("ok" if ok2 else "not ok") + " 2 - the service reports its rate before, during and after")
sys.exit(0 if ok1 and ok2 else 1)
