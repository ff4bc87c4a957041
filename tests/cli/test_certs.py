#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline certs`: a CA and host certificates that openssl accepts,
private keys, and clear refusals."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case, Skip  # noqa: E402
import tap  # noqa: E402

faultline = sys.argv[1]


def run(*args):
    return subprocess.run([faultline, "certs", *args], capture_output=True, text=True, timeout=60)


@case("certs makes a CA and a certificate per host that chain to it")
def _():
    d = tempfile.mkdtemp(prefix="fl-cli-certs-")
    try:
        out = os.path.join(d, "pki")
        r = run("--out", out, "--hosts", "alpha,10.1.2.3", "--days", "2")
        assert r.returncode == 0, r.stderr
        for f in ("ca.crt", "ca.key", "alpha.crt", "alpha.key", "10.1.2.3.crt", "10.1.2.3.key"):
            assert os.path.exists(os.path.join(out, f)), f
        assert os.stat(os.path.join(out, "alpha.key")).st_mode & 0o077 == 0
        if not shutil.which("openssl"):
            raise Skip("no openssl command to cross-check with")
        v = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile",
                            os.path.join(out, "ca.crt"), os.path.join(out, "alpha.crt")],
                           capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
        v = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile",
                            os.path.join(out, "ca.crt"), os.path.join(out, "10.1.2.3.crt")],
                           capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


@case("certs refuses a host name that is not a file name, and a bad command line")
def _():
    d = tempfile.mkdtemp(prefix="fl-cli-certs-")
    try:
        r = run("--out", d, "--hosts", "a/../b")
        assert r.returncode == 1 and "a/../b" in r.stderr, r.stderr
        r = run("--hosts", "a")
        assert r.returncode == 2 and "usage" in r.stderr, r.stderr
        r = run("--out", d, "--days", "0")
        assert r.returncode == 2 and "--days" in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


tap.run()
