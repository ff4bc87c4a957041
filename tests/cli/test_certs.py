#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline certs`: a CA and host certificates that openssl accepts,
private keys, and clear refusals; `--certs DIR` of migrate and receive
finds what it made (--cert-name, or the default names), or names the file
it misses."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case, Skip  # noqa: E402
import tap  # noqa: E402

faultline = sys.argv[1]
# for the migration over TLS: lazy-workload-source and migrate-workload
lazy_source = sys.argv[2] if len(sys.argv) > 2 else None
migrate_workload = sys.argv[3] if len(sys.argv) > 3 else None


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


def listening(*args):
    """Start `faultline receive ARGS`, return its listening line (which
    names the certificate it chose), stop it."""
    p = subprocess.Popen([faultline, "receive", "--listen", "127.0.0.1:0", "--exec", "true", *args],
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
    finally:
        p.kill()
        p.wait()
        p.stderr.close()
    assert "listening on" in line, line
    return line


def refused(*args):
    r = subprocess.run([faultline, "receive", "--listen", "127.0.0.1:0", "--exec", "true", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    return r.stderr


@case("test_certs_dir_finds_the_hosts_certs_made_by_name")
def _():
    d = tempfile.mkdtemp(prefix="fl-cli-certs-")
    try:
        out = os.path.join(d, "pki")
        assert run("--out", out, "--hosts", "alpha,beta").returncode == 0
        line = listening("--certs", out, "--cert-name", "beta")
        assert os.path.join(out, "beta.crt") in line, line
        line = listening("--cert-name", "alpha", "--certs", out)
        assert os.path.join(out, "alpha.crt") in line, line
    finally:
        shutil.rmtree(d, ignore_errors=True)


@case("test_certs_dir_default_is_the_role_then_the_only_host_certificate")
def _():
    d = tempfile.mkdtemp(prefix="fl-cli-certs-")
    try:
        out = os.path.join(d, "pki")
        assert run("--out", out).returncode == 0  # source, dest
        line = listening("--certs", out)
        assert os.path.join(out, "dest.crt") in line, line
        # a host given only its own certificate, key and the CA
        mine = os.path.join(d, "mine")
        os.mkdir(mine)
        for f in ("ca.crt", "source.crt", "source.key"):
            shutil.copy(os.path.join(out, f), mine)
        line = listening("--certs", mine)
        assert os.path.join(mine, "source.crt") in line, line
    finally:
        shutil.rmtree(d, ignore_errors=True)


@case("test_certs_dir_without_this_hosts_certificate_is_refused_naming_what_it_read")
def _():
    d = tempfile.mkdtemp(prefix="fl-cli-certs-")
    try:
        out = os.path.join(d, "pki")
        assert run("--out", out, "--hosts", "alpha,beta").returncode == 0
        err = refused("--certs", out)
        assert os.path.join(out, "dest.crt") in err and "alpha, beta" in err \
            and "--cert-name" in err, err
        err = refused("--certs", out, "--cert-name", "gamma")
        assert os.path.join(out, "gamma.crt") in err, err
        os.unlink(os.path.join(out, "beta.key"))
        err = refused("--certs", out, "--cert-name", "beta")
        assert os.path.join(out, "beta.key") in err, err
        err = refused("--certs", d)
        assert "no host certificate" in err and "faultline certs" in err, err
        err = refused("--cert-name", "alpha")
        assert "--certs" in err, err
        err = refused("--certs", out, "--cert-name", "../pki/alpha")
        assert "not a path" in err, err
    finally:
        shutil.rmtree(d, ignore_errors=True)


@case("test_certs_for_hosts_a_b_carry_a_migration_over_tls")
def _():
    if not (lazy_source and migrate_workload):
        raise Skip("needs lazy-workload-source and migrate-workload (meson passes them)")
    d = tempfile.mkdtemp(prefix="fl-cli-certs-")
    procs = []
    try:
        out = os.path.join(d, "pki")
        assert run("--out", out, "--hosts", "a,b").returncode == 0
        state = os.path.join(d, "state")
        src = subprocess.Popen([lazy_source, "--mib", "8", "--state", state],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(src)
        for _ in range(200):
            if os.path.exists(state) and os.path.getsize(state):
                break
            time.sleep(0.05)
        pid = int(open(state).read().split()[3])
        dst = subprocess.Popen([faultline, "receive", "--listen", "127.0.0.1:0", "--certs", out,
                                "--cert-name", "b", "--exec", f"{migrate_workload} dest --state {state}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(dst)
        line = dst.stdout.readline()
        m = re.search(r"\(port (\d+)\)", line)
        assert m, line
        mig = subprocess.run([faultline, "migrate", "--pid", str(pid), "--to", f"127.0.0.1:{m.group(1)}",
                              "--certs", out, "--cert-name", "a"],
                             capture_output=True, text=True, timeout=120)
        rest, _ = dst.communicate(timeout=120)
        assert mig.returncode == 0, mig.stdout + mig.stderr + rest
        assert os.path.join(out, "a.crt") in mig.stderr, mig.stderr
        assert dst.returncode == 0 and "memory equals the state file's" in rest, line + rest
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            os.kill(int(open(os.path.join(d, "state")).read().split()[3]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(d, ignore_errors=True)


tap.run()
