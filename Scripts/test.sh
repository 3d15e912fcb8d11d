#!/usr/bin/env bash
# The whole test suite: installs the system libraries when missing, builds every product (the tests
# spawn the built executables as real processes), then runs the Swift Testing suites.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Scripts/install-deps.sh
swift build --build-tests
# Three runs. The suites whose checks have timing bounds (a timer fires when due, a heartbeat
# timeout, a retry delay) run together but apart from the rest: on two cores, the crash tests'
# worker processes and the CPU-bound replay tests starved them of threads for over half a second.
# The multi-worker stress test runs alone at the end: it keeps both cores busy with worker processes
# that are SIGKILLed and restarted every 250 ms.
timed='WorkerRuntimeTests|ActivityRuntimeCoverageTests|ProcessPoolTests|WorkerProcessTests|TimerTests'
swift test --skip-build --skip "$timed" --skip MultiWorkerTests "$@"
swift test --skip-build --filter "$timed" "$@"
swift test --skip-build --filter MultiWorkerTests "$@"
# The suites' journals live in durable-tests-<pid> folders (on /dev/shm when it is writable, else in
# $TMPDIR); remove those of test processes that have ended, this run's included.
for folder in /dev/shm/durable-tests-* "${TMPDIR:-/tmp}"/durable-tests-*; do
    [ -d "$folder" ] && [ ! -d "/proc/${folder##*-}" ] && rm -rf "$folder"
done
exit 0
