#!/usr/bin/env bash
# Durable against its peer DBOS Transact (Python, SQLite), same machine, same run.
#
#   bash Scripts/bench.sh                 # 3 rounds, about 10-15 minutes on 2 cores
#   ROUNDS=1 bash Scripts/bench.sh        # one round
#
# (a) installs what is missing (liblz4-dev for the build, the DBOS venv through
#     ../shared/peers/dbos/setup.sh), (b) builds durable-bench in release mode, (c) runs ROUNDS
#     rounds, each interleaving: Durable (full, fast), DBOS bench_dbos.py with its default settings,
#     DBOS with WAL+NORMAL, crash_dbos.py, Durable's pool and pick-up latency workloads (no DBOS
#     counterpart) and the
#     disk probe sqlite_limit.py, then (once) a sync
#     probe (strace -c of Durable's `long`, to check that `full` really syncs), (d) writes the raw
#     JSON lines to a results folder and prints a Markdown summary (also saved as summary.md).
#
# PostgreSQL (POSTGRES=0 skips it): a throwaway cluster (Scripts/postgres.sh, fsync on), pgbench's
# one-client commit floor, durable-bench --journal postgres://… (long, seq, conc, conc_group, crash, and
# 1/2/4 worker processes), and bench_dbos.py --system-db-url and Scripts/crash_dbos_pg.py (DBOS's
# crash recovery, which the shared crash_dbos.py runs on SQLite only) on the same server, each round.
#
# HTTP API (HTTP=0 skips it): `durable-bench --workloads http --durability full` each round: wrk (the Debian
# package, installed when missing) on loopback with Benchmarks/http/submit.lua against a bare Hummingbird
# route and `durable serve`'s submit route in the same process, 1, 16 and 64 clients, async submits with the
# worker idle and running, and sync submit+complete of a 3-step workflow (?wait=10s); see Docs/benchmarks.md,
# "HTTP API". With SQLITE=0 the phase runs the disk probe itself, for the floor.
#
# Environment: ROUNDS (3), BENCH_RESULTS (results folder, default .build/bench-results/<UTC stamp>),
# DURABLE_SHARED (the shared folder, default ../shared beside the repository),
# DBOS_PEER_VENV (default ~/.cache/dbos-peer-venv), SYNC_PROBE=0 to skip the strace probe, SQLITE=0
# to run only the PostgreSQL phase, REPLAY=0 and CLAIMS=0 to skip the replay and ClaimsIntake phases
# (CLAIMS_COUNT: claims per mode, default 30).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${DURABLE_SHARED:-$ROOT/../shared}"
PEER="$SHARED/peers/dbos"
VENV="${DBOS_PEER_VENV:-$HOME/.cache/dbos-peer-venv}"
PY="$VENV/bin/python"
ROUNDS="${ROUNDS:-3}"
SYNC_PROBE="${SYNC_PROBE:-1}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${BENCH_RESULTS:-$ROOT/.build/bench-results/$STAMP}"

log() { echo "[bench $(date -u +%T)] $*" >&2; }

[ -d "$PEER" ] || { echo "bench.sh: DBOS peer scripts not found at $PEER (set DURABLE_SHARED)" >&2; exit 1; }
PEER="$(cd "$PEER" && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# ---- (a) install ---------------------------------------------------------------------------------
if ! pkg-config --exists liblz4 2>/dev/null; then
  log "installing liblz4-dev"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq liblz4-dev pkg-config >&2
fi
if [ "${SQLITE:-1}" = 1 ] || [ "${POSTGRES:-1}" = 1 ]; then
  if ! "$PY" -c 'import dbos' >/dev/null 2>&1; then
    log "creating the DBOS venv at $VENV"
    DBOS_PEER_VENV="$VENV" bash "$PEER/setup.sh" >&2
  fi
  "$PY" -c 'import importlib.metadata as m; print("dbos", m.version("dbos"))' >"$OUT/dbos_version.txt"
fi
if [ "${HTTP:-1}" = 1 ] && ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >&2
fi

# ---- (b) build -----------------------------------------------------------------------------------
log "building durable-bench (release)"
(cd "$ROOT" && swift build -c release --product durable-bench >&2)
BENCH="$(cd "$ROOT" && swift build -c release --show-bin-path)/durable-bench"

{
  echo "date_utc=$STAMP"
  echo "host=$(uname -srm)"
  echo "cpus=$(nproc)"
  echo "model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem=$(grep MemTotal /proc/meminfo | awk '{print $2 " kB"}')"
  echo "swift=$(swift --version 2>/dev/null | head -1)"
  echo "git=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)$(cd "$ROOT" && git diff --quiet HEAD -- Sources 2>/dev/null || echo "+uncommitted Sources changes (diff sha1 $(git diff HEAD -- Sources | sha1sum | cut -c1-12))")"
  echo "tmp_fs=$(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
  echo "rounds=$ROUNDS"
} >"$OUT/machine.txt"

