#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline lazy-pages` serving a real `criu restore --lazy-pages`
(CRIU built by ../shared/criu/build.sh; the cases skip, saying why, only
when it cannot be built). The workload tree checks every page itself: a
fork right after the restore, mremap, MADV_DONTNEED and munmap of lazy
memory, a zombie, a process that exits with pages still owed.

And the same tree as a container under runc (Debian's 1.1.5), whose
`checkpoint --lazy-pages [--page-server]` and `restore --lazy-pages` drive
CRIU, with faultline lazy-pages serving it, locally and between two network
namespaces (skipped, saying so, without runc).

  test_criu.py FAULTLINE WORKLOAD CRIU_BUILD_SH STATIC_WORKLOAD"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case  # noqa: E402
import tap  # noqa: E402
import criu_images  # noqa: E402
import atexit  # noqa: E402
import ctypes  # noqa: E402

# Orphans of the dumped tree come to us, not to this machine's init (which
# may leave them unreaped): a restore needs their pids free.
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

faultline, workload, build_sh, static_workload = sys.argv[1:5]
MIB = 32
_criu = None


def criu():
    """The criu binary, built once (cached by the script)."""
    global _criu
    if _criu is None:
        if os.geteuid() != 0:
            raise tap.Skip("CRIU needs root")
        p = subprocess.run(["bash", build_sh], capture_output=True, text=True, timeout=900)
        if p.returncode != 0 or not os.access(p.stdout.strip(), os.X_OK):
            _criu = ""
            _criu_why[0] = f"CRIU cannot be built here: {p.stderr.strip()[-300:]}"
        else:
            _criu = p.stdout.strip()
    if not _criu:
        raise tap.Skip(_criu_why[0])
    return _criu


_criu_why = [""]


def wait_for(path, proc=None, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}) before {path}")
        time.sleep(0.02)
    raise AssertionError(f"no {path} after {timeout} s")


_started = []


@atexit.register
def _end_leftovers():
    """A case that failed half-way leaves a tree waiting for its go."""
    for pid in _started:
        try:
            if b"criu-workload" in open(f"/proc/{pid}/cmdline", "rb").read():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def start_workload(tmp, mib=MIB, single=False, pidns=False):
    """The tree, detached in its own session (and pid namespace): its pid."""
    cmd = [workload, tmp, str(mib)] + (["single"] if single else [])
    if pidns:
        cmd = ["unshare", "-p", "-f", "setsid"] + cmd
    else:
        pass  # start_new_session: its own session already
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(os.path.join(tmp, "ready"), p)
    if pidns:
        # unshare's child: pid 1 of the new namespace
        kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
        assert len(kids) == 1, kids
        _started.append(int(kids[0]))
        return p, int(kids[0])
    _started.append(p.pid)
    return p, p.pid


def results(tmp, want_done=True, timeout=30):
    path = os.path.join(tmp, "results")
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            lines = open(path).read().split("\n")
            if not want_done or "ok root" in lines or any(x.startswith("FAIL") for x in lines):
                return [x for x in lines if x]
        time.sleep(0.05)
    return open(path).read().split("\n") if os.path.exists(path) else []


def check_tree(tmp, timeout=30):
    got = results(tmp, timeout=timeout)
    bad = [x for x in got if x.startswith("FAIL")]
    assert not bad, f"the workload found bad memory: {bad}"
    for who in ("ok root", "ok child", "ok fork", "ok zombie", "ok owed"):
        assert who in got, f"'{who}' missing from the workload's results: {got}"


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def tree(pid):
    out = [pid]
    for t in os.listdir(f"/proc/{pid}/task"):
        for k in open(f"/proc/{pid}/task/{t}/children").read().split():
            out += tree(int(k))
    return out


def reap_gone(pids, timeout=20):
    """Reap what comes to us until none of pids is left."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return
        time.sleep(0.02)
    raise AssertionError(f"the dumped tree's pids {pids} are still taken")


def dump_local(tmp, imgs, pid):
    pids = tree(pid)
    p = run([criu(), "dump", "-t", str(pid), "-D", imgs, "-o", "dump.log"])
    assert p.returncode == 0, "criu dump failed: " + tail(os.path.join(imgs, "dump.log"))
    reap_gone(pids)


def tail(path, n=6):
    """The log's errors and last lines, on one line (a TAP comment)."""
    try:
        lines = open(path).read().split("\n")
    except OSError as e:
        return str(e)
    errs = [x for x in lines if "Error" in x and "RLIMIT_NOFILE" not in x]
    return " | ".join(errs[-4:] + lines[-n:])


