#!/usr/bin/env python3
"""Summarize a results folder written by Scripts/bench.sh (stdlib only).

    python3 Scripts/bench_summary.py RESULTS_DIR          # Markdown on stdout

Reads the JSON lines in RESULTS_DIR:
  durable.jsonl          durable-bench (phases long, seq, conc, crash_recovery, journal_bytes)
  dbos_default.jsonl     bench_dbos.py with DBOS's own SQLite settings
  dbos_wal_normal.jsonl  bench_dbos.py --pragma journal_mode=WAL --pragma synchronous=NORMAL
  dbos_crash.jsonl       crash_dbos.py (kill mode "between")
  sqlite_limit.jsonl     sqlite_limit.py (the disk's limits)
  durable_http.jsonl     optional: durable-bench --workloads http (the HTTP API under wrk)
  durable_replay.jsonl   optional: durable-bench --workloads replay (replay cost against history length)
  sync_probe_*.strace    optional: `strace -c` of durable-bench long, to check that the
                         durability mode really syncs
and prints medians over rounds, Durable full against DBOS default and Durable fast against DBOS
WAL+NORMAL, with ratios and the targets.
"""
import glob
import json
import os
import re
import statistics
import sys

# (workload, metric key in Durable lines, DBOS phase, DBOS metric, unit, higher_is_better, target at full)
COMPARISONS = [
    ("long: 1 workflow × 1000 steps", "long", "per_step_ms", "long", "per_step_ms",
     "ms per step", False, 15),
    ("seq: 200 workflows × 10 steps, one after another", "seq", "workflows_per_s", "seq", "workflows_per_s",
     "workflows/s", True, 15),
    ("conc: 500 workflows × 5 steps started at once (starts one after another, as DBOS's loop)", "conc",
     "total_s", "conc_start", "total_s", "s until all done", False, 50),
    ("conc_group: the same, started from a task group (DBOS: the same loop)", "conc_group",
     "total_s", "conc_start", "total_s", "s until all done", False, 50),
    ("crash: 1000 steps, SIGKILL after step 500, recover", "crash_recovery", "b_spawn_to_result_s",
     "crash_recovery", "b_spawn_to_result_s", "s from spawning the recovery process to its result", False, 10),
]

DETAILS = {
    "long": ["per_step_ms", "cpu_ms_per_step", "total_s", "commits_per_step"],
    "seq": ["workflows_per_s", "steps_per_s", "lat_p50_ms", "lat_p99_ms", "cpu_ms_per_step", "commits_per_step"],
    "conc": ["total_s", "start_all_s", "cpu_ms_per_step", "activations_per_commit"],
    "conc_group": ["total_s", "start_all_s", "cpu_ms_per_step", "activations_per_commit"],
    "conc_start": ["total_s", "start_all_s"],
    "conc_queue": ["total_s", "enqueue_all_s"],
    "crash_recovery": ["b_spawn_to_result_s", "b_process_start_s", "b_imported_dbos_s", "b_engine_opened_s",
                       "b_launch_done_s", "b_recover_returned_s", "b_first_step_exec_s",
                       "b_remaining_steps_per_s", "exec_in_b", "completed_steps_reexecuted"],
}


def load(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def values(records, phase, metric, **match):
    vals = []
    for r in records:
        if r.get("phase") != phase or "error" in r:
            continue
        if any(r.get(k) != v for k, v in match.items()):
            continue
        v = r.get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals.append(float(v))
    return vals


def med(vals):
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif abs(v) >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3g}"
    return s + unit


def spread(vals):
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(med(vals))} [{fmt(min(vals))} – {fmt(max(vals))}]"


def ratio_text(durable, peer, higher_is_better):
    if durable is None or peer is None or durable == 0 or peer == 0:
        return None, "n/a"
    r = durable / peer if higher_is_better else peer / durable
    word = "more" if higher_is_better else "faster"
    if r >= 1:
        return r, f"{r:,.1f}× {word}" if r < 100 else f"{r:,.0f}× {word}"
    return r, f"{1 / r:.1f}× {'fewer' if higher_is_better else 'slower'}"


