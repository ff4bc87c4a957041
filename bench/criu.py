#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The same CRIU dump restored lazily by `criu lazy-pages` and by
`faultline lazy-pages`, side by side: from local images and over the
dump's page server (loopback), at 256 MiB and 1 GiB. The restored program
(bench/criu-reader) reads every page at once, timing each first touch.

  bench/criu.py [BUILD_DIR] [MiB...]     (default: build, 256 1024)
  FL_BENCH_REPS=N    repetitions, CRIU's and faultline's interleaved (default 3)
  FL_BENCH_SETTLE=S  seconds of quiet before each run (default 0: back to
                     back, as CRIU's figures in the issue were taken; 3
                     measures every run on cold memory)

Columns: time to first instruction (restore start to the program running
again), time until every page was in (restore start until the program had
read all of it), fill rate, first-touch p50/p99/max, the daemon's wall
time and CPU seconds (user+sys): the median of the repetitions, each figure alone. The two
daemons run in turn, so both meet the same machine: on these shared
machines the kernel's cost of fresh pages for the restored program varies
by 2x from one minute to the next, so compare the ratio line, not single
figures. The guest hands freed memory back to its host (free page
reporting) a few seconds after it is freed, and a page the host must
fault in again costs several times one it kept: the first touch of that
much fresh memory is measured beside, cold (after 3 s of quiet) and warm
(just after the same amount was freed), and FL_BENCH_SETTLE seconds of
quiet before each run make every run meet memory in the same state.
The /idle rows time each daemon alone: the program waits until the daemon
has installed every page and gone (their fill rate is the daemon's), then
reads. The program's own floor is measured beside: its reading loop over memory
the kernel has just mapped for it (each first touch of a new mapping costs
about 5 us on these nested guests, whoever installed the page), the rate
no daemon can pass; the ratio line gives each daemon's share of it.
Needs root and CRIU (../shared/criu/build.sh). Never fails on a time."""
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build")
sizes = [int(x) for x in sys.argv[2:]] or [256, 1024]
faultline = os.path.join(build, "src/cli/faultline")
reader = os.path.join(build, "bench/criu-reader")
drain = os.path.join(build, "bench/criu-drain")
build_sh = os.path.join(root, "..", "shared", "criu", "build.sh")
if not os.path.exists(build_sh):  # a clone elsewhere on the machine
    build_sh = "/work/shared/criu/build.sh"
criu = subprocess.run(["bash", build_sh],
                      capture_output=True, text=True, check=True).stdout.strip()
import ctypes  # noqa: E402
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: reap the dumped tree


def wait_for(path, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            raise RuntimeError(f"no {path}")
        time.sleep(0.005)


def reap(pids, timeout=30):
    end = time.time() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.time() < end:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.01)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def settle():
    time.sleep(float(os.environ.get("FL_BENCH_SETTLE", "0")))


def fresh_touch(mib):
    """MiB/s of the first touch of fresh anonymous memory (memset of a new
    mapping: the kernel allocates and zeroes each page, then it is
    written)."""
    import ctypes
    import mmap
    m = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = ctypes.c_char.from_buffer(m)
    t = time.monotonic()
    ctypes.memset(ctypes.addressof(buf), 1, mib << 20)
    t = time.monotonic() - t
    del buf
    m.close()
    return mib / t


def page_server_alone(mib, window):
    """criu dump --lazy-pages's page server drained with nothing restored."""
    tmp = tempfile.mkdtemp(prefix="fl-bench-criu-", dir="/var/tmp")
    try:
        subprocess.Popen(["unshare", "-p", "-f", "setsid", reader, tmp, str(mib)],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(os.path.join(tmp, "ready"))
        outer = [int(x) for x in os.listdir("/proc") if x.isdigit() and
                 open(f"/proc/{x}/cmdline", "rb").read().startswith(b"unshare") and
                 tmp.encode() in open(f"/proc/{x}/cmdline", "rb").read()][0]
        pid = int(open(f"/proc/{outer}/task/{outer}/children").read().split()[0])
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        port = free_port()
        r, wfd = os.pipe()
        dump = subprocess.Popen([criu, "dump", "-t", str(pid), "-D", src, "--lazy-pages",
                                 "--address", "127.0.0.1", "--port", str(port),
                                 "-o", "dump.log", "--status-fd", str(wfd)], pass_fds=(wfd,))
        os.close(wfd)
        os.read(r, 1)
        os.close(r)
        out = subprocess.run([drain, src, "127.0.0.1", str(port), "1024", str(window)],
                             capture_output=True, text=True, timeout=300).stdout.split()
        dump.wait()
        return float(out[0]) / float(out[1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def one(mib, remote, daemon, idle=False):
    settle()
    tmp = tempfile.mkdtemp(prefix="fl-bench-criu-", dir="/var/tmp")
    try:
        w = subprocess.Popen(["unshare", "-p", "-f", "setsid", reader, tmp, str(mib)],
                             start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(os.path.join(tmp, "ready"))
        pid = int(open(f"/proc/{w.pid}/task/{w.pid}/children").read().split()[0])
        src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
        os.mkdir(src)
        dump = None
        if remote:
            port = free_port()
            r, wfd = os.pipe()
            dump = subprocess.Popen([criu, "dump", "-t", str(pid), "-D", src, "--lazy-pages",
                                     "--address", "127.0.0.1", "--port", str(port),
                                     "-o", "dump.log", "--status-fd", str(wfd)],
                                    pass_fds=(wfd,))
            os.close(wfd)
            os.read(r, 1)
            os.close(r)
        else:
            subprocess.run([criu, "dump", "-t", str(pid), "-D", src, "-o", "dump.log"],
                           check=True)
            reap([pid, w.pid])
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.log"))
        subprocess.run(["sync"])
        if not idle:
            open(os.path.join(tmp, "go"), "w").close()
        cmd = [criu, "lazy-pages"] if daemon == "criu" else [faultline, "lazy-pages"]
        cmd += ["-D", dst, "-o", "lazy.log"]
        if remote:
            cmd += ["--page-server", "--address", "127.0.0.1", "--port", str(port)]
        d = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(os.path.join(dst, "lazy-pages.socket"))
        seen = {}

        def watch():  # times seen from here: the restored clocks may differ
            while len(seen) < 2:
                for f in ("resumed", "result"):
                    if f not in seen and os.path.exists(os.path.join(tmp, f)):
                        seen[f] = time.monotonic()
                time.sleep(0.0005)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t_restore = time.monotonic()
        subprocess.run([criu, "restore", "-D", dst, "--lazy-pages", "-d", "-o", "restore.log"],
                       check=True)
        if idle:  # the daemon alone: the program reads only once it has gone
            _, status, ru = os.wait4(d.pid, 0)
            t_daemon = time.monotonic() - t_restore
            open(os.path.join(tmp, "go"), "w").close()
        watcher.join(timeout=120)
        wait_for(os.path.join(tmp, "result"))
        if not idle:
            _, status, ru = os.wait4(d.pid, 0)
            t_daemon = time.monotonic() - t_restore
        if dump:
            dump.wait()
        res = open(os.path.join(tmp, "result")).read().split()
        _, p50, p99, mx, bad = (float(x) for x in res)
        # every page in: from the restore's start until the program had read
        # (and checked) all of it
        all_in = seen["result"] - t_restore
        return dict(first=seen["resumed"] - t_restore, all_in=all_in, rate=mib / all_in, p50=p50,
                    p99=p99, max=mx / 1000, bad=int(bad), daemon_s=t_daemon,
                    cpu=ru.ru_utime + ru.ru_stime, status=status)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


reps = max(1, int(os.environ.get("FL_BENCH_REPS", "3")))
print(f"CRIU lazy restore, {os.cpu_count()} CPUs, Linux {os.uname().release}; "
      f"restored program reads every page once, at once; median of {reps}, interleaved")
hdr = (f"{'size':>6} {'source':<12} {'daemon':<10} {'first_s':>8} {'all_in_s':>8} "
       f"{'MiB/s':>7} {'p50_us':>7} {'p99_us':>7} {'max_ms':>7} {'daemon_s':>8} {'cpu_s':>6}")
print(hdr)


def rates(rs):
    return " ".join(f"{x['rate']:.0f}" for x in rs)


keys = ("first", "all_in", "rate", "p50", "p99", "max", "daemon_s", "cpu")
for mib in sizes:
    try:
        alone = ", ".join(f"{page_server_alone(mib, w):.0f} MiB/s with {w} x 1 MiB in flight"
                          for w in (2, 8))
    except Exception as e:  # a figure missing, not a failure
        alone = f"failed: {e}"
    print(f"{mib:>6} page server alone (criu-drain, nothing restored): {alone}", flush=True)
    time.sleep(3)
    cold = fresh_touch(mib)
    warm = fresh_touch(mib)
    print(f"{mib:>6} fresh memory, first touch (memset): {cold:.0f} MiB/s cold, {warm:.0f} MiB/s "
          "warm (what every restored page costs before its bytes)", flush=True)
    floor = float(subprocess.run([reader, "--floor", str(mib)], capture_output=True, text=True,
                                 check=True).stdout)
    print(f"{mib:>6} the program alone: its reading loop over {mib} MiB just mapped takes "
          f"{floor:.2f} s ({mib / floor:.0f} MiB/s): the fill rate no daemon can pass here",
          flush=True)
    for remote, idle in ((False, False), (True, False), (False, True), (True, True)):
        where = ("page-server" if remote else "local") + ("/idle" if idle else "")
        runs = {"criu": [], "faultline": []}
        notes = {"criu": "", "faultline": ""}
        for _ in range(reps):
            for daemon in runs:
                try:
                    r = one(mib, remote, daemon, idle)
                except Exception as e:  # a figure missing, not a failure
                    notes[daemon] = f"  (a run failed: {e})"
                    continue
                if r["bad"] or r["status"] != 0:
                    notes[daemon] = f"  ({r['bad']} bad pages, daemon status {r['status']:#x})"
                if idle:  # the daemon's own rate: every page in, nobody reading
                    r["rate"] = mib / r["daemon_s"]
                runs[daemon].append(r)
        med = {}
        for daemon, rs in runs.items():
            if not rs:
                print(f"{mib:>6} {where:<12} {daemon:<10} failed{notes[daemon]}")
                continue
            m = med[daemon] = {k: statistics.median(x[k] for x in rs) for k in keys}
            print(f"{mib:>6} {where:<12} {daemon:<10} "
                  f"{m['first']:8.3f} {m['all_in']:8.3f} {m['rate']:7.0f} {m['p50']:7.1f} "
                  f"{m['p99']:7.1f} {m['max']:7.2f} {m['daemon_s']:8.3f} {m['cpu']:6.2f}"
                  f"{notes[daemon]}", flush=True)
        if len(med) != 2:
            continue
        c, f = med["criu"], med["faultline"]
        each = f"each run's rate: CRIU {rates(runs['criu'])}, faultline {rates(runs['faultline'])}"
        if idle:
            print(f"{mib:>6} {where:<12} faultline/CRIU: the daemon alone {f['rate'] / c['rate']:.2f}x "
                  f"(MiB/s until it had installed every page, the program idle), daemon CPU "
                  f"{f['cpu'] / c['cpu']:.2f}x; {each}", flush=True)
            continue
        print(f"{mib:>6} {where:<12} faultline/CRIU: fill rate {f['rate'] / c['rate']:.2f}x, "
              f"p99 {f['p99'] / max(c['p99'], 0.05):.2f}x, max {f['max'] / c['max']:.2f}x, "
              f"daemon CPU {f['cpu'] / c['cpu']:.2f}x; of the program's floor: CRIU "
              f"{c['rate'] * floor / mib:.0%}, faultline {f['rate'] * floor / mib:.0%}; {each}",
              flush=True)
