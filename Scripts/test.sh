#!/usr/bin/env bash
# The whole test suite: installs what it needs when missing (SQLite and LZ4 headers, python3,
# PostgreSQL, chromium, and the ClaimsIntake sample's Tesseract, Python venv and trained model),
# builds every product (the tests spawn the built executables as real processes), starts
# a throwaway PostgreSQL cluster (stopped again on exit, whatever happens), then runs the Swift Testing
# suites: all of them on SQLite, then the engine, test-kit and command-line suites again on
# PostgreSQL. The storage conformance suite runs both backends in one pass. Last, a property-based
# fuzz run of the HTTP API against its OpenAPI document (Scripts/api-fuzz.sh, schemathesis from PyPI),
# and the web console in headless chromium (Scripts/console-check.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Scripts/install-deps.sh --chromium
bash Scripts/claims-setup.sh  # Tesseract, the Python venv and the trained fraud model of the ClaimsIntake sample (ClaimsIntakeSampleTests)
swift build --build-tests

cluster="$(mktemp -d "${TMPDIR:-/tmp}/durable-test-pg.XXXXXX")"
trap 'bash Scripts/postgres.sh stop "$cluster"' EXIT
DURABLE_TEST_POSTGRES_URL="$(DURABLE_PG_FSYNC=off bash Scripts/postgres.sh start "$cluster")"
export DURABLE_TEST_POSTGRES_URL DURABLE_TEST_POSTGRES_DIR="$cluster"
echo "test PostgreSQL cluster: $DURABLE_TEST_POSTGRES_URL (data in $cluster)" >&2

# Several runs per backend. The suites whose checks have timing bounds (a timer fires when due, a
# heartbeat timeout, a retry delay, the change feed's wake-up) run together but apart from the rest: on two cores, the crash
# tests' worker processes and the CPU-bound replay tests starved them of threads for over half a
# second. The multi-worker and chaos tests run alone at the end: they keep both cores busy with worker
# processes that are SIGKILLed and restarted. The ClaimsIntake sample's test (its real model pools,
# a SIGKILL) runs by itself after them: the chaos test stops the PostgreSQL server under it.
# TestEnvironmentTests bounds a skipped 30-day sleep by wall time, and ChildWorkflowTests waits at most
# 20 s for a restarted worker process: beside every other suite, under load, both missed their bounds in
# 2 of 3 runs from a fresh clone on 5 December (a 10-20 s stall of the test process). To see where a
# stall's threads are: DURABLE_TEST_STALL_DUMP=<folder> (Tests/DurableTestSupport/StallWatchdog.swift
# writes every thread's stack there when a task waits over 2 s for a cooperative thread). Seen so far:
# both cooperative threads in fdatasync while opening a journal (now opened off them), or in tests'
# own file writes while other processes held both cores.
timed='WorkerRuntimeTests|ActivityRuntimeCoverageTests|ProcessPoolTests|WorkerProcessTests|TimerTests|JournalConformanceTests|RateLimitEngineTests|TestEnvironmentTests'
alone='MultiWorkerTests|PostgresChaosTests|ChildWorkflowTests'
sample='ClaimsIntakeSampleTests'
# CPU-bound suites that run in the test process (the corruption fuzzer, 16 MiB payloads) or spawn a
# process per bad option value: beside the others they held both cores (and Swift's cooperative
# threads) for seconds, and tests waiting for a worker process timed out.
heavy='CorruptionFuzzTests|PayloadLimitTests|BadValueSweepTests'
echo "== SQLite" >&2
swift test --skip-build --skip "$timed" --skip "$alone" --skip "$heavy" --skip "$sample" "$@"
swift test --skip-build --filter "$heavy" "$@"
swift test --skip-build --filter "$timed" "$@"
swift test --skip-build --filter "$alone" "$@"
swift test --skip-build --filter "$sample" "$@"
echo "== PostgreSQL" >&2
export DURABLE_TEST_BACKEND=postgres
suites='DurableTests\.|DurableTestingTests\.|DurableCommandsTests\.|DurableServerTests\.'
swift test --skip-build --filter "$suites" --skip "$timed" --skip "$alone" --skip "$heavy" --skip "$sample" "$@"
swift test --skip-build --filter 'PayloadLimitTests' "$@"
# One test at a time: with the database server on the same two cores, a commit under the parallel
# load took long enough to shift the timing-bounded checks (a retry's queue wait, two late timers).
# WorkerProcessTests and the conformance suite are left out here: the first never opens a journal,
# the second ran both backends above.
swift test --skip-build --no-parallel \
    --filter 'WorkerRuntimeTests|ActivityRuntimeCoverageTests|ProcessPoolTests|TimerTests|TestEnvironmentTests' "$@"
swift test --skip-build --filter "$alone" "$@"
swift test --skip-build --filter "$sample" "$@"
unset DURABLE_TEST_BACKEND
echo "== HTTP API fuzz run" >&2
bash Scripts/api-fuzz.sh
echo "== The web console in headless chromium" >&2
bash Scripts/console-check.sh
# The suites' journals live in durable-tests-<pid> folders (on /dev/shm when it is writable, else in
# $TMPDIR); remove those of test processes that have ended, this run's included.
# A test process killed inside DiskFullTests may leave its small tmpfs mounted there.
for folder in /dev/shm/durable-tests-* "${TMPDIR:-/tmp}"/durable-tests-*; do
    if [ -d "$folder" ] && [ ! -d "/proc/${folder##*-}" ]; then
        for mounted in "$folder"/fs-*; do [ -d "$mounted" ] && { umount -l "$mounted" 2>/dev/null || true; }; done
        rm -rf "$folder" || echo "could not remove $folder" >&2
    fi
done
exit 0
