#!/usr/bin/env bash
# The Durable demo: an insurer's claims intake with real models in warm process pools
# (Samples/ClaimsIntake, Docs/claims-sample.md).
#
#   bash Scripts/demo.sh          (from the repository root)
#
# What it does:
#   1. sets up what the models need, once (Debian's tesseract-ocr, a Python venv with onnxruntime,
#      MiniLM int8, scikit-learn and Pillow from PyPI, the fraud model trained with a fixed seed:
#      a few minutes the first time, a second after that) and builds claims-intake and durable;
#   2. generates a batch of claims with noisy scanned claim forms, starts a worker (its pools load
#      Tesseract, MiniLM and the fraud model before work arrives) and submits the batch, two of the
#      claims through the HTTP API's POST /v1/events;
#   3. kills the worker with SIGKILL mid-batch, just after it paid a claim and before the journal
#      knew; starts a new worker, which recovers the runs and does not pay that claim again;
#   4. answers the human reviews from the command line (one refused, one left to escalate and then
#      answered by a senior reviewer; one comes in as a claim.reviewed event over HTTP);
#   5. shows the results and checks the ledger (one payment per paid claim, none for refused ones,
#      the failed payment refunded), the timeline of one claim, the lineage of one decision, and
#      warm-vs-cold figures (a short second batch with a new process and model load per call).
# Exits non-zero if a step or a check fails. After the first setup and build: about 2 minutes.
# CLAIMS_DEMO_COUNT (default 24) and CLAIMS_DEMO_REVIEW_SECONDS (default 30) change the batch.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

source Scripts/demo-helpers.sh

COUNT="${CLAIMS_DEMO_COUNT:-24}"
REVIEW_SECONDS="${CLAIMS_DEMO_REVIEW_SECONDS:-30}"
[[ "$COUNT" =~ ^[0-9]+$ ]] && [ "$COUNT" -ge 16 ] && [ "$COUNT" -le 500 ] \
  || fail "CLAIMS_DEMO_COUNT=$COUNT must be 16 to 500 (fewer claims hold too few reviews to show)"
[[ "$REVIEW_SECONDS" =~ ^[0-9]+$ ]] && [ "$REVIEW_SECONDS" -ge 10 ] && [ "$REVIEW_SECONDS" -le 3600 ] \
  || fail "CLAIMS_DEMO_REVIEW_SECONDS=$REVIEW_SECONDS must be 10 to 3600 seconds"

# ---------------------------------------------------------------------------------------------
section "1. Set up the models (once) and build"

bash Scripts/install-deps.sh
setup_output="$(bash Scripts/claims-setup.sh)"
echo "$setup_output"
PYTHON="$(sed -n 's/^python: //p' <<<"$setup_output")"
swift build --product claims-intake
swift build --product durable
BIN="$(swift build --show-bin-path)"
APP="$BIN/claims-intake"
DURABLE="$BIN/durable"
[ -x "$APP" ] && [ -x "$DURABLE" ] || fail "built binaries not found in $BIN"
REPORT=(/usr/bin/python3 "$ROOT/Samples/ClaimsIntake/python/report.py")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/durable-claims.XXXXXX")"
export DURABLE_JOURNAL="$WORK/journal.sqlite"
export CLAIMS_LEDGER="$WORK/ledger.sqlite"
echo "work folder: $WORK  (journal, ledger, scans, worker logs; kept for you to inspect)"

