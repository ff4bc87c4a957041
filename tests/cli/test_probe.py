#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline probe`: text and --json agree with what the machine says."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case  # noqa: E402
import tap  # noqa: E402

faultline = sys.argv[1]


def run(*args):
    return subprocess.run([faultline, *args], capture_output=True, text=True, timeout=60)


@case("test_probe_json_is_valid_and_complete")
def _():
    p = run("probe", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["kernel"]["release"] == os.uname().release
    u = doc["userfaultfd"]
    assert u["available"] is True
    assert len(u["features"]) == 18, len(u["features"])
    assert all(isinstance(v, bool) for v in u["features"].values())
    assert u["ioctls"]["UFFDIO_API"] is True
    assert u["range_ioctls"]["anonymous"]["UFFDIO_COPY"] is True
    assert "UFFDIO_ZEROPAGE" in u["range_ioctls"]["anonymous"]
    assert isinstance(u["pagemap_scan"], bool)
    assert doc["kernel_patches"]["event_exit"] == u["features"]["UFFD_FEATURE_EVENT_EXIT"]
    # series features count only with the proof the series puts in fdinfo
    for key in ("pinned_pages_stay_dirty", "fork_pid", "event_exit_bit_unproven"):
        assert isinstance(doc["kernel_patches"][key], bool)
    for k in ("cap_sys_ptrace", "kernel_faults", "user_faults", "event_fork"):
        assert isinstance(doc["privileges"][k], bool), k
    free = open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read()
    assert doc["hugepages"]["free"] == int(free)
    assert doc["kvm"]["present"] == os.path.exists("/dev/kvm")


@case("test_probe_text_names_every_section")
def _():
    p = run("probe")
    assert p.returncode == 0, p.stderr
    for word in ("kernel:", "UFFD_FEATURE_WP_ASYNC", "UFFD_FEATURE_MOVE",
                 "range ioctls", "PAGEMAP_SCAN", "privileges:", "huge pages", "KVM"):
        assert word in p.stdout, word


@case("test_bad_command_line_is_usage_error")
def _():
    p = run("probe", "--bogus")
    assert p.returncode == 2, p.returncode
    p = run("no-such-command")
    assert p.returncode == 2 and "unknown command" in p.stderr, p.stderr
    p = run("--help")
    assert p.returncode == 0 and "probe" in p.stdout


tap.run()
