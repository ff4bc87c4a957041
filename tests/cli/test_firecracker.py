#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline monitor --firecracker-socket` against a stand-in that does what
Firecracker does (examples/firecracker/fc-standin.c): guest memory in one or
two regions, a userfaultfd with EVENT_REMOVE handed over with a JSON region
list, faults from several threads (some inside the kernel), balloon
inflation. Every byte is checked against the memory file by the stand-in;
these cases check the monitor's side: it stays up after refusing bad
clients, says why, and exits once the VM is gone."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case  # noqa: E402
import tap  # noqa: E402

faultline, standin = sys.argv[1:3]
SKIP = 77


def make_file(tmp, mib=64, truncate_mib=0):
    path = os.path.join(tmp, "mem")
    args = [standin, "make-file", path, "--mib", str(mib)]
    if truncate_mib:
        args += ["--truncate-mib", str(truncate_mib)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=120)
    return path


def wait_for(path):
    for _ in range(500):
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def start_monitor(tmp, mem, *extra):
    sock = os.path.join(tmp, "fc.sock")
    js = os.path.join(tmp, "stats.json")
    mon = subprocess.Popen([faultline, "monitor", "--firecracker-socket", sock,
                            "--memory-file", mem, "--stats-json", js, *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(sock)
    return mon, sock, js


def run_vm(sock, mem, *args):
    r = subprocess.run([standin, "run", "--socket", sock, "--memory-file", mem, *args],
                       capture_output=True, text=True, timeout=300)
    if r.returncode == SKIP:
        raise tap.Skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "match the memory file" in r.stdout, r.stdout
    return r


def bad_client(sock, mem, kind, *args):
    r = subprocess.run([standin, "bad", "--socket", sock, "--memory-file", mem,
                        "--kind", kind, *args], capture_output=True, text=True, timeout=120)
    if r.returncode == SKIP:
        raise tap.Skip(r.stdout.strip())
    assert r.returncode == 0, f"{kind}: {r.stdout}{r.stderr}"
    return r.stdout


def finish(mon, js):
    out, err = mon.communicate(timeout=120)
    assert mon.returncode == 0, err
    assert "fault service latency" in out, out
    return out, err, json.load(open(js))


@case("test_firecracker_two_regions_with_holes_and_balloon_match_the_memory_file")
def _():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        mem = make_file(tmp)
        mon, sock, js = start_monitor(tmp, mem, "-v")
        run_vm(sock, mem, "--layout", "two", "--form", "page_size", "--threads", "4")
        out, err, doc = finish(mon, js)
        assert doc["handoffs"] == 1 and doc["handoffs_refused"] == 0, doc
        assert doc["events"]["remove"] == 2, doc  # two balloon inflations
        assert doc["events"]["exit"] == 1, doc
        assert doc["pages_zeroed"] > 0, doc  # holes and ballooned pages
        assert "Firecracker pid" in err and "2 regions" in err, err


@case("test_firecracker_accepts_the_older_page_size_kib_key")
def _():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        mem = make_file(tmp, 32)
        mon, sock, js = start_monitor(tmp, mem)
        run_vm(sock, mem, "--layout", "one", "--form", "page_size_kib", "--threads", "3")
        _, _, doc = finish(mon, js)
        assert doc["handoffs"] == 1, doc


@case("test_firecracker_accepts_both_page_size_keys_when_they_agree")
def _():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        mem = make_file(tmp, 16)
        mon, sock, js = start_monitor(tmp, mem, "--no-prefetch")
        run_vm(sock, mem, "--layout", "two", "--form", "both", "--no-balloon")
        _, _, doc = finish(mon, js)
        assert doc["pages_prefetched"] == 0, doc


BAD = {
    "notjson": "not a JSON array",
    "nofd": "no userfaultfd was attached",
    "missing": 'key "size" is missing',
    "dup": 'key "offset" given twice',
    "overflow": 'key "size": the number does not fit in 64 bits',
    "misaligned": 'key "offset": 100 is not aligned',
    "overlap": "overlaps region 0",
    "pagesize": 'key "page_size": 8192',
    "disagree": "disagree",
    "trailing": "unexpected bytes after the region list",
    "twofds": "2 fds were attached",
}


@case("test_firecracker_refuses_malformed_messages_and_serves_the_next_client")
def _():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        mem = make_file(tmp, 32)
        mon, sock, js = start_monitor(tmp, mem)
        for kind, why in BAD.items():
            said = bad_client(sock, mem, kind)
            assert why in said, f"{kind}: {said}"
            assert mon.poll() is None, f"the monitor exited after {kind}"
        bad_client(sock, mem, "partial")  # half a message, then gone
        run_vm(sock, mem, "--layout", "two", "--split")  # the good one, in two pieces
        _, err, doc = finish(mon, js)
        assert doc["handoffs"] == 1 and doc["handoffs_refused"] == len(BAD) + 1, doc
        assert "disconnected before its region list was complete" in err, err
        for why in BAD.values():
            assert why in err, f"monitor log lacks {why!r}: {err}"


@case("test_firecracker_refuses_a_memory_file_shorter_than_the_regions")
def _():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        mem = make_file(tmp, 64, truncate_mib=40)
        mon, sock, js = start_monitor(tmp, mem)
        said = bad_client(sock, mem, "valid", "--guest-mib", "64")
        assert "needs file bytes 0..67108864" in said, said
        assert "has only 41943040 bytes" in said, said
        assert mon.poll() is None, "the monitor exited after refusing"
        mon.send_signal(signal.SIGTERM)
        _, err, doc = finish(mon, js)
        assert doc["handoffs"] == 0 and doc["handoffs_refused"] == 1, doc
        assert "truncated" in err, err


@case("test_monitor_help_documents_the_firecracker_mode")
def _():
    r = subprocess.run([faultline, "monitor", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    for word in ("--firecracker-socket", "--memory-file", "--huge-pages", "EVENT_REMOVE",
                 "MADV_DONTNEED"):
        assert word in r.stdout, word
    r = subprocess.run([faultline, "monitor", "--memory-file", "/nonexistent"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--firecracker-socket" in r.stderr, r.stderr


tap.run()