WORKER_PID=""
SERVER_PID=""
cleanup() {
  for pid in "$WORKER_PID" "$SERVER_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_worker LOG [VAR=VALUE ...]: starts `claims-intake worker` and waits until its pools are warm.
start_worker() {
  local log="$1"; shift
  step "$* claims-intake worker > $(basename "$log") 2>&1 &"
  env "$@" "$APP" worker >"$log" 2>&1 &
  WORKER_PID=$!
  wait_for_line "$log" '^pools warm' "$WORKER_PID" 180 "the pools were not warm within 180 s"
  if grep -q '^pools warm.*warm-up failed' "$log"; then print_log "$log" worker; fail "a model pool did not warm up (above)"; fi
  grep -E '^(worker pid|pools warm|recovered)' "$log" | sed 's/^/  /'
}

# The stage a claim's run reports (the workflow's `stage` query, answered from its history).
stage() { "$APP" query "$1" stage --json 2>/dev/null | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["result"])' || echo "?"; }

# ---------------------------------------------------------------------------------------------
section "2. A batch of $COUNT claims with scanned forms; a worker with warm pools"

show "$PYTHON" Samples/ClaimsIntake/python/make_claims.py "$WORK" "$COUNT" "$REVIEW_SECONDS"
echo "# one of the scans (noise, a slight rotation, stray lines): $WORK/scans/C-1001.png; its claim:"
cat "$WORK/claims/C-1001.json"; echo

# The first worker pauses 1.5 s after each payment before its result reaches the journal: the
# window the SIGKILL below aims at (CLAIMS_DEMO_PAUSE_AFTER_PAYMENT_MS, a demo knob).
start_worker "$WORK/worker-1.log" CLAIMS_DEMO_PAUSE_AFTER_PAYMENT_MS=1500

claims=()
for file in "$WORK"/claims/C-*.json; do claims+=("$(basename "$file" .json)"); done
http_claims=("$WORK/claims/${claims[-2]}" "$WORK/claims/${claims[-1]}")
for claim in "${claims[@]:0:${#claims[@]}-2}"; do
  if [ "$claim" = "${claims[0]}" ]; then
    show "$APP" submit ClaimIntake --id "claim-$claim" --input "@$WORK/claims/$claim.json"
  else
    "$APP" submit ClaimIntake --id "claim-$claim" --input "@$WORK/claims/$claim.json" >/dev/null
  fi
done
echo "# ... submitted $(( ${#claims[@]} - 2 )) claims from the command line; the last two come in as business events over HTTP:"
token="$("$DURABLE" auth add portal --role submitter --file "$WORK/tokens.json" | grep -o 'dur_[A-Za-z0-9_-]*' | head -1)"
"$APP" serve --auth "$WORK/tokens.json" --port 0 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q '^serving http' "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
URL="$(sed -n 's/^serving \(http[^ ]*\).*/\1/p' "$WORK/server.log")"
[ -n "$URL" ] || { cat "$WORK/server.log"; fail "serve did not start"; }
body="$("$PYTHON" -c 'import json, sys
print(json.dumps([{"name": "claim.submitted", "id": "portal-" + c["claimId"], "data": c}
                  for c in (json.load(open(f)) for f in sys.argv[1:])]))' "${http_claims[@]/%/.json}")"
step "curl -X POST $URL/v1/events -H 'Authorization: Bearer …' -d '[{\"name\": \"claim.submitted\", \"id\": \"portal-${claims[-2]}\", \"data\": {…}}, …]'"
curl -sS -X POST "$URL/v1/events" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body" \
  | "$PYTHON" -c 'import json, sys
for r in json.load(sys.stdin)["results"]: print("  %s: %s %s run %s" % (r["id"], r["outcome"], r.get("workflowID", ""), r.get("runID", "")))'

# ---------------------------------------------------------------------------------------------
section "3. SIGKILL the worker mid-batch, right after a payment"

# Wait for the next payment (the worker pauses 1.5 s after it), then kill the worker.
paid_before="$(grep -c '\] PayOut .*: paid ' "$WORK/worker-1.log" || true)"
deadline=$((SECONDS + 120))
until [ "$(grep -c '\] PayOut .*: paid ' "$WORK/worker-1.log" || true)" -gt "$paid_before" ]; do
  kill -0 "$WORKER_PID" 2>/dev/null || { print_log "$WORK/worker-1.log" worker-1; fail "the worker died on its own"; }
  [ "$SECONDS" -lt "$deadline" ] || { print_log "$WORK/worker-1.log" worker-1; fail "no claim was paid within 120 s"; }
  sleep 0.05
done
models=($(pgrep -P "$WORKER_PID" || true))   # its pool processes (read before the kill)
{ kill -9 "$WORKER_PID"; wait "$WORKER_PID"; } 2>/dev/null || true
paid_line="$(grep '\] PayOut .*: paid ' "$WORK/worker-1.log" | tail -1)"
echo "kill -9 $WORKER_PID just after: $paid_line"
WORKER_PID=""
paid_claim="$(sed -n 's/.*PayOut claim-\(C-[0-9]*\) .*/\1/p' <<<"$paid_line")"
for _ in $(seq 1 50); do
  alive=0; for pid in "${models[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
  [ "$alive" -eq 0 ] && break; sleep 0.1
done
echo "# its ${#models[@]} model processes (pids ${models[*]}) saw their stdin close: $alive still running"
echo "# the journal does not know claim $paid_claim was paid (PayOut has no completion):"
show "$APP" runs show "claim-$paid_claim" | grep -E '^(status|lease)|PayOut' || true

# ---------------------------------------------------------------------------------------------
section "4. A new worker recovers the runs"

start_worker "$WORK/worker-2.log"

# ---------------------------------------------------------------------------------------------
section "5. Human review: answered from the command line"

# Reviews are answered as claims reach them: the first claim to wait is left unanswered until its
# deadline escalates it (then a senior reviewer approves it), the second is refused, the rest approved.
declare -A answered=()
escalate=""; refuse=""; http_review=""
deadline=$((SECONDS + 300))
while :; do
  open=0
  for claim in "${claims[@]}"; do
    [ -n "${answered[$claim]:-}" ] && continue
    status="$("$APP" runs show "claim-$claim" --json 2>/dev/null | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["status"])' || echo missing)"
    case "$status" in completed|failed) answered[$claim]=done; continue ;; esac
    open=$((open + 1))
    case "$(stage "claim-$claim")" in
      "awaiting review")
        if [ -z "$escalate" ]; then
          escalate="$claim"
          echo "claim-$claim waits for a review: left unanswered, it escalates after ${REVIEW_SECONDS} s"
          show "$APP" runs show "claim-$claim" | grep -iE '^(status|stage)|signal|timer' || true
        elif [ "$claim" = "$escalate" ]; then :
        elif [ -z "$refuse" ]; then
          refuse="$claim"; answered[$claim]=refused
          show "$APP" signal "claim-$claim" review --input '{"approved": false, "by": "j.weber", "note": "repair shop unknown"}'
        elif [ -z "$http_review" ]; then
          # One answer comes from the claims portal as a business event: the route claim.reviewed
          # signals `review` to claim-{data.claimId}.
          http_review="$claim"; answered[$claim]=approved
          step "curl -X POST $URL/v1/events -d '{\"name\": \"claim.reviewed\", \"id\": \"review-$claim\", \"data\": {\"claimId\": \"$claim\", \"approved\": true, \"by\": \"a.ortiz\"}}'"
          curl -sS -X POST "$URL/v1/events" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d "{\"name\": \"claim.reviewed\", \"id\": \"review-$claim\", \"data\": {\"claimId\": \"$claim\", \"approved\": true, \"by\": \"a.ortiz\"}}" \
            | "$PYTHON" -c 'import json, sys
