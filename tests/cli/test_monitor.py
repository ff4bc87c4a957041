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


def monitor_pid(keeper):
    kids = open(f"/proc/{keeper.pid}/task/{keeper.pid}/children").read().split()
    assert len(kids) == 1, f"the keeper runs one monitor, not {kids}"
    return int(kids[0])


def start_restore(tmp, linger_ms, churn=0, journal_bytes=0):
    """A monitor serving faults only (pages stay owed until touched), and
    a restore whose children fork, mremap, drop pages and linger."""
    state, snap = make_snapshot(tmp, mib=32)
    sock = os.path.join(tmp, "sock")
    env = dict(os.environ, FAULTLINE_JOURNAL_BYTES=str(journal_bytes))
    mon = subprocess.Popen([faultline, "monitor", "--snapshot", snap, "--socket", sock,
                            "--no-prefetch", "-v"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    wait_for(sock)
    w = subprocess.Popen([workload, "restore", "--state", state, "--snapshot", snap,
                          "--socket", sock, "--linger", str(linger_ms), "--churn", str(churn)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return mon, w


@case("test_monitor_killed_mid_restore_is_replaced_and_nothing_is_lost")
def _():
    """SIGKILL the monitor three times while a forking, MADV_DONTNEED-ing
    restore runs (one child drops and touches pages thousands of times, so
    kills land between events, and the journal, kept small, checkpoints):
    every process ends with its memory as snapshotted, dropped pages zero,
    a grandchild forked after the kills included."""
    with tempfile.TemporaryDirectory() as tmp:
        mon, w = start_restore(tmp, linger_ms=2500, churn=20000, journal_bytes=1 << 20)
        killed = []
        try:
            for delay in (0.15, 0.6, 0.7):
                time.sleep(delay)
                pid = monitor_pid(mon)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                for _ in range(100):  # the keeper has started the next one
                    if monitor_pid_or_none(mon) not in (None, pid):
                        break
                    time.sleep(0.02)
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0, out + err
            assert "memory equals the snapshot" in out, out
            assert "all verified" in out, out
            mout, merr = mon.communicate(timeout=60)
        finally:
            for p in (w, mon):
                if p.poll() is None:
                    p.kill()
        assert mon.returncode == 0, merr
        assert merr.count("died of signal 9") == 3, merr
        assert merr.count("resumed from the journal") == 3, merr
        assert "fault service latency" in mout, mout


def monitor_pid_or_none(keeper):
    try:
        kids = open(f"/proc/{keeper.pid}/task/{keeper.pid}/children").read().split()
    except OSError:
        return None
    return int(kids[0]) if len(kids) == 1 else None


@case("test_monitor_keeper_gives_up_and_ends_the_processes_never_zeros")
def _():
    """Monitors that keep dying: after five restarts the keeper gives up,
    ends the restored process and its children (their pages can no longer
    come) and fails, naming why. No child ever reads zeros."""
    with tempfile.TemporaryDirectory() as tmp:
        mon, w = start_restore(tmp, linger_ms=20000)
        try:
            time.sleep(0.3)
            for _ in range(6):
                pid = monitor_pid_or_none(mon)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                for _ in range(100):
                    if monitor_pid_or_none(mon) not in (None, pid) or mon.poll() is not None:
                        break
                    time.sleep(0.02)
            out, err = w.communicate(timeout=60)
            mout, merr = mon.communicate(timeout=60)
        finally:
            for p in (w, mon):
                if p.poll() is None:
                    p.kill()
        assert w.returncode == -signal.SIGKILL, (w.returncode, out, err)
        assert "differs" not in err and "not zero" not in err, err
        assert mon.returncode == 1, merr
        assert "giving up" in merr and "processes below it" in merr, merr


@case("test_monitor_signals_sent_the_moment_its_socket_appears_are_not_fatal")
def _():
    """The keeper binds the socket before any monitor runs: a SIGUSR1 sent
    as soon as the socket exists once killed the keeper or the monitor
    (default action). Now it reaches the monitor (held until it handles
    it), and SIGTERM then ends it cleanly, statistics printed."""
    with tempfile.TemporaryDirectory() as tmp:
        _, snap = make_snapshot(tmp, mib=8)
        for i in range(20):
            sock = os.path.join(tmp, f"sock{i}")
            mon = subprocess.Popen([faultline, "monitor", "--snapshot", snap, "--socket", sock],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            end = time.time() + 30
            while not os.path.exists(sock) and time.time() < end:
                time.sleep(0.0002)
            mon.send_signal(signal.SIGUSR1)
            time.sleep(0.3)  # the keeper and monitor at work meanwhile
            mon.send_signal(signal.SIGTERM)
            out, err = mon.communicate(timeout=30)
            assert "died of signal" not in err and mon.returncode != -signal.SIGUSR1, \
                (i, mon.returncode, err)
            assert "faultline monitor statistics" in out + err, (i, mon.returncode, out, err)


tap.run()
