#!/usr/bin/env python3
"""What a thread's sleep costs the work that follows it: the floor's side.

`sqlite_limit.py`'s one-row WAL commit, without its fsync (synchronous=NORMAL), N times, first
back to back, then with the thread blocked for --pause-us microseconds (`usleep`) after each
commit, as a synced commit blocks it. Prints, per commit, the time outside the pause in both
cases: how much slower the same commit runs right after its thread slept.

`durable-bench --workloads long --durability fast --step-pause-us N` measures the same for a
Durable step (`work_ms_per_step`); Docs/benchmarks.md, "The full step against the floor", compares
the two. Standard library only:

    python3 Benchmarks/sleep_penalty.py [--n 5000] [--pause-us 60] [--dir /tmp]
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import sqlite3
import tempfile
import time


def run(path, n, pause_us, usleep):
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, wf TEXT, payload TEXT)")
    payload = "x" * 100
    paused = 0.0
    start = time.perf_counter()
    for k in range(n):
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t (id, wf, payload) VALUES (?, ?, ?)", (k, "wf", payload))
        con.execute("COMMIT")
        if pause_us:
            t = time.perf_counter()
            usleep(pause_us)
            paused += time.perf_counter() - t
    total = time.perf_counter() - start
    con.close()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    return total, paused


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--pause-us", type=int, default=60)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    if not 1 <= args.n <= 10_000_000 or not 1 <= args.pause_us <= 100_000:
        parser.error("--n must be 1 to 10000000 and --pause-us 1 to 100000")
    usleep = ctypes.CDLL(ctypes.util.find_library("c")).usleep
    path = os.path.join(args.dir, f"sleep_penalty_{os.getpid()}.sqlite")
    hot, _ = run(path, args.n, 0, usleep)
    total, paused = run(path, args.n, args.pause_us, usleep)
    print(json.dumps({
        "phase": "sleep_penalty", "commits": args.n, "pause_us": args.pause_us,
        "hot_ms_per_commit": round(hot / args.n * 1e3, 4),
        "pause_ms_per_commit": round(paused / args.n * 1e3, 4),
        "work_ms_per_commit_after_pause": round((total - paused) / args.n * 1e3, 4),
    }))


if __name__ == "__main__":
    main()