for r in json.load(sys.stdin)["results"]: print("  %s: %s %s" % (r["id"], r["outcome"], r.get("workflowID", "")))'
        else
          answered[$claim]=approved
          show "$APP" signal "claim-$claim" review --input '{"approved": true, "by": "j.weber"}'
        fi ;;
      "awaiting review (escalated)")
        answered[$claim]=senior
        echo "claim-$claim was escalated (nobody answered within ${REVIEW_SECONDS} s):"
        show "$APP" signal "claim-$claim" review --input '{"approved": true, "by": "m.kovac (senior)"}' ;;
    esac
  done
  [ "$open" -eq 0 ] && break
  kill -0 "$WORKER_PID" 2>/dev/null || { print_log "$WORK/worker-2.log" worker-2; fail "the worker died"; }
  [ "$SECONDS" -lt "$deadline" ] || fail "$open claim(s) still open after 300 s"
  sleep 1
done
[ -n "$escalate" ] && [ -n "$refuse" ] || fail "expected at least two claims to need a review"
[ "${answered[$escalate]}" = senior ] || fail "claim-$escalate ended without its escalation being answered"

deadline=$((SECONDS + 120))
until [ "$("$APP" runs count --status pending,running --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["count"])')" = 0 ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "runs still open 120 s after the reviews"
  sleep 0.5
done
ok "every claim's run has ended"

# ---------------------------------------------------------------------------------------------
section "6. Results, and the ledger after the SIGKILL"

"${REPORT[@]}" results "$APP" "$CLAIMS_LEDGER"
echo
"${REPORT[@]}" check-recovery "$APP"
"$PYTHON" - "$CLAIMS_LEDGER" "$paid_claim" <<'PY' || fail "claim paid before the SIGKILL was paid again"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
calls = db.execute("SELECT attempt, paid FROM payout_calls WHERE claim_id = ? ORDER BY id", (sys.argv[2],)).fetchall()
payments = db.execute("SELECT COUNT(*) FROM payments WHERE claim_id = ?", (sys.argv[2],)).fetchone()[0]
print(f"{sys.argv[2]}: PayOut ran {len(calls)} times (attempts {', '.join(str(a) for a, _ in calls)}), paid {sum(p for _, p in calls)} time(s); {payments} payment row(s)")
sys.exit(0 if len(calls) >= 2 and payments == 1 and sum(p for _, p in calls) == 1 else 1)
PY
ok "the claim paid just before the SIGKILL ran PayOut again after the restart and was not paid twice"
for claim in "${claims[@]}"; do
  "$APP" replay "claim-$claim" >/dev/null || fail "replay of claim-$claim does not match its history"
done
ok "the code replays all ${#claims[@]} histories without a mismatch"

# ---------------------------------------------------------------------------------------------
section "7. The timeline of one claim (the escalated one)"

show "$APP" history "claim-$escalate" --timeline

section "8. Which models decided this claim? (lineage)"

show "$APP" lineage "claim-$escalate"
fraud_model="$("$PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["name"] + "@" + m["version"])' "$(sed -n 's/^model: *//p' <<<"$setup_output")/fraud_model.json")"
show "$APP" lineage --model "$fraud_model" --limit 5

kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

# ---------------------------------------------------------------------------------------------
section "9. Warm pools against a cold start per call"

echo "# the batch above, warm pools (slots loaded at start and reused); its end-to-end figures include the"
echo "# SIGKILL, the restart and the people's reviews (Samples/ClaimsIntake/bench.sh measures without them):"
"${REPORT[@]}" figures "$APP" warm
echo
echo "# 6 more claims with CLAIMS_POOLS=cold: every call starts a process and loads its model"
export DURABLE_JOURNAL="$WORK/cold.sqlite" CLAIMS_LEDGER="$WORK/cold-ledger.sqlite"
start_worker "$WORK/worker-cold.log" CLAIMS_POOLS=cold
for claim in "${claims[@]:0:6}"; do
  "$APP" submit ClaimIntake --id "claim-$claim" --input "@$WORK/claims/$claim.json" >/dev/null
  "$APP" signal "claim-$claim" review --input '{"approved": true, "by": "bench"}' >/dev/null
done
deadline=$((SECONDS + 240))
until [ "$("$APP" runs count --status pending,running --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["count"])')" = 0 ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "cold runs still open after 240 s"
  sleep 0.5
done
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""
"${REPORT[@]}" figures "$APP" cold
echo "(RUN is the attempt inside its slot; a cold attempt's slot first starts the process and loads the model: WARM-UP."
echo " MODEL is the time inside the model call in the worker process; POOL OVERHEAD = RUN - MODEL: pipes, JSON, dispatch.)"

section "Done"
echo "Everything is in $WORK: journal.sqlite, ledger.sqlite, scans/, claims/, worker-*.log."
echo "Try: DURABLE_JOURNAL=$WORK/journal.sqlite $APP history claim-$escalate --timeline"