def strace_syncs(path):
    """Calls of fsync + fdatasync in an `strace -c` table."""
    calls = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m:
                calls[m.group(2)] = int(m.group(1))
    return calls.get("fsync", 0) + calls.get("fdatasync", 0), calls


def full_sync_ratio(d):
    """fsync + fdatasync calls per commit in the `full` sync probe, or None."""
    p = os.path.join(d, "sync_probe_full.strace")
    if not os.path.exists(p):
        return None
    n, _ = strace_syncs(p)
    for r in load(os.path.join(d, "sync_probe_full.jsonl")):
        if r.get("phase") == "long":
            commits = r.get("commits", r.get("steps"))
            return n / commits if commits else None
    return None


def main():
    d = sys.argv[1]
    durable = load(os.path.join(d, "durable.jsonl"))
    if not durable:  # SQLITE=0: the PostgreSQL phase only
        return
    dbos = load(os.path.join(d, "dbos_default.jsonl"))
    wal = load(os.path.join(d, "dbos_wal_normal.jsonl"))
    crash = load(os.path.join(d, "dbos_crash.jsonl"))
    limit = load(os.path.join(d, "sqlite_limit.jsonl"))
    dbos_all = dbos + crash  # DBOS default: the bench phases plus crash_recovery

    rounds = len({r.get("run_id") for r in durable if r.get("phase") == "env"}) or 1
    print(f"# Durable vs DBOS 3.x (SQLite) — {os.path.basename(os.path.normpath(d))}\n")
    print(f"Medians over {rounds} round(s); each round runs Durable (full, fast), DBOS default, "
          "DBOS WAL+NORMAL, the DBOS crash test and the disk probe, interleaved.\n")

    for mode, peer, peer_name, use_targets in (
            ("full", dbos_all, "DBOS default (rollback journal, synchronous=FULL)", True),
            ("fast", wal + crash, "DBOS with WAL + synchronous=NORMAL", False)):
        print(f"## Durable `{mode}` vs {peer_name}\n")
        hdr = "| workload | metric | Durable | DBOS | ratio |"
        sep = "|---|---|---|---|---|"
        if use_targets:
            hdr += " target | met? |"
            sep += "---|---|"
        print(hdr)
        print(sep)
        for title, dphase, dmetric, pphase, pmetric, unit, hib, target in COMPARISONS:
            dv = med(values(durable, dphase, dmetric, durability=mode))
            src = peer
            note = ""
            if pphase == "crash_recovery":
                src = crash
                if mode == "fast":
                    note = " (DBOS default: crash_dbos.py has no pragma option)"
            pv = med(values(src, pphase, pmetric))
            r, rtext = ratio_text(dv, pv, hib)
            row = f"| {title} | {unit}{note} | {fmt(dv)} | {fmt(pv)} | {rtext} |"
            if use_targets:
                met = "n/a" if r is None else ("yes" if r >= target else "**no**")
                row += f" ≥{target}× | {met} |"
            print(row)
        print()
        if mode == "full":
            syncs = {r.get("writer_durability") for r in durable
                     if r.get("durability") == "full" and "writer_durability" in r}
            if syncs and syncs != {"full"}:
                print(f"> **Warning:** Durable `full` ran with its journal's writer committing at "
                      f"{sorted(syncs, key=str)} durability, as read back from the storage (full expected).\n")
            per = full_sync_ratio(d)
            if per is not None and per < 0.9:
                print(f"> **Warning:** the sync probe below counted {per:.3f} fsync/fdatasync calls per commit "
                      "for `full`: commits were not synced, so these `full` figures are not at full "
                      "durability and do not compare like with like against DBOS's synchronous=FULL.\n")

    print("## Details (median [min – max] over rounds)\n")
    print("| case | metric | value |")
    print("|---|---|---|")
    for mode in ("full", "fast"):
        for phase in ("long", "seq", "conc", "conc_group", "crash_recovery"):
            for m in DETAILS[phase]:
                vals = values(durable, phase, m, durability=mode)
                if vals:
                    print(f"| Durable {mode} {phase} | {m} | {spread(vals)} |")
    for name, recs in (("DBOS default", dbos_all), ("DBOS WAL+NORMAL", wal)):
        for phase in ("long", "seq", "conc_start", "conc_queue", "crash_recovery"):
            for m in DETAILS[phase]:
                vals = values(recs, phase, m)
                if vals:
                    print(f"| {name} {phase} | {m} | {spread(vals)} |")
    print()

    print("## Crash test correctness\n")
    print("| engine | pass per round | steps re-run in the recovery process | completed steps re-run | result ok |")
    print("|---|---|---|---|---|")
    for name, recs in (("Durable full", [r for r in durable if r.get("durability") == "full"]),
                       ("Durable fast", [r for r in durable if r.get("durability") == "fast"]),
                       ("DBOS default", crash)):
        cr = [r for r in recs if r.get("phase") == "crash_recovery"]
        if not cr:
            continue
        print(f"| {name} | {[r.get('pass') for r in cr]} | {[r.get('exec_in_b') for r in cr]} | "
              f"{[r.get('completed_steps_reexecuted') for r in cr]} | {[r.get('result_ok') for r in cr]} |")
    print()

    jb = [r for r in durable if r.get("phase") == "journal_bytes"]
    if jb:
        print("## Durable journal bytes per event (after a checkpoint)\n")
        print("| workload | durability | events | file B/event | stored payload B/event | "
              "plain JSON B/event | file / JSON |")
        print("|---|---|---|---|---|---|---|")
        for w in ("long", "seq"):
            for mode in ("full", "fast"):
                sel = [r for r in jb if r.get("workload") == w and r.get("durability") == mode]
                if not sel:
                    continue

                def m(k):
                    return med([float(r[k]) for r in sel if isinstance(r.get(k), (int, float))])
                print(f"| {w} | {mode} | {fmt(m('events'))} | {fmt(m('file_bytes_per_event'))} | "
                      f"{fmt(m('stored_payload_bytes_per_event'))} | {fmt(m('plain_json_bytes_per_event'))} | "
                      f"{fmt(m('file_to_json_ratio'))} |")
        print()

    pools = load(os.path.join(d, "durable_pools.jsonl"))
    if pools:
        print("## Durable worker runtime (durable-bench --workloads pools; no DBOS counterpart)\n")
        print("| measure | median [min – max] |")
        print("|---|---|")
        rows = [
            ("pool_warm_cold", "warm_total_s", "warm pool: 200 model calls, s"),
            ("pool_warm_cold", "warm_floor_s", "floor (the calls' own time, no engine), s"),
            ("pool_warm_cold", "cold_total_s", "cold start per call: the same calls, s"),
            ("pool_warm_cold", "cold_to_warm_ratio", "cold / warm"),
            ("pool_warm_cold", "warm_pool_warm_up_s", "warming the pool at worker start, s"),
            ("pool_overhead", "acquire_release_us", "pool acquire + release, µs"),
            ("pool_overhead", "pooled_us_per_step", "no-op step, pooled (fast durability), µs"),
            ("pool_overhead", "unpooled_us_per_step", "no-op step, unpooled (fast durability), µs"),
            ("pool_overhead", "pool_cost_us_per_step", "difference per step, µs"),
            ("process_warm_cold", "warm_total_s", "Python process pool: 200 model calls through 4 warm processes, s"),
            ("process_warm_cold", "cold_total_s", "the same calls, a new process per call, s"),
            ("process_warm_cold", "cold_to_warm_ratio", "process per call / warm processes"),
            ("process_pool", "round_trip_p50_us", "process-pool round trip to Python, p50 µs"),
            ("process_pool", "round_trip_mean_us", "process-pool round trip, mean µs"),
            ("process_pool", "round_trip_p99_us", "process-pool round trip, p99 µs"),
            ("process_pool", "process_pool_us_per_step", "step via the Python worker (fast durability), µs"),
            ("process_pool", "in_process_us_per_step", "in-process no-op step (same run), µs"),
        ]
        for phase, metric, label in rows:
            vals = values(pools, phase, metric)
            if vals:
                print(f"| {label} | {spread(vals)} |")
        print()

    latency = load(os.path.join(d, "durable_latency.jsonl"))
    if latency:
        print("## Pick-up latency across processes (durable-bench --workloads submit_latency)\n")
        print("Submission committed in one process → first activity started by an idle worker in another.\n")
        print("| durability | p50 ms | p90 ms | p99 ms | max ms | target |")
        print("|---|---|---|---|---|---|")
        for mode in ("full", "fast"):
            cells = [spread(values(latency, "submit_latency", k, durability=mode)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
            if any(c != "n/a" for c in cells):
                print(f"| {mode} | " + " | ".join(cells) + " | p50 < 50 ms |")
        print()

    if limit:
        print("## Disk probe (sqlite_limit.py)\n")
        print("| case | median |")
        print("|---|---|")
        for call in ("fsync", "fdatasync"):
            v = values(limit, "raw_sync", "p50_ms", call=call)
            if v:
                print(f"| write(100 B) + {call}, p50 | {fmt(med(v))} ms |")
        for jm, sync in (("wal", "FULL"), ("wal", "NORMAL"), ("delete", "FULL")):
            v = values(limit, "sqlite", "commits_per_s", journal_mode=jm, synchronous_name=sync, rows_per_txn=1)
            if v:
                print(f"| SQLite {jm.upper()} + {sync}, 1-row commits/s | {fmt(med(v))} |")
        print()

    probes = sorted(glob.glob(os.path.join(d, "sync_probe_*.strace")))
    if probes:
        print("## Sync probe: fsync/fdatasync calls while Durable runs `long`\n")
        print("One commit per step; with `full` durability every commit should sync the WAL "
              "(about 1 sync per commit), with `fast` only WAL checkpoints sync.\n")
        print("| durability | steps | commits | fsync + fdatasync calls | per commit | verdict |")
        print("|---|---|---|---|---|---|")
        for p in probes:
            mode = os.path.basename(p)[len("sync_probe_"):-len(".strace")]
            n, _ = strace_syncs(p)
            steps = commits = None
            side = p[:-len(".strace")] + ".jsonl"
            for r in load(side):
                if r.get("phase") == "long":
                    steps = r.get("steps")
                    commits = r.get("commits", steps)
            per = (n / commits) if commits else None
            verdict = ""
            if per is not None and mode == "full":
                verdict = ("syncs every commit" if per >= 0.9 else
                           "**does not sync every commit: `full` behaves like `fast`**")
            print(f"| {mode} | {steps} | {commits} | {n} | {fmt(per)} | {verdict} |")
        print()


def postgres_section(d):
    """Durable on PostgreSQL against DBOS on the same server, and the server's one-client floor."""
    durable = load(os.path.join(d, "durable_pg.jsonl"))
    if not durable:
        return
    dbos = load(os.path.join(d, "dbos_pg.jsonl"))
    floor = values(load(os.path.join(d, "pgbench.jsonl")), "pgbench", "ms_per_commit")
    print("## PostgreSQL: Durable and DBOS on one server, same run\n")
    f = med(floor)
    print(f"Full durability (`synchronous_commit=on`). The server's floor, pgbench with one client "
          f"inserting one row per transaction: {fmt(f)} ms per commit (median of {len(floor)}).\n")
    print("| workload | Durable-PG | DBOS-PG | Durable vs DBOS | target |")
    print("|---|---|---|---|---|")
    rows = [
        ("long: ms per step", "long", "per_step_ms", "long", "per_step_ms", False, "≤ 0.5 ms, ≤ 1.5× floor, ≥ 14× DBOS"),
        ("seq: workflows/s", "seq", "workflows_per_s", "seq", "workflows_per_s", True, ""),
        ("conc: s until 500 × 5 done", "conc", "total_s", "conc_start", "total_s", False, ""),
        ("conc_group: s until 500 × 5 done", "conc_group", "total_s", "conc_start", "total_s", False, "≥ 30× DBOS"),
        ("crash: s from recovery spawn to result", "crash_recovery", "b_spawn_to_result_s", "crash_recovery",
         "b_spawn_to_result_s", False, "≥ 10× DBOS"),
    ]
    for label, phase, metric, dphase, dmetric, higher, target in rows:
        dv = med(values(durable, phase, metric, durability="full"))
        pv = med(values(dbos, dphase, dmetric)) if dphase else None
        print(f"| {label} | {fmt(dv)} | {fmt(pv)} | {ratio_text(dv, pv, higher)[1] if pv else 'n/a'} | {target} |")
    long_ms = med(values(durable, "long", "per_step_ms", durability="full"))
    if long_ms and f:
        print(f"\n`long` per step is {long_ms / f:.2f}× the one-client commit floor.")
    scaling = [r for r in durable if r.get("phase") == "workers"]
    if scaling:
        print("\n| worker processes | steps/s (400 runs × 5 steps, submitted at once) |")
        print("|---|---|")
        for count in sorted({r.get("workers") for r in scaling}):
            print(f"| {count} | {fmt(med([r['steps_per_s'] for r in scaling if r.get('workers') == count]))} |")
    print()


def http_section(d):
    """The HTTP API under wrk: bare Hummingbird against the submit route, the sync 3-step, the floors."""
    http = load(os.path.join(d, "durable_http.jsonl"))
    if not http:
        return
    points = [r for r in http if r.get("phase") == "http" and "error" not in r]
    failed = [r for r in http if "error" in r]
    rounds = len({r.get("run_id") for r in http if r.get("phase") == "env"}) or 1
    print(f"## HTTP API (durable-bench --workloads http, wrk on loopback; medians over {rounds} round(s))\n")
    print("Async submits: `POST /v1/workflows/ThreeSteps/runs` (202 once the run is recorded and its audit "
          "entry synced), the worker idle; bare: a Hummingbird `POST /bare` route that reads the body and "
          "answers a small JSON 202, in the same process. Rates count expected responses only.\n")

    def m(target, clients, key):
        return med(values(points, "http", key, target=target, clients=clients))

    def errors(target, clients):
        return sum(int(r.get("errors", 0)) for r in points if r.get("target") == target and r.get("clients") == clients)

    def checks(target, clients):
        rs = [r for r in points if r.get("target") == target and r.get("clients") == clients and "check_passed" in r]
        bad = sum(1 for r in rs if r.get("check_passed") is not True)
        return "n/a" if not rs else ("ok" if bad == 0 else f"**{bad} FAILED**")

    clients_all = sorted({r.get("clients") for r in points if r.get("target") == "submit"})
    print("| clients | bare req/s | bare p99 ms | submit req/s | p50 ms | p99 ms | submit/bare req/s | p99 ratio "
          "| server CPU ms/req | errors | runs check | ≥ 5,000/s, p99 ≤ 20 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in clients_all:
        br, bp, sr = m("bare", c, "ok_per_s"), m("bare", c, "p99_ms"), m("submit", c, "ok_per_s")
        p50, p99, cpu = m("submit", c, "p50_ms"), m("submit", c, "p99_ms"), m("submit", c, "server_cpu_ms_per_req")
        e = errors("bare", c) + errors("submit", c)
        met = sr is not None and p99 is not None and sr >= 5000 and p99 <= 20 and e == 0
        print(f"| {c} | {fmt(br)} | {fmt(bp)} | {fmt(sr)} | {fmt(p50)} | {fmt(p99)} | "
              f"{fmt(sr / br) if sr and br else 'n/a'} | {fmt(p99 / bp) + '×' if p99 and bp else 'n/a'} | {fmt(cpu)} | "
              f"{e if e == 0 else f'**{e}**'} | {checks('submit', c)} | {'met' if met else 'not met'} |")
    print()
    for target, label in (("submit_worker", "Async submits with the worker running in the same process (it competes "
                                            "for the two cores)"),
                          ("sync3", "Sync submit + complete of the 3-step workflow (`?wait=10s`, 200 with the "
                                    "result), worker running")):
        cs = sorted({r.get("clients") for r in points if r.get("target") == target})
        if not cs:
            continue
        print(f"{label}:\n")
        print("| clients | req/s | p50 ms | p99 ms | max ms | server CPU ms/req | errors | runs check |")
        print("|---|---|---|---|---|---|---|---|")
        for c in cs:
            e = errors(target, c)
            print(f"| {c} | {spread(values(points, 'http', 'ok_per_s', target=target, clients=c))} | "
                  f"{fmt(m(target, c, 'p50_ms'))} | {fmt(m(target, c, 'p99_ms'))} | {fmt(m(target, c, 'max_ms'))} | "
                  f"{fmt(m(target, c, 'server_cpu_ms_per_req'))} | {e if e == 0 else f'**{e}**'} | {checks(target, c)} |")
        print()
    print("Floors in the same runs (in-process, no HTTP):\n")
    print("| probe | per second |")
    print("|---|---|")
    for kind, tasks, label in (("audit_append", 1, "synced audit appends, one at a time"),
                               ("audit_append", 16, "synced audit appends from 16 tasks"),
                               ("client_submit", 1, "`DurableClient.submit`, one at a time"),
                               ("client_submit", 64, "`DurableClient.submit` from 64 tasks")):
        v = values(http, "http_probe", "per_s", kind=kind, tasks=tasks)
        if v:
            print(f"| {label} | {spread(v)} |")
    limit = load(os.path.join(d, "sqlite_limit.jsonl"))
    floor = med(values(limit, "sqlite", "commits_per_s", journal_mode="wal", synchronous_name="FULL", rows_per_txn=1))
    if floor:
        print(f"| sqlite_limit.py: SQLite WAL + FULL 1-row commits | {fmt(floor)} |")
        best = max((m("submit", c, "ok_per_s") or 0 for c in clients_all), default=0)
        if best:
            print(f"\nBest async submit rate: {fmt(best)}/s, {best / floor:.2f}× the disk's synced single-row "
                  "commits/s (group commit lets one fsync carry many runs and audit entries).")
    if failed:
        print(f"\n**{len(failed)} HTTP workload run(s) failed**: " + "; ".join(str(r.get("error"))[:200] for r in failed))
    print()


def replay_section(d):
    """durable_replay.jsonl: replay cost against history length."""
    replay = load(os.path.join(d, "durable_replay.jsonl"))
    if replay:
        print("## Replay cost against history length (durable-bench --workloads replay)\n")
        print("One `Steps` run per size, made by a worker in another process, then replayed here (best of 3). "
              "Flat per-event figures mean linear cost.\n")
        print("| steps | events | replay ms | µs/event | peak memory MB | peak B/event |")
        print("|---|---|---|---|---|---|")
        for r in sorted((r for r in replay if r.get("phase") == "replay" and "error" not in r), key=lambda r: r.get("steps", 0)):
            print(f"| {r.get('steps')} | {r.get('events')} | {fmt(r.get('replay_ms'))} | {fmt(r.get('replay_us_per_event'))} | "
                  f"{fmt(r.get('peak_rss_growth_mb'))} | {fmt(r.get('peak_bytes_per_event'))} |")
        print()


if __name__ == "__main__":
    main()
    replay_section(sys.argv[1])
    http_section(sys.argv[1])
    postgres_section(sys.argv[1])
