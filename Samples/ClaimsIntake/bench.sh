#!/usr/bin/env bash
# Figures for the ClaimsIntake sample on this machine: claims per second end to end and p50/p95/p99
# per stage, once with warm pools and once with a cold start per call (CLAIMS_POOLS=cold: a new
# process and a model load for every attempt), and the pool's overhead against calling each model
# directly in Python (python/direct_bench.py).
#
#   bash Samples/ClaimsIntake/bench.sh [CLAIMS]      (default 30; from anywhere)
#
# Every claim gets its review signal at submission (approved), so no run waits for a person.
# Prints the tables on standard output; the journals and logs stay in the work folder it names.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
COUNT="${1:-30}"
[[ "$COUNT" =~ ^[0-9]+$ ]] && [ "$COUNT" -ge 1 ] && [ "$COUNT" -le 500 ] || { echo "bench.sh: CLAIMS must be 1 to 500, not '$COUNT'" >&2; exit 64; }

setup_output="$(bash Scripts/claims-setup.sh)"
PYTHON="$(sed -n 's/^python: //p' <<<"$setup_output")"
export CLAIMS_MODEL_DIR="$(sed -n 's/^model: *//p' <<<"$setup_output")"
swift build --product claims-intake >&2
APP="$(swift build --show-bin-path)/claims-intake"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/durable-claims-bench.XXXXXX")"
"$PYTHON" Samples/ClaimsIntake/python/make_claims.py "$WORK" "$COUNT" >&2

WORKER_PID=""
trap '[ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null; true' EXIT

echo "ClaimsIntake on $(nproc) cores, $COUNT claims; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in warm cold; do
  export DURABLE_JOURNAL="$WORK/$mode.sqlite" CLAIMS_LEDGER="$WORK/$mode-ledger.sqlite"
  env CLAIMS_POOLS="$mode" "$APP" worker >"$WORK/worker-$mode.log" 2>&1 &
  WORKER_PID=$!
  for _ in $(seq 1 1800); do grep -q '^pools warm' "$WORK/worker-$mode.log" && break; sleep 0.1; done
  grep -q '^pools warm' "$WORK/worker-$mode.log" || { cat "$WORK/worker-$mode.log" >&2; exit 1; }
  echo
  echo "## $mode: $(grep '^pools warm' "$WORK/worker-$mode.log")"
  ls "$WORK"/claims/C-*.json | xargs -P 4 -I{} sh -c '
    id=$(basename {} .json)
    "$0" submit ClaimIntake --id "claim-$id" --input "@{}" >/dev/null &&
    "$0" signal "claim-$id" review --input "{\"approved\": true, \"by\": \"bench\"}" >/dev/null' "$APP"
  until [ "$("$APP" runs count --status pending,running --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["count"])')" = 0 ]; do
    kill -0 "$WORKER_PID" 2>/dev/null || { cat "$WORK/worker-$mode.log" >&2; exit 1; }
    sleep 0.5
  done
  kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""
  /usr/bin/python3 Samples/ClaimsIntake/python/report.py figures "$APP" "$mode"
done
echo
echo "## each model called directly in one Python process (no pool), and a new process per call"
(cd Samples/ClaimsIntake/python && PYTHONDONTWRITEBYTECODE=1 OMP_THREAD_LIMIT=1 CLAIMS_ONNX_THREADS=1 "$PYTHON" direct_bench.py "$WORK" 30 2>/dev/null)
echo
echo "RUN: the attempt in its slot as the engine timed it; MODEL: the model call inside the worker process;"
echo "POOL OVERHEAD = RUN - MODEL (pipes, JSON lines, the engine's dispatch). WARM-UP: a cold slot's process start and model load."
echo "work folder: $WORK"
