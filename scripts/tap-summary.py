#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Count test cases (TAP subtests) in meson's test log: one closing line
'N passed, N failed, N skipped' (--extra P F adds results counted
elsewhere). A test program that died before reporting
all its planned cases counts the missing ones as failed."""
import json
import re
import sys


def count(build_dirs):
    passed = failed = skipped = 0
    for d in build_dirs:
        with open(f"{d}/meson-logs/testlog.json") as f:
            for line in f:
                t = json.loads(line)
                out = t.get("stdout") or ""
                plan = re.search(r"^1\.\.(\d+)", out, re.M)
                if not plan:  # not a TAP program: one result
                    if t["result"] == "OK":
                        passed += 1
                    elif t["result"] == "SKIP":
                        skipped += 1
                    else:
                        failed += 1
                    continue
                lines = re.findall(r"^(?:ok|not ok)\b.*$", out, re.M)
                bad = sum(l.startswith("not ok") for l in lines)
                skip = sum(not l.startswith("not ok") and bool(re.search(r"#\s*SKIP", l, re.I))
                           for l in lines)
                failed += bad
                skipped += skip
                passed += len(lines) - bad - skip
                # Cases planned but never reported (the program died) fail,
                # and so does a program that failed after reporting them all.
                failed += max(0, int(plan.group(1)) - len(lines))
                if t["result"] not in ("OK", "SKIP") and not bad and \
                        len(lines) >= int(plan.group(1)):
                    failed += 1
    return passed, failed, skipped


if __name__ == "__main__":
    args = sys.argv[1:]
    extra_p = extra_f = 0
    if args[:1] == ["--extra"]:  # results counted elsewhere (fuzzing, kernel)
        extra_p, extra_f, args = int(args[1]), int(args[2]), args[3:]
    p, f, s = count(args or ["build"])
    p, f = p + extra_p, f + extra_f
    print(f"{p} passed, {f} failed" + (f", {s} skipped" if s else ""))
    sys.exit(1 if f else 0)
