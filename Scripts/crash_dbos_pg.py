#!/usr/bin/env python3
"""DBOS Transact's crash recovery on a PostgreSQL system database, for Scripts/bench.sh.

The same measurement as the shared peer script crash_dbos.py (which only takes a SQLite file) and as
Durable's `crash` workload: a workflow of --steps steps whose process kills itself with SIGKILL right
after step --kill-after returned, then a second process on the same system database recovers it.
Reported (one JSON line): seconds from spawning the second process until it has the result, and how
many steps ran again. Run with the DBOS peer venv's python:

    ~/.cache/dbos-peer-venv/bin/python Scripts/crash_dbos_pg.py --system-db-url postgresql://USER@HOST:PORT/postgres

A fresh database is created on that server for the run (the user must be allowed to) and dropped after.
"""
import time

T_START = time.time()  # before the imports: the recovery time includes them, as a restart does

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

WORKFLOW_ID = "crash-pg-workflow"


def with_database(url, name):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def child(args):
    from dbos import DBOS, SetWorkflowID

    side = os.open(args.side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()
    first = args.phase == "first"

    @DBOS.step()
    def step(i):
        os.write(side, f"{i} {pid}\n".encode())  # one write(2): survives the SIGKILL
        return {"i": i, "payload": "x" * 100}

    @DBOS.workflow()
    def long_workflow(n, kill_after):
        total = 0
        for i in range(1, n + 1):
            total += step(i)["i"]
            if first and i == kill_after:
                os.kill(pid, signal.SIGKILL)
        return total

    DBOS(config={"name": "dbos-crash-pg", "system_database_url": args.db_url, "log_level": "WARNING"})
    DBOS.launch()
    if first:
        with SetWorkflowID(WORKFLOW_ID):
            long_workflow(args.steps, args.kill_after)
        sys.exit(3)  # not killed: reported by the parent
    result = DBOS.retrieve_workflow(WORKFLOW_ID).get_result(polling_interval_sec=0.01)
    done = time.time()
    DBOS.destroy()
    print(json.dumps({"result": result, "result_at": done, "started_at": T_START}), flush=True)


def parent(args):
    import psycopg

    name = f"dbos_crash_{os.getpid()}"
    admin = args.system_db_url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    db_url = with_database(admin, name)
    side = f"/tmp/{name}.steps"
    if os.path.exists(side):
        os.unlink(side)
    common = [sys.executable, os.path.abspath(__file__), "--db-url", db_url, "--side", side,
              "--steps", str(args.steps), "--kill-after", str(args.kill_after)]
    try:
        a = subprocess.run(common + ["--phase", "first"], stdout=subprocess.PIPE, text=True)
        spawned = time.time()
        b = subprocess.run(common + ["--phase", "recover"], stdout=subprocess.PIPE, text=True)
        try:
            report = json.loads(b.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            report = {}
        with open(side) as f:
            lines = [line.split() for line in f if line.strip()]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if os.path.exists(side):
            os.unlink(side)
    pid_a = lines[0][1] if lines else None
    in_a = {int(s) for s, p in lines if p == pid_a}
    in_b = {int(s) for s, p in lines if p != pid_a}
    counts = Counter(int(s) for s, _ in lines)
    n = args.steps
    out = {
        "phase": "crash_recovery", "engine": "dbos", "variant": "postgres", "run_id": args.run_id,
        "steps": n, "kill_after": args.kill_after,
        "process_a_killed_by_sigkill": a.returncode == -signal.SIGKILL,
        "exec_in_a": len(in_a), "exec_in_b": len(in_b),
        "completed_steps_reexecuted": len(in_a & in_b),
        "missing_steps": sum(1 for i in range(1, n + 1) if counts.get(i, 0) == 0),
        "result_ok": report.get("result") == n * (n + 1) // 2,
        "b_spawn_to_result_s": round(report["result_at"] - spawned, 4) if "result_at" in report else None,
    }
    out["pass"] = bool(out["process_a_killed_by_sigkill"] and out["result_ok"] and out["missing_steps"] == 0
                       and out["completed_steps_reexecuted"] == 0)
    print(json.dumps(out), flush=True)
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--system-db-url", help="a PostgreSQL URL whose user may create databases")
    ap.add_argument("--phase", choices=["first", "recover"])
    ap.add_argument("--db-url")
    ap.add_argument("--side")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--kill-after", type=int, default=500)
    ap.add_argument("--run-id", default="r1")
    args = ap.parse_args()
    if args.phase:
        child(args)
    elif args.system_db_url:
        sys.exit(parent(args))
    else:
        ap.error("--system-db-url is required")
