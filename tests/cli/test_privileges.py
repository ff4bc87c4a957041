#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Least privilege, read from /proc: once set up, every thread of
`faultline receive` (its network threads, its monitor) and of
`faultline monitor` holds no capability, an empty bounding and ambient
set, and no_new_privs, so no execve() can regain anything; receive,
started as root, runs as nobody too. The one exception is receive's
launcher, forked before the drop to start the restorer, which becomes
the restorer."""
import os
import signal
import pwd
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case, Skip  # noqa: E402
import tap  # noqa: E402

faultline, workload, lazy_source = sys.argv[1:4]
CAP_KILL, CAP_SYS_PTRACE = 5, 19


def status(pid, tid):
    fields = {}
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def check_dropped(pid, what, kept=0):
    """Every thread of pid: no capability but those of the mask kept,
    nothing to regain."""
    tids = os.listdir(f"/proc/{pid}/task")
    for tid in tids:
        s = status(pid, tid)
        for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            allowed = kept if k in ("CapPrm", "CapEff") else 0
            assert int(s[k], 16) & ~allowed == 0, \
                f"{what} thread {tid} ({s['Name']}): {k} {s[k]}"
        assert s["NoNewPrivs"] == "1", f"{what} thread {tid}: NoNewPrivs {s['NoNewPrivs']}"
    return len(tids)


def check_user(pid, what, uid):
    """Every thread of pid runs as uid (real, effective, saved, fs), with
    no supplementary group."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        s = status(pid, tid)
        assert s["Uid"].split() == [str(uid)] * 4, f"{what} thread {tid}: Uid {s['Uid']}"
        assert s["Groups"] == "", f"{what} thread {tid}: Groups {s['Groups']}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@case("receive drops every privilege in every thread, during a migration")
def receive_threads():
    if os.geteuid() != 0:
        raise Skip("needs root (there is nothing to drop otherwise)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        sha = os.path.join(tmp, "sha")
        log = open(os.path.join(tmp, "dst.log"), "w+")
        rx = subprocess.Popen([faultline, "receive", "--listen", f"127.0.0.1:{port}", "--plain",
                               "--exec", f"{workload} dest --mib 32 --seconds 3 --sha {sha}"],
                              stderr=log, stdout=log)
        time.sleep(0.3)
        src = subprocess.Popen([workload, "source", "--mib", "32", "--to",
                                f"127.0.0.1:{port}", "--plain", "--postcopy-only",
                                "--seconds", "0.2", "--sha", sha],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Wait for the switch-over: the restorer runs, all threads are up.
            for _ in range(200):
                log.seek(0)
                if "starting the restorer" in log.read():
                    break
                time.sleep(0.05)
            # Right now the network threads still receive the stream.
            n = check_dropped(rx.pid, "faultline receive")
            assert n >= 2, f"expected the main thread and others, saw {n}"
            log.seek(0)
            if "staying root" not in log.read():  # a kernel without POISON
                check_user(rx.pid, "faultline receive", pwd.getpwnam("nobody").pw_uid)
            time.sleep(0.5)
            check_dropped(rx.pid, "faultline receive")
        finally:
            src.wait(timeout=120)
            rc = rx.wait(timeout=120)
            log.seek(0)
            out = log.read()
        assert rc == 0, out
        assert "memory equals the source's" in out, out


@case("migrate --pid keeps CAP_SYS_PTRACE and CAP_KILL only, in every thread, in post-copy")
def migrate_threads():
    if os.geteuid() != 0:
        raise Skip("needs root (there is nothing to drop otherwise)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state")
        prog = subprocess.Popen([lazy_source, "--mib", "512", "--state", state],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rlog = open(os.path.join(tmp, "dst.log"), "w+")
        mlog = open(os.path.join(tmp, "src.log"), "w+")
        rx = mig = None
        try:
            for _ in range(200):
                if os.path.exists(state) and os.path.getsize(state):
                    break
                time.sleep(0.05)
            with open(state) as f:
                spid = int(f.read().split()[3])
            rx = subprocess.Popen([faultline, "receive", "--listen", f"127.0.0.1:{port}",
                                   "--plain", "--exec", f"{workload} dest --state {state}"],
                                  stderr=rlog, stdout=rlog)
            time.sleep(0.3)
            mig = subprocess.Popen([faultline, "migrate", "--pid", str(spid), "--to",
                                    f"127.0.0.1:{port}", "--plain"], stdout=mlog, stderr=mlog)
            for _ in range(400):
                mlog.seek(0)
                if "switch-over" in mlog.read():
                    break
                time.sleep(0.02)
            # Post-copy: hold the destination still so the source's
            # threads stay up while they are read.
            os.kill(rx.pid, signal.SIGSTOP)
            try:
                n = check_dropped(mig.pid, "faultline migrate",
                                  kept=(1 << CAP_SYS_PTRACE) | (1 << CAP_KILL))
            finally:
                os.kill(rx.pid, signal.SIGCONT)
            assert n >= 3, f"expected the post-copy threads, saw {n}"
            assert mig.wait(timeout=120) == 0
            assert rx.wait(timeout=120) == 0
            rlog.seek(0)
            out = rlog.read()
            assert "memory equals the state file's" in out, out
        finally:
            for p in (mig, rx, prog):
                if p and p.poll() is None:
                    p.kill()
                    p.wait()


@case("monitor and its keeper drop every privilege but CAP_KILL once the socket listens")
def monitor_threads():
    if os.geteuid() != 0:
        raise Skip("needs root (there is nothing to drop otherwise)")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "mem")
        with open(data, "wb") as f:
            f.write(b"\x01" * 4096 * 16)
        sock = os.path.join(tmp, "fc.sock")
        mon = subprocess.Popen([faultline, "monitor", "--firecracker-socket", sock,
                                "--memory-file", data], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            time.sleep(0.2)
            check_dropped(mon.pid, "faultline monitor's keeper", kept=1 << CAP_KILL)
            kids = open(f"/proc/{mon.pid}/task/{mon.pid}/children").read().split()
            assert len(kids) == 1, f"the keeper runs one monitor, not {kids}"
            check_dropped(int(kids[0]), "faultline monitor", kept=1 << CAP_KILL)
        finally:
            mon.terminate()
            mon.wait(timeout=30)


tap.run()