# ---- (c) rounds ----------------------------------------------------------------------------------
for r in $(seq 1 "$ROUNDS"); do
  [ "${SQLITE:-1}" = 1 ] || break
  log "round $r/$ROUNDS: Durable (full, fast)"
  "$BENCH" --durability full,fast --run-id "r$r" >>"$OUT/durable.jsonl" 2>>"$OUT/stderr.log" \
    || log "durable-bench round $r reported a failure (see stderr.log)"
  log "round $r/$ROUNDS: DBOS default"
  "$PY" "$PEER/bench_dbos.py" --run-id "r$r" >>"$OUT/dbos_default.jsonl" 2>>"$OUT/stderr.log" \
    || log "bench_dbos.py round $r failed"
  log "round $r/$ROUNDS: DBOS WAL+NORMAL"
  "$PY" "$PEER/bench_dbos.py" --run-id "r$r" --pragma journal_mode=WAL --pragma synchronous=NORMAL \
    >>"$OUT/dbos_wal_normal.jsonl" 2>>"$OUT/stderr.log" || log "bench_dbos.py (WAL+NORMAL) round $r failed"
  log "round $r/$ROUNDS: DBOS crash test"
  "$PY" "$PEER/crash_dbos.py" --run-id "r$r" >>"$OUT/dbos_crash.jsonl" 2>>"$OUT/stderr.log" \
    || log "crash_dbos.py round $r: FAIL"
  log "round $r/$ROUNDS: Durable worker runtime (pools; no DBOS counterpart)"
  "$BENCH" --workloads pools --run-id "r$r" >>"$OUT/durable_pools.jsonl" 2>>"$OUT/stderr.log" \
    || log "durable-bench pools round $r reported a failure (see stderr.log)"
  log "round $r/$ROUNDS: Durable pick-up latency across processes (no DBOS counterpart)"
  "$BENCH" --workloads submit_latency --run-id "r$r" >>"$OUT/durable_latency.jsonl" 2>>"$OUT/stderr.log" \
    || log "durable-bench submit_latency round $r reported a failure (see stderr.log)"
  log "round $r/$ROUNDS: disk probe"
  "$PY" "$PEER/sqlite_limit.py" --run-id "r$r" >>"$OUT/sqlite_limit.jsonl" 2>>"$OUT/stderr.log" \
    || log "sqlite_limit.py round $r failed"
done

# The HTTP API under wrk: bare Hummingbird against the submit route, same process, same minutes.
if [ "${HTTP:-1}" = 1 ]; then
  wrk --version 2>&1 | head -1 >"$OUT/wrk_version.txt" || true
  for r in $(seq 1 "$ROUNDS"); do
    log "round $r/$ROUNDS: HTTP API (wrk: bare route, async submits, sync 3-step; about 3 minutes)"
    (cd "$ROOT" && "$BENCH" --workloads http --durability full --run-id "r$r" \
      --wrk-script "$ROOT/Benchmarks/http/submit.lua") >>"$OUT/durable_http.jsonl" 2>>"$OUT/stderr.log" \
      || log "durable-bench http round $r reported a failure (see stderr.log)"
    if [ "${SQLITE:-1}" != 1 ]; then
      log "round $r/$ROUNDS: disk probe (the HTTP phase's floor)"
      python3 "$PEER/sqlite_limit.py" --run-id "r$r" >>"$OUT/sqlite_limit.jsonl" 2>>"$OUT/stderr.log" \
        || log "sqlite_limit.py round $r failed"
    fi
  done
fi

# Open runs (OPEN_RUNS=N, off by default): N runs waiting on a signal with an instance cache of
# OPEN_RUNS_CACHE (default 10000), 1 % signalled, then a worker restart; SQLite, full durability, once.
# See Docs/benchmarks.md, "Open runs". OPEN_RUNS=1000000 takes minutes and a few GB of disk.
if [ -n "${OPEN_RUNS:-}" ]; then
  log "open runs: $OPEN_RUNS runs waiting, cache ${OPEN_RUNS_CACHE:-10000} (SQLite, full)"
  "$BENCH" --workloads open_runs --durability full --open-runs "$OPEN_RUNS" --cache "${OPEN_RUNS_CACHE:-10000}" \
    --run-id "open" >>"$OUT/durable_open_runs.jsonl" 2>>"$OUT/stderr.log" \
    || log "durable-bench open_runs reported a failure (see stderr.log)"
fi

