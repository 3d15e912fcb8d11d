"""Reads the claims sample's journal (through the app's own CLI, --json) and its ledger, and prints
the demo's tables and the benchmark's figures. Python standard library only.

    report.py results  APP LEDGER          results per claim, and the ledger's exactly-once check
    report.py figures  APP [LABEL]         per-stage latency, warm vs cold, pool overhead, claims/s
    report.py check-recovery APP           attempts lost to the SIGKILL and run again

DURABLE_JOURNAL must name the journal. Exits 1 when a check fails, naming it.
"""
import json
import sqlite3
import subprocess
import sys
from datetime import datetime

MODEL_STAGES = ["OCRScan", "ClassifyDocument", "ScoreFraud"]


def cli(app, *args):
    done = subprocess.run([app, *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{app} {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def claim_runs(app):
    runs = cli(app, "runs", "list", "--limit", "10000")
    runs = runs["runs"] if isinstance(runs, dict) else runs
    return sorted((run for run in runs if run["workflowType"] == "ClaimIntake"), key=lambda run: run["workflowID"])


def history(app, run_id):
    events = cli(app, "history", run_id)
    return events["events"] if isinstance(events, dict) else events


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values, share):
    values = sorted(values)
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(share * (len(values) - 1))))
    return values[index]


def result_of(events):
    for event in events:
        if event["kind"] == "WorkflowCompleted":
            return event.get("data")
    return None


def results(app, ledger_path):
    runs = claim_runs(app)
    print(f"{'CLAIM':<14} {'STATUS':<10} {'OUTCOME':<14} {'CATEGORY':<9} {'FRAUD':>5}  {'REVIEW':<30} REASON")
    outcomes = {}
    for run in runs:
        decision = result_of(history(app, run["runID"])) or {}
        outcome = decision.get("outcome", "-")
        outcomes[decision.get("claimId", run["workflowID"])] = outcome
        review = (decision.get("reviewedBy") or "-") + (" (escalated)" if decision.get("escalated") else "")
        score = decision.get("fraudScore")
        print(f"{run['workflowID']:<14} {run['status']:<10} {outcome:<14} {decision.get('category', '-'):<9} "
              f"{score if score is None else format(score, '.2f'):>5}  {review:<30} {decision.get('reason', run.get('error') or '')[:90]}")
    counts = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print("outcomes: " + ", ".join(f"{n} {name}" for name, n in sorted(counts.items())))

    problems = []
    with sqlite3.connect(ledger_path) as db:
        payments = db.execute("SELECT claim_id, COUNT(*), GROUP_CONCAT(status) FROM payments GROUP BY claim_id").fetchall()
        calls = db.execute("SELECT claim_id, COUNT(*), SUM(paid) FROM payout_calls GROUP BY claim_id").fetchall()
        refunds = {row[0] for row in db.execute("SELECT claim_id FROM refunds")}
        reserves = dict(db.execute("SELECT claim_id, status FROM reserves").fetchall())
        escalations = db.execute("SELECT claim_id, level FROM escalations").fetchall()
    paid_claims = {claim: (count, statuses) for claim, count, statuses in payments}
    repeats = [(claim, n, paid) for claim, n, paid in calls if n > 1]
    print(f"\nledger: {len(paid_claims)} payment(s), {sum(n for _, n, _ in calls)} PayOut call(s), "
          f"{len(refunds)} refund(s), {len(escalations)} escalation(s)")
    for claim, n, paid in repeats:
        print(f"  PayOut ran {n} times for {claim} and paid {paid} time(s): the idempotency key stopped the repeat")
    for claim, (count, statuses) in sorted(paid_claims.items()):
        if count != 1:
            problems.append(f"{claim} has {count} payments")
    for claim, outcome in outcomes.items():
        status = paid_claims.get(claim, (0, ""))[1]
        if outcome == "paid" and status != "settled":
            problems.append(f"{claim} is paid but its payment is '{status or 'missing'}'")
        if outcome == "paymentFailed" and (claim not in refunds or reserves.get(claim) != "released"):
            problems.append(f"{claim}: payment failed but refund/release missing (reserve {reserves.get(claim)})")
        if outcome == "rejected" and claim in paid_claims:
            problems.append(f"{claim} was rejected but paid")
    if problems:
        sys.exit("LEDGER CHECK FAILED: " + "; ".join(problems))
    print("ledger check: one payment per paid claim, none for rejected ones; failed payments refunded and released")


