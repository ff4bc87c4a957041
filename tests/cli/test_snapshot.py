#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline snapshot`: a real child by pid, resumed, left stopped or
killed; --verify; clear errors."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case  # noqa: E402
import tap  # noqa: E402
import tempfile
import time

faultline = sys.argv[1]
MARK = b"FAULTLINE-CLI-PATTERN-"
# The child fills ~2 MiB with a pattern nobody else has, says ready, waits.
CHILD = ("import sys, time\n"
         "b = bytearray(%r * 100000)\n"
         "print('ready', flush=True)\n"
         "time.sleep(120)\n" % MARK)


def run(*args):
    return subprocess.run([faultline, *args], capture_output=True, text=True, timeout=120)


def child():
    c = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert c.stdout.readline().strip() == "ready"
    return c


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state(pid, want, seconds=5):
    end = time.time() + seconds
    while time.time() < end:
        if state(pid) in want:
            return True
        time.sleep(0.01)
    return False


class Tmp:
    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="fl-cli-snap-")
        return os.path.join(self.dir, "snap")

    def __exit__(self, *a):
        shutil.rmtree(self.dir, ignore_errors=True)


def pages_hold_pattern(snap):
    with open(os.path.join(snap, "pages"), "rb") as f:
        return MARK * 50 in f.read()


@case("test_snapshot_of_a_child_resumes_it_and_holds_its_memory")
def _():
    c = child()
    try:
        with Tmp() as snap:
            p = run("snapshot", "--pid", str(c.pid), "-o", snap)
            assert p.returncode == 0, p.stderr
            assert f"snapshot of pid {c.pid} in {snap}:" in p.stdout, p.stdout
            assert "resumed" in p.stdout, p.stdout
            assert wait_state(c.pid, "SR"), state(c.pid)
            assert c.poll() is None
            for name in ("manifest.pb", "pages", "checksums"):
                assert os.path.exists(os.path.join(snap, name)), name
            assert pages_hold_pattern(snap)
            v = run("snapshot", "--verify", snap)
            assert v.returncode == 0, v.stderr
            assert "every page matches its checksum" in v.stdout, v.stdout
            assert f"pid {c.pid} (python3" in v.stdout, v.stdout
            # A second snapshot into the same directory needs --force.
            p = run("snapshot", "--pid", str(c.pid), "-o", snap)
            assert p.returncode == 1 and "already holds a snapshot" in p.stderr, p.stderr
            p = run("snapshot", "--pid", str(c.pid), "-o", snap, "--force")
            assert p.returncode == 0, p.stderr
    finally:
        c.kill()
        c.wait()


@case("test_leave_stopped_leaves_the_child_stopped")
def _():
    c = child()
    try:
        with Tmp() as snap:
            p = run("snapshot", "--pid", str(c.pid), "-o", snap, "--leave-stopped")
            assert p.returncode == 0, p.stderr
            assert "left stopped" in p.stdout, p.stdout
            assert wait_state(c.pid, "T"), state(c.pid)
            time.sleep(0.2)
            assert state(c.pid) == "T"
            assert pages_hold_pattern(snap)
    finally:
        c.kill()
        c.wait()


@case("test_kill_kills_the_child_after_the_snapshot")
def _():
    c = child()
    try:
        with Tmp() as snap:
            p = run("snapshot", "--pid", str(c.pid), "-o", snap, "--kill")
            assert p.returncode == 0, p.stderr
            assert "killed" in p.stdout, p.stdout
            assert c.wait(timeout=10) == -9, c.returncode
            assert pages_hold_pattern(snap)
            assert run("snapshot", "--verify", snap).returncode == 0
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()


@case("test_verify_reports_a_corrupt_page_by_region_and_page")
def _():
    c = child()
    try:
        with Tmp() as snap:
            assert run("snapshot", "--pid", str(c.pid), "-o", snap).returncode == 0
            path = os.path.join(snap, "pages")
            data = open(path, "rb").read()
            at = data.index(MARK * 50) + 100
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(bytes([data[at] ^ 0xFF]))
            v = run("snapshot", "--verify", snap)
            assert v.returncode == 1, v.returncode
            assert "1 of" in v.stdout and "FAIL" in v.stdout, v.stdout
            assert "fails its checksum" in v.stderr and "region" in v.stderr and "page" in v.stderr, v.stderr
            # A damaged manifest is refused before any page is looked at.
            with open(os.path.join(snap, "manifest.pb"), "r+b") as f:
                f.truncate(10)
            v = run("snapshot", "--verify", snap)
            assert v.returncode == 1 and "truncated" in v.stderr, v.stderr
    finally:
        c.kill()
        c.wait()


@case("test_bad_pid_and_bad_command_lines_are_clear_errors")
def _():
    with Tmp() as snap:
        dead = subprocess.Popen(["true"])
        dead.wait()
        p = run("snapshot", "--pid", str(dead.pid), "-o", snap)
        assert p.returncode == 1, p.returncode
        assert f"no process with pid {dead.pid}" in p.stderr, p.stderr
        assert not os.path.exists(os.path.join(snap, "manifest.pb"))
        p = run("snapshot", "--pid", "abc", "-o", snap)
        assert p.returncode == 2 and "not a process id" in p.stderr, p.stderr
        p = run("snapshot", "--pid", "1")
        assert p.returncode == 2 and "-o DIR" in p.stderr, p.stderr
        p = run("snapshot", "--pid", "1", "-o", snap, "--kill", "--leave-stopped")
        assert p.returncode == 2 and "exclude each other" in p.stderr, p.stderr
        p = run("snapshot", "--verify", snap)
        assert p.returncode == 1 and "cannot open" in p.stderr, p.stderr
        p = run("snapshot", "--help")
        assert p.returncode == 0 and "--leave-stopped" in p.stdout
        p = run("--help")
        assert "snapshot" in p.stdout


@case("test_without_ptrace_access_says_what_privilege_is_needed")
def _():
    if os.geteuid() != 0:
        raise tap.Skip("needs root (to run the probe as another user)")
    c = child()
    try:
        with Tmp() as snap:
            os.chmod(os.path.dirname(snap), 0o777)
            p = subprocess.run([faultline, "snapshot", "--pid", str(c.pid), "-o", snap],
                               capture_output=True, text=True, timeout=60,
                               user=65534, group=65534, extra_groups=[])
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert "CAP_SYS_PTRACE" in p.stderr, p.stderr
            assert wait_state(c.pid, "SR"), state(c.pid)
    finally:
        c.kill()
        c.wait()


tap.run()
