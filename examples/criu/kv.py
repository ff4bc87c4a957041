#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small key-value store with forked workers, to checkpoint with CRIU and
restore lazily. The parent and each worker hold a shard of 4 KiB values;
the parent asks its workers over pipes. Once DIR/go exists (after the
restore), every process checks every value it holds, the parent reads
keys through the workers, updates some, and checks again. The verdict goes
to DIR/kv.log ("kv: verified ..." or "kv: BAD ...").

  kv.py DIR MIB"""
import hashlib
import os
import sys
import time

WORKERS = 2
d, mib = sys.argv[1], int(sys.argv[2])
keys_per_shard = mib * 256 // (WORKERS + 1)


def value(shard, k, gen):
    """4 KiB that only this key and generation have."""
    return hashlib.sha256(f"{shard}:{k}:{gen}".encode()).digest() * 128


def log(line):
    with open(os.path.join(d, "kv.log"), "a") as f:
        f.write(line + "\n")


def check(shard, store, gens):
    bad = [k for k, v in store.items() if v != value(shard, k, gens.get(k, 0))]
    return bad


def worker(shard, rd, wr):
    store = {k: value(shard, k, 0) for k in range(keys_per_shard)}
    gens = {}
    rf, wf = os.fdopen(rd, "r"), os.fdopen(wr, "w")
    for line in rf:
        op = line.split()
        if op[0] == "get":
            wf.write(hashlib.sha256(store[int(op[1])]).hexdigest() + "\n")
        elif op[0] == "set":
            k, g = int(op[1]), int(op[2])
            store[k], gens[k] = value(shard, k, g), g
            wf.write("ok\n")
        elif op[0] == "verify":
            bad = check(shard, store, gens)
            wf.write(f"bad {bad[:5]}\n" if bad else f"ok {len(store)}\n")
        elif op[0] == "quit":
            os._exit(0)
        wf.flush()
    os._exit(1)


def main():
    pipes = []
    for shard in range(1, WORKERS + 1):
        a, b = os.pipe()
        c, e = os.pipe()
        if os.fork() == 0:
            os.close(b)
            os.close(c)
            worker(shard, a, e)
        os.close(a)
        os.close(e)
        pipes.append((os.fdopen(b, "w"), os.fdopen(c, "r")))
    store = {k: value(0, k, 0) for k in range(keys_per_shard)}

    def ask(i, line):
        pipes[i][0].write(line + "\n")
        pipes[i][0].flush()
        return pipes[i][1].readline().strip()

    for i in range(WORKERS):  # every worker has built its shard
        assert ask(i, "verify").startswith("ok")
    open(os.path.join(d, "ready"), "w").close()
    while not os.path.exists(os.path.join(d, "go")):
        time.sleep(0.005)
    t0 = time.time()
    problems = []
    bad = check(0, store, {})
    if bad:
        problems.append(f"parent shard: keys {bad[:5]}")
    for i in range(WORKERS):
        for k in range(0, keys_per_shard, 97):
            want = hashlib.sha256(value(i + 1, k, 0)).hexdigest()
            if ask(i, f"get {k}") != want:
                problems.append(f"worker {i + 1} key {k}")
        for k in range(0, keys_per_shard, 31):
            ask(i, f"set {k} 1")
        r = ask(i, "verify")
        if not r.startswith("ok"):
            problems.append(f"worker {i + 1}: {r}")
    for i in range(WORKERS):
        pipes[i][0].write("quit\n")
        pipes[i][0].flush()
    for _ in range(WORKERS):
        os.wait()
    n = keys_per_shard * (WORKERS + 1)
    if problems:
        log(f"kv: BAD after restore: {problems[:5]}")
        sys.exit(1)
    log(f"kv: verified {n} keys ({n * 4 // 1024} MiB) in {WORKERS + 1} processes "
        f"after the restore, in {time.time() - t0:.2f} s")


main()