def attempts(app, runs):
    """(stage, details, scheduled→completed ms, model ms) for every completed model attempt."""
    rows = []
    for run in runs:
        scheduled = {}
        for event in history(app, run["runID"]):
            if event["kind"] == "ActivityScheduled":
                scheduled[event["seq"]] = (event.get("name"), when(event["time"]))
            elif event["kind"] == "ActivityCompleted" and event["seq"] in scheduled:
                name, start = scheduled[event["seq"]]
                data = event.get("data") or {}
                rows.append((name, event.get("attemptDetails") or {}, (when(event["time"]) - start) * 1000,
                             data.get("modelMs") if isinstance(data, dict) else None))
    return rows


def figures(app, label):
    runs = [run for run in claim_runs(app) if run["status"] == "completed"]
    if not runs:
        sys.exit("no completed ClaimIntake runs in the journal")
    span = max(when(run["closedAt"]) for run in runs) - min(when(run["createdAt"]) for run in runs)
    e2e = [(when(run["closedAt"]) - when(run["createdAt"])) * 1000 for run in runs]
    rows = attempts(app, runs)
    print(f"[{label}] {len(runs)} claims in {span:.1f} s: {len(runs) / span:.2f} claims/s end to end; "
          f"per claim p50 {percentile(e2e, .5):.0f} ms, p95 {percentile(e2e, .95):.0f} ms, p99 {percentile(e2e, .99):.0f} ms")
    print(f"{'STAGE':<18} {'N':>3} {'WARM':>4} {'COLD':>4}  {'SCHED→DONE p50/p95/p99 ms':<27} {'RUN p50/p95/p99 ms':<22} "
          f"{'WARM-UP p50 ms':>14} {'MODEL p50 ms':>12} {'POOL OVERHEAD p50 ms':>20}")
    for stage in MODEL_STAGES + ["ReserveFunds", "PayOut", "ConfirmSettlement"]:
        mine = [row for row in rows if row[0] == stage]
        if not mine:
            continue
        warm = sum(1 for _, d, _, _ in mine if d.get("cold") is False)
        cold = sum(1 for _, d, _, _ in mine if d.get("cold") is True)
        total = [ms for _, _, ms, _ in mine]
        run_ms = [d["runMs"] for _, d, _, _ in mine if "runMs" in d]
        warmups = [d["warmUpMs"] for _, d, _, _ in mine if d.get("warmUpMs")]
        model = [m for _, _, _, m in mine if m is not None]
        overhead = [d["runMs"] - m for _, d, _, m in mine if m is not None and "runMs" in d]
        fmt = lambda values: "/".join(f"{percentile(values, q):.0f}" for q in (.5, .95, .99)) if values else "-"
        print(f"{stage:<18} {len(mine):>3} {warm:>4} {cold:>4}  {fmt(total):<27} {fmt(run_ms):<22} "
              f"{(format(percentile(warmups, .5), '.0f') if warmups else '-'):>14} "
              f"{(format(percentile(model, .5), '.1f') if model else '-'):>12} "
              f"{(format(percentile(overhead, .5), '.1f') if overhead else '-'):>20}")


def check_recovery(app):
    lost = []
    for run in claim_runs(app):
        for event in history(app, run["runID"]):
            failure = event.get("failure") or {}
            if event["kind"] == "ActivityAttemptFailed" and failure.get("type") == "WorkerLost":
                lost.append((run["workflowID"], event.get("seq"), event.get("attempt")))
    for workflow_id, seq, attempt in lost:
        print(f"  {workflow_id}: activity seq {seq} attempt {attempt} was lost with the killed worker (WorkerLost) and ran again")
    if not lost:
        sys.exit("RECOVERY CHECK FAILED: no attempt was in flight when the worker was killed")
    print(f"{len(lost)} attempt(s) lost to the SIGKILL, each run again as its next attempt")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    command, app = sys.argv[1], sys.argv[2]
    if command == "results" and len(sys.argv) == 4:
        results(app, sys.argv[3])
    elif command == "figures":
        figures(app, sys.argv[3] if len(sys.argv) > 3 else "run")
    elif command == "check-recovery":
        check_recovery(app)
    else:
        sys.exit(__doc__)