def restore(imgs, work=None):
    cmd = [criu(), "restore", "-D", imgs, "--lazy-pages", "-d", "-o", "restore.log"]
    if work:
        cmd += ["-W", work]
    p = run(cmd)
    return p.returncode, tail(os.path.join(work or imgs, "restore.log"))


@case("faults only: fork, mremap, DONTNEED and munmap meet pages that are all still owed")
def test_faults_only():
    criu()
    with tempfile.TemporaryDirectory() as tmp:
        imgs = os.path.join(tmp, "img")
        os.mkdir(imgs)
        w, pid = start_workload(tmp)
        dump_local(tmp, imgs, pid)
        open(os.path.join(tmp, "go"), "w").close()
        lp = subprocess.Popen([faultline, "lazy-pages", "-D", imgs, "--no-prefetch"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(os.path.join(imgs, "lazy-pages.socket"), lp)
            rc, log = restore(imgs)
            assert rc == 0, "criu restore failed: " + log
            check_tree(tmp)
            out, err = lp.communicate(timeout=60)
            assert lp.returncode == 0 and "Sanitizer" not in err, err
            # nothing streams: every event of the tree met owed pages
            assert "1 fork, 1 remap, 1 remove," in out, out
            assert " 0 prefetched" in out and "0 pages poisoned" in out, out
        finally:
            if lp.poll() is None:
                lp.kill()
                lp.wait()


@case("local images: a tree with fork, mremap, DONTNEED, munmap, a zombie and owed pages")
def test_local():
    criu()
    with tempfile.TemporaryDirectory() as tmp:
        imgs, work = os.path.join(tmp, "img"), os.path.join(tmp, "work")
        os.mkdir(imgs)
        os.mkdir(work)
        w, pid = start_workload(tmp)
        dump_local(tmp, imgs, pid)
        open(os.path.join(tmp, "go"), "w").close()
        # as a runtime runs criu's daemon: detached, pidfile, log file, work dir
        pidfile = os.path.join(tmp, "lp.pid")
        p = run([faultline, "lazy-pages", "-D", imgs, "-W", work, "-d", "--pidfile", pidfile,
                 "-o", "lazy.log", "-v"])
        assert p.returncode == 0, p.stderr
        lp = int(open(pidfile).read())
        rc, log = restore(imgs, work)
        assert rc == 0, "criu restore failed: " + log
        check_tree(tmp)
        reap_gone([lp], timeout=30)  # a daemon: an orphan, ours to reap
        lazylog = open(os.path.join(work, "lazy.log")).read()
        assert "lazy-pages: done" in lazylog, lazylog
        assert "Sanitizer" not in lazylog, lazylog
        # How many events it saw depends on timing (it may be done before
        # the tree forks); the tree's own checks are what counts.
        assert "0 pages poisoned" in lazylog, lazylog


def page_server_dump(tmp, pid, port):
    src = os.path.join(tmp, "src")
    os.mkdir(src)
    r, w = os.pipe()
    d = subprocess.Popen([criu(), "dump", "-t", str(pid), "-D", src, "--lazy-pages",
                          "--address", "127.0.0.1", "--port", str(port), "-o", "dump.log",
                          "--status-fd", str(w)], pass_fds=(w,),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    ok = os.read(r, 1)
    os.close(r)
    assert ok, "criu dump --lazy-pages never listened: " + tail(os.path.join(src, "dump.log"))
    return d, src


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def copy_images(src, dst):
    os.mkdir(dst)
    for f in os.listdir(src):  # the images, and runc's descriptors.json
        if not f.endswith(".log"):
            with open(os.path.join(src, f), "rb") as a, open(os.path.join(dst, f), "wb") as b:
                b.write(a.read())


@case("post-copy over criu dump's page server (pid namespace, loopback)")
def test_page_server():
    criu()
    with tempfile.TemporaryDirectory() as tmp:
        w, pid = start_workload(tmp, pidns=True)
        port = free_port()
        d, src = page_server_dump(tmp, pid, port)
        dst = os.path.join(tmp, "dst")
        copy_images(src, dst)
        open(os.path.join(tmp, "go"), "w").close()
        lp = subprocess.Popen([faultline, "lazy-pages", "-D", dst, "--page-server",
                               "--address", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(os.path.join(dst, "lazy-pages.socket"), lp)
            rc, log = restore(dst)
            assert rc == 0, "criu restore failed: " + log
            check_tree(tmp)
            out, err = lp.communicate(timeout=60)
            assert lp.returncode == 0, err
            assert d.wait(timeout=60) == 0, "criu dump: " + tail(os.path.join(src, "dump.log"))
            assert "lazy-pages: done" in err, err
        finally:
            for p in (lp, d, w):
                if p.poll() is None:
                    p.kill()
                    p.wait()


def serve_pages(lazy_by_pid, port_box, hostile_after, log, how="wrong address"):
    """A page server speaking CRIU's wire: answers GETs from the images'
    bytes, then (hostile_after) sends a reply for the wrong address, or
    (how="cut") closes the connection half-way through a reply."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port_box.append(ls.getsockname()[1])
    c, _ = ls.accept()
    served = 0
    try:
        while True:
            h = b""
            while len(h) < 32:
                k = c.recv(32 - len(h))
                if not k:
                    return
                h += k
            cmd, _, n, vaddr, pid = struct.unpack("<IIQQQ", h)
            if cmd == 0x1023:
                c.sendall(struct.pack("<i", 0))
                return
            assert cmd == 7, cmd
            if served >= hostile_after and how == "cut":
                log.append(f"cut in the middle of {n} pages at {vaddr:#x}")
                c.sendall(struct.pack("<IIQQQ", 0x40006, 0, n, vaddr, pid) + b"\x55" * 2048)
                # A FIN after the half reply, not a reset: closing with
                # GETs unread would send RST, and the client could lose
                # the reply's bytes (and see the cut between replies).
                c.shutdown(socket.SHUT_WR)
                c.settimeout(10)
                try:
                    while c.recv(65536):
                        pass
                except OSError:
                    pass
                return
            if served >= hostile_after:
                log.append(f"hostile reply to {n} pages at {vaddr:#x}")
                c.sendall(struct.pack("<IIQQQ", 0x40006, 0, n, vaddr + 4096, pid) +
                          b"\0" * (n * 4096))
                time.sleep(1)
                return
            pages = [lazy_by_pid[pid].get(vaddr + i * 4096) for i in range(n)]
            assert None not in pages, f"GET for pages the dump never had: {vaddr:#x}+{n}"
            data = b"".join(pages)
            c.sendall(struct.pack("<IIQQQ", 0x40006, 0, n, vaddr, pid) + data)
            served += 1
    finally:
        c.close()
        ls.close()


def hostile(how, want):
    criu()
    with tempfile.TemporaryDirectory() as tmp:
        imgs = os.path.join(tmp, "img")
        os.mkdir(imgs)
        w, pid = start_workload(tmp, single=True)
        dump_local(tmp, imgs, pid)
        lazy = {pid: {base + i: chunk[i:i + 4096]
                      for base, chunk in criu_images.make_remote(imgs, pid).items()
                      for i in range(0, len(chunk), 4096)}}
        port, log = [], []
        t = threading.Thread(target=serve_pages, args=(lazy, port, 8, log, how), daemon=True)
        t.start()
        while not port:
            time.sleep(0.01)
        open(os.path.join(tmp, "go"), "w").close()
        lp = subprocess.Popen([faultline, "lazy-pages", "-D", imgs, "--page-server",
                               "--address", "127.0.0.1", "--port", str(port[0])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(os.path.join(imgs, "lazy-pages.socket"), lp)
            # The bad reply may come while criu restore still runs (its
            # restorer faults too): then the restore fails, which is right.
            rc, rlog = restore(imgs)
            out, err = lp.communicate(timeout=60)
            got = results(tmp, want_done=False, timeout=1)
            for line in err.split("\n"):
                if "page server" in line or "killed" in line or "poison" in line:
                    print("# " + line.strip(), flush=True)
            assert log, "the server never got to misbehave"
            assert want in err, err
            assert "Sanitizer" not in err, err
            assert lp.returncode != 0, "lazy-pages said all was well: " + err
            assert not any(x.startswith("FAIL") for x in got), f"zeros were read: {got}"
            assert "ok root" not in got, f"the process ran on without its pages: {got}"
            assert not os.path.exists(f"/proc/{pid}") or \
                open(f"/proc/{pid}/stat").read().split()[2] in "ZX", "the process lives on"
        finally:
            if lp.poll() is None:
                lp.kill()
                lp.wait()


@case("a hostile page server: a malformed reply is refused, the process dies, never zeros")
def test_hostile_page_server():
    hostile("wrong address", "malformed reply")


@case("a page server that vanishes mid-reply: the process dies, never zeros")
def test_page_server_cut():
    hostile("cut", "the connection was lost in the middle of")


@case("malformed images are refused with the file named, and criu restore cannot start")
def test_malformed_images():
    criu()
    with tempfile.TemporaryDirectory() as tmp:
        imgs = os.path.join(tmp, "img")
        os.mkdir(imgs)
        w, pid = start_workload(tmp, mib=4, single=True)
        dump_local(tmp, imgs, pid)
        pm = os.path.join(imgs, f"pagemap-{pid}.img")
        good = open(pm, "rb").read()
        pages_id, _ = criu_images.pagemap(pm)
        pf = os.path.join(imgs, f"pages-{pages_id}.img")
        gooddata = open(pf, "rb").read()
        cases = [
            (pm, good[:-3], f"pagemap-{pid}.img: record"),
            (pm, good[:4] + b"\0\0\0\0" + good[8:], f"pagemap-{pid}.img: magic"),
            (pf, gooddata[:len(gooddata) // 2], f"pages-{pages_id}.img"),
        ]
        for path, data, want in cases:
            with open(path, "wb") as f:
                f.write(data)
            p = run([faultline, "lazy-pages", "-D", imgs])
            assert p.returncode == 1 and want in p.stderr, (want, p.stderr)
            assert not os.path.exists(os.path.join(imgs, "lazy-pages.socket"))
            with open(path, "wb") as f:
                f.write(good if path == pm else gooddata)
        rc, log = restore(imgs)
        assert rc != 0, "criu restore --lazy-pages ran with no daemon"


def runc_tools(tmp):
    """runc with its own state dir, and CRIU's options for it."""
    if not shutil.which("runc"):
        raise tap.Skip("runc is not installed (Debian: apt-get install runc)")
    conf = os.path.join(tmp, "criu.conf")
    with open(conf, "w") as f:
        # No iptables-restore here to lock the container's network with
        # during the dump; the container has no connections to protect.
        f.write("network-lock skip\n")
    env = dict(os.environ, CRIU_CONFIG_FILE=conf)
    return ["runc", "--root", os.path.join(tmp, "runc-state"), "--log",
            os.path.join(tmp, "runc.log"), "--criu", criu()], env


def make_bundle(tmp):
    """A root filesystem holding only the static workload tree."""
    bundle = os.path.join(tmp, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "w", "proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy(static_workload, os.path.join(rootfs, "bin", "criu-workload"))
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/criu-workload", "/w", str(MIB)]
    cfg["root"]["readonly"] = False
    json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
    return bundle, os.path.join(rootfs, "w")


def runc_container(rc, env, bundle, w, cid):
    # The container keeps runc's stdio: /dev/null, never a pipe of ours.
    p = subprocess.run(rc + ["run", "-d", "--bundle", bundle, cid], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, "runc run failed: " + tail(rc[4])
    wait_for(os.path.join(w, "ready"))


def runc_cleanup(rc, env, ids):
    for cid in ids:
        subprocess.run(rc + ["delete", "-f", cid], env=env, capture_output=True, timeout=60)


@case("runc: a container checkpointed and restored lazily from local images")
def test_runc_local():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        rc, env = runc_tools(tmp)
        bundle, w = make_bundle(tmp)
        imgs, work = os.path.join(tmp, "img"), os.path.join(tmp, "work")
        try:
            runc_container(rc, env, bundle, w, "fl-a")
            p = run(rc + ["checkpoint", "--image-path", imgs, "--work-path", work, "fl-a"],
                    env=env)
            assert p.returncode == 0, "runc checkpoint: " + p.stderr + \
                tail(os.path.join(work, "dump.log"))
            open(os.path.join(w, "go"), "w").close()
            pidfile = os.path.join(tmp, "lp.pid")
            p = run([faultline, "lazy-pages", "-D", imgs, "-W", work, "-d", "--pidfile",
                     pidfile, "-o", "lazy.log"])
            assert p.returncode == 0, "lazy-pages -d exited %d: %s%s" % (
                p.returncode, p.stderr, tail(os.path.join(work, "lazy.log")))
            p = subprocess.run(rc + ["restore", "-d", "--lazy-pages", "--image-path", imgs,
                                     "--work-path", work, "--bundle", bundle, "fl-b"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=120)
            assert p.returncode == 0, "runc restore: " + tail(rc[4]) + \
                tail(os.path.join(work, "restore.log"))
            check_tree(w)
            reap_gone([int(open(pidfile).read())], timeout=30)
            lazylog = open(os.path.join(work, "lazy.log")).read()
            assert "lazy-pages: done" in lazylog and "Sanitizer" not in lazylog, lazylog
        finally:
            runc_cleanup(rc, env, ["fl-a", "fl-b"])


def netns_pair(tag):
    """Two network namespaces joined by veth: TAG-src 10.215.3.1, TAG-dst .2."""
    cmds = [f"ip netns add {tag}-src", f"ip netns add {tag}-dst",
            f"ip link add {tag}-a type veth peer name {tag}-b",
            f"ip link set {tag}-a netns {tag}-src", f"ip link set {tag}-b netns {tag}-dst",
            f"ip -n {tag}-src addr add 10.215.3.1/24 dev {tag}-a",
            f"ip -n {tag}-dst addr add 10.215.3.2/24 dev {tag}-b",
            f"ip -n {tag}-src link set {tag}-a up", f"ip -n {tag}-dst link set {tag}-b up",
            f"ip -n {tag}-src link set lo up", f"ip -n {tag}-dst link set lo up"]
    for c in cmds:
        p = subprocess.run(c.split(), capture_output=True, text=True)
        assert p.returncode == 0, f"{c}: {p.stderr}"


@case("runc: a container migrated post-copy over criu's page server, netns to netns")
def test_runc_page_server():
    tag = f"flrc{os.getpid() % 100000}"
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        rc, env = runc_tools(tmp)
        bundle, w = make_bundle(tmp)
        src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
        swork, dwork = os.path.join(tmp, "swork"), os.path.join(tmp, "dwork")
        # nsenter --net, not `ip netns exec`: that one also makes a mount
        # namespace, which CRIU would have to dump.
        at_src = ["nsenter", f"--net=/run/netns/{tag}-src"]
        at_dst = ["nsenter", f"--net=/run/netns/{tag}-dst"]
        port = free_port()
        ck = lp = None
        try:
            netns_pair(tag)
            runc_container(rc, env, bundle, w, "fl-c")
            r, wfd = os.pipe()
            ck = subprocess.Popen(at_src + rc + ["checkpoint", "--lazy-pages", "--page-server",
                                                 f"10.215.3.1:{port}", "--status-fd", str(wfd),
                                                 "--image-path", src, "--work-path", swork,
                                                 "fl-c"],
                                  env=env, pass_fds=(wfd,), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            os.close(wfd)
            ok = os.read(r, 1)
            os.close(r)
            assert ok, "runc checkpoint --lazy-pages never listened: " + \
                tail(os.path.join(swork, "dump.log"))
            copy_images(src, dst)
            open(os.path.join(w, "go"), "w").close()
            os.makedirs(dwork)
            lp = subprocess.Popen(at_dst + [faultline, "lazy-pages", "-D", dst, "-W", dwork,
                                            "--page-server", "--address", "10.215.3.1",
                                            "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_for(os.path.join(dwork, "lazy-pages.socket"), lp)
            p = subprocess.run(at_dst + rc + ["restore", "-d", "--lazy-pages", "--image-path",
                                              dst, "--work-path", dwork, "--bundle", bundle,
                                              "fl-d"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=120)
            assert p.returncode == 0, "runc restore: " + tail(rc[4]) + \
                tail(os.path.join(dwork, "restore.log"))
            check_tree(w)
            out, err = lp.communicate(timeout=60)
            assert lp.returncode == 0 and "Sanitizer" not in err, err
            _, cerr = ck.communicate(timeout=60)
            assert ck.returncode == 0, "runc checkpoint: " + cerr
        finally:
            for p in (lp, ck):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
            runc_cleanup(rc, env, ["fl-c", "fl-d"])
            for ns in ("src", "dst"):
                subprocess.run(["ip", "netns", "del", f"{tag}-{ns}"], capture_output=True)


tap.run()
