import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Several worker processes on one journal: leases, takeover, fencing.
@Suite(.serialized, .timeLimit(.minutes(3))) struct MultiWorkerTests {
    let worker: String

    init() throws {
        worker = try productPath("durable-test-worker")
    }

    func startWorker(_ journal: String, side: String, stepMs: Int, lease: String = "1") throws -> Child {
        // Children of the test process: each runs Step activities that sleep `stepMs`.
        try Child(
            worker, ["worker", "--quiet", "--durability", "fast", "--lease", lease, "--journal", journal],
            environment: ["SIDE_FILE": side, "STEP_MS": "\(stepMs)"])
    }

    // On PostgreSQL this cadence (the busiest worker SIGKILLed every 250 ms, three debug workers and
    // the server on two cores) left some steps unfinished between kills, so that runs failed after
    // five WorkerLost attempts; PostgresChaosTests kills at random every 0.6-1.5 s instead.
    @Test(.enabled(if: TestBackend.isSQLite, "kill cadence tuned for SQLite; PostgreSQL: PostgresChaosTests"))
    func threeWorkersFinishEveryRunOnceWhileOneAfterAnotherIsKilled() async throws {
        let journal = temporaryJournalPath("three")
        let side = temporaryPath("side")
        let runs = 300
        let submitter = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        var workers = try (0..<3).map { _ in try startWorker(journal, side: side, stepMs: 50) }
        // Runs arrive in waves of 20 every 250 ms while every 250 ms the worker driving the most
        // runs is SIGKILLed and restarted.
        var submitted = 0
        var kills = 0
        let deadline = ContinuousClock.now + .seconds(120)
        while submitted < runs ? true : try await submitter.countRuns(RunFilter(statuses: [.pending, .running])).values.reduce(0, +) > 0 {
            try #require(ContinuousClock.now < deadline, "runs did not finish in time")
            try await Task.sleep(for: .milliseconds(130))
            if submitted < runs {
                for i in submitted..<submitted + 20 {
                    _ = try await submitter.submit(workflowType: "CrashFlow", input: Data(#"{"tag":"w\#(i)"}"#.utf8), id: "w\(i)")
                }
                submitted += 20
            }
            try await Task.sleep(for: .milliseconds(120))  // the kill comes in the middle of a wave
            let leases = try await submitter.journal.leaseOwners()
            let busiest = workers.indices.max { a, b in
                leases.filter { $0.key.contains("/\(workers[a].pid)/") }.values.reduce(0, +)
                    < leases.filter { $0.key.contains("/\(workers[b].pid)/") }.values.reduce(0, +)
            }
            let victim = busiest ?? kills % 3
            workers[victim].kill(SIGKILL)
            _ = try await workers[victim].wait()
            workers[victim] = try startWorker(journal, side: side, stepMs: 50)
            kills += 1
        }
        try await Task.sleep(for: .milliseconds(500))  // the last one restarted has set up its signal handling
        for child in workers {
            child.kill(SIGTERM)
            let exit = try await child.wait()
            #expect(exit.reason == .exit && exit.status == 0, "worker did not stop cleanly: \(child.output)")
        }
        #expect(kills >= 12, "the workers were killed \(kills) times: too few to test takeover")

        let all = try await submitter.runs()
        #expect(all.count == runs, "each workflow ID ran once")
        for run in all where run.status != .completed { Issue.record("\(run.workflowID) is \(run.status): \(run.error ?? "")") }
        let records = sideRecords(side)
        var takenOver = 0
        for run in all {
            let (record, events) = try await submitter.history(run.runID)
            let tag = record.workflowID
            let expected = "\(tag)-a!,\(tag)-side!,\(tag)-b1x!\(tag)-b1y!,\(tag)-b2x!\(tag)-b2y!,\(tag)-b3x!\(tag)-b3y!,\(tag)-z! #8"
            #expect(try await submitter.describe(run.runID).outcome == .completed(Data("\"\(expected)\"".utf8)))
            checkAttempts(records.filter { $0.label.hasPrefix(tag + "-") }, events, run: tag)
            if events.contains(where: { $0.failure?.type == "WorkerLost" }) { takenOver += 1 }
        }
        #expect(takenOver > 0, "no run was cut off mid-activity by a kill")
        await submitter.shutdown()
    }

    @Test func aStalledWorkerLosesItsRunAndItsLateResultIsNotRecorded() async throws {
        let journal = temporaryJournalPath("stalled")
        let side = temporaryPath("side")
        let submitter = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        let first = try startWorker(journal, side: side, stepMs: 4_000)
        defer { first.kill(SIGKILL) }
        _ = try await submitter.submit(workflowType: "CrashFlow", input: Data(#"{"tag":"st"}"#.utf8), id: "stalled")
        let deadline = ContinuousClock.now + .seconds(20)
        while !sideRecords(side).contains(where: { $0.label == "st-a" }) {
            try #require(ContinuousClock.now < deadline, "the first worker never started the run: \(first.output)")
            try await Task.sleep(for: .milliseconds(5))
        }
        first.kill(SIGSTOP)  // alive, but neither renewing its lease nor finishing its attempt

        let second = try startWorker(journal, side: side, stepMs: 100)
        defer { second.kill(SIGKILL) }
        let stalledAt = ContinuousClock.now
        let finish = ContinuousClock.now + .seconds(30)
        while try await submitter.describe("stalled").run.status.isOpen {
            guard ContinuousClock.now < finish else {
                let run = try await submitter.describe("stalled").run
                Issue.record("""
                    the second worker did not finish the run: lease \(run.leaseOwner ?? "none") until \
                    \(run.leaseExpiresAt.map { "\($0)" } ?? "-"), events \(try await submitter.history("stalled").1.map(\.kind.name)), \
                    second worker: \(second.output)
                    """)
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(ContinuousClock.now - stalledAt >= .milliseconds(700), "taken over before the 1 s lease expired")
        #expect(try await submitter.describe("stalled").outcome.map { if case .completed = $0 { true } else { false } } == true)
        let before = try await submitter.history("stalled").1

        // Resumed, the first worker finds at its next lease renewal that it came late, looks up who
        // drives its runs now, and stops this one: its attempt of st-a (4 s, about 2 s to go) is
        // cancelled at once instead of finishing.
        first.kill(SIGCONT)
        let resumed = ContinuousClock.now
        let cancelled = "cancelled st-a \(first.pid)"
        while !((try? String(contentsOfFile: side, encoding: .utf8)) ?? "").contains(cancelled) {
            guard ContinuousClock.now - resumed < .seconds(1.5) else {
                Issue.record("the first worker did not cancel the attempt of the run it lost: \(first.output)")
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await submitter.history("stalled").1 == before, "the stalled worker wrote to a run it no longer holds")
        #expect(first.process.isRunning, "the stalled worker crashed: \(first.output)")

        let records = sideRecords(side)
        #expect(records.filter { $0.label == "st-a" }.map(\.pid) == [first.pid, second.pid])
        #expect(records.filter { $0.pid == first.pid }.map(\.label) == ["st-a"], "the first worker went on with the run")
        checkAttempts(records, before, run: "stalled")
        let lost = before.filter { $0.kind == .activityAttemptFailed }
        #expect(lost.map { $0.failure?.type } == ["WorkerLost"])
        second.kill(SIGTERM)
        _ = try await second.wait()
        await submitter.shutdown()
    }
}
