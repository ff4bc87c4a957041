#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline monitor` as a user runs it: refuses a corrupt snapshot with the
reason, drops its capabilities, prints statistics on SIGUSR1 and at the end
(and as JSON), and exits when the restored process is gone."""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case  # noqa: E402
import tap  # noqa: E402
import tempfile
import time

faultline, source, workload = sys.argv[1:4]


def make_snapshot(tmp, mib=16):
    state = os.path.join(tmp, "state")
    src = subprocess.Popen([source, "--mib", str(mib), "--state", state],
                           stdout=subprocess.DEVNULL)
    for _ in range(300):
        if os.path.exists(state):
            break
        time.sleep(0.05)
    snap = os.path.join(tmp, "snap")
    p = subprocess.run([faultline, "snapshot", "--pid", str(src.pid), "-o", snap, "--kill"],
                       capture_output=True, text=True, timeout=120)
    src.wait()
    assert p.returncode == 0, p.stderr
    return state, snap


def wait_for(path):
    for _ in range(200):
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


@case("test_monitor_refuses_a_corrupt_snapshot_with_the_reason")
def _():
    with tempfile.TemporaryDirectory() as tmp:
        _, snap = make_snapshot(tmp)
        with open(os.path.join(snap, "manifest.pb"), "r+b") as f:
            f.truncate(20)
        p = subprocess.run([faultline, "monitor", "--snapshot", snap, "--socket",
                            os.path.join(tmp, "sock")], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 1, p.returncode
        assert "manifest" in p.stderr, p.stderr


@case("test_monitor_drops_caps_reports_stats_and_exits_after_the_restore")
def _():
    with tempfile.TemporaryDirectory() as tmp:
        state, snap = make_snapshot(tmp)
        sock = os.path.join(tmp, "sock")
        js = os.path.join(tmp, "stats.json")
        mon = subprocess.Popen([faultline, "monitor", "--snapshot", snap, "--socket", sock,
                                "--stats-json", js, "-v", "-v"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(sock)
        status = open(f"/proc/{mon.pid}/status").read()
        capeff = [l for l in status.splitlines() if l.startswith("CapEff:")][0]
        assert int(capeff.split()[1], 16) & ~(1 << 5) == 0, capeff  # CAP_KILL at most
        mon.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        r = subprocess.run([workload, "restore", "--state", state, "--snapshot", snap,
                            "--socket", sock], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "memory equals the snapshot" in r.stdout, r.stdout
        out, err = mon.communicate(timeout=60)
        assert mon.returncode == 0, err
        assert "dropped every capability" in err, err
        assert err.count("faultline monitor statistics") >= 1, err  # SIGUSR1
        assert "fault service latency" in out, out
        doc = json.load(open(js))
        assert doc["handoffs"] == 1 and doc["events"]["fork"] == 3, doc
        assert doc["events"]["exit"] == 4, doc


tap.run()