# PostgreSQL: a throwaway cluster (fsync on), its one-client commit floor, Durable and DBOS on it.
if [ "${POSTGRES:-1}" = 1 ]; then
  PG_DIR="$OUT/pg-cluster"
  log "PostgreSQL: starting a cluster in $PG_DIR"
  PG_URL="$(bash "$HERE/postgres.sh" start "$PG_DIR")"
  trap 'bash "$HERE/postgres.sh" stop "$PG_DIR"' EXIT
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  PG_PORT="$(cat "$PG_DIR/port")"
  psql "$PG_URL" -qc "CREATE TABLE IF NOT EXISTS floor_probe (id bigserial PRIMARY KEY, v text)"
  echo "INSERT INTO floor_probe (v) VALUES ('x');" >"$OUT/pgbench_insert.sql"
  for r in $(seq 1 "$ROUNDS"); do
    log "round $r/$ROUNDS: pgbench floor (1 client, 1 row per transaction)"
    tps="$("$PG_BIN/pgbench" -n -c 1 -T 5 -f "$OUT/pgbench_insert.sql" "$PG_URL" 2>>"$OUT/stderr.log" \
      | awk '/^tps/ {print $3; exit}')"
    [ -n "$tps" ] && python3 -c "import json,sys; t=float(sys.argv[1]); print(json.dumps({'phase':'pgbench','run_id':'r$r','tps':t,'ms_per_commit':round(1000/t,4)}))" "$tps" >>"$OUT/pgbench.jsonl"
    log "round $r/$ROUNDS: Durable on PostgreSQL (full)"
    "$BENCH" --journal "$PG_URL" --durability full --workloads long,seq,conc,conc_group,crash --run-id "r$r" \
      >>"$OUT/durable_pg.jsonl" 2>>"$OUT/stderr.log" || log "durable-bench on PostgreSQL round $r reported a failure"
    log "round $r/$ROUNDS: DBOS on PostgreSQL"
    "$PY" "$PEER/bench_dbos.py" --run-id "r$r" --system-db-url "postgresql://durable@127.0.0.1:$PG_PORT/postgres" \
      >>"$OUT/dbos_pg.jsonl" 2>>"$OUT/stderr.log" || log "bench_dbos.py on PostgreSQL round $r failed"
    log "round $r/$ROUNDS: DBOS crash recovery on PostgreSQL"
    "$PY" "$HERE/crash_dbos_pg.py" --run-id "r$r" --system-db-url "postgresql://durable@127.0.0.1:$PG_PORT/postgres" \
      >>"$OUT/dbos_pg.jsonl" 2>>"$OUT/stderr.log" || log "crash_dbos_pg.py round $r failed"
    log "round $r/$ROUNDS: Durable worker processes on PostgreSQL (1, 2, 4)"
    "$BENCH" --journal "$PG_URL" --durability full --workloads workers --run-id "r$r" \
      >>"$OUT/durable_pg.jsonl" 2>>"$OUT/stderr.log" || log "durable-bench workers round $r reported a failure"
  done
fi

# Replay cost against history length (issue 16: linear), once: 1,000, 10,000 and 100,000 steps.
if [ "${REPLAY:-1}" = 1 ]; then
  log "replay: histories of 1,000, 10,000 and 100,000 steps (about a minute)"
  "$BENCH" --workloads replay --run-id "r1" >>"$OUT/durable_replay.jsonl" 2>>"$OUT/stderr.log" \
    || log "durable-bench replay reported a failure (see stderr.log)"
fi

# The ClaimsIntake sample with its real models (Tesseract, MiniLM, scikit-learn), once: claims per
# second and per-stage latency with warm pools and with a cold start per call, and each pool's
# overhead against calling the model directly (Samples/ClaimsIntake/bench.sh; about 4 minutes).
if [ "${CLAIMS:-1}" = 1 ]; then
  log "ClaimsIntake: warm pools against a cold start per call, ${CLAIMS_COUNT:-30} claims"
  bash "$ROOT/Samples/ClaimsIntake/bench.sh" "${CLAIMS_COUNT:-30}" >"$OUT/claims.md" 2>>"$OUT/stderr.log" \
    || log "Samples/ClaimsIntake/bench.sh failed (see stderr.log)"
fi

# A check, not a timing: how many fsync/fdatasync calls Durable makes for 500 one-commit steps.
if [ "$SYNC_PROBE" = 1 ] && [ "${SQLITE:-1}" = 1 ] && command -v strace >/dev/null 2>&1; then
  for d in full fast; do
    log "sync probe: $d"
    strace -f -qq -c -o "$OUT/sync_probe_$d.strace" -e trace=fsync,fdatasync \
      "$BENCH" --workloads long --durability "$d" --long-steps 500 --run-id "probe" \
      >"$OUT/sync_probe_$d.jsonl" 2>>"$OUT/stderr.log" || log "sync probe ($d) failed"
  done
fi

# ---- (d) summary ---------------------------------------------------------------------------------
python3 "$HERE/bench_summary.py" "$OUT" | tee "$OUT/summary.md"
if [ -s "$OUT/claims.md" ]; then
  { echo; echo "## ClaimsIntake (real models)"; echo; cat "$OUT/claims.md"; } | tee -a "$OUT/summary.md"
fi
log "raw results and summary in $OUT"
