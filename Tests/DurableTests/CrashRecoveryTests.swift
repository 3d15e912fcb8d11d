import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where the first worker process is killed.
enum KillPoint: CustomStringConvertible, Sendable {
    /// The activity with this label SIGKILLs its own process while running.
    case insideActivity(String)
    /// The test SIGKILLs the process once `records` activity attempts have started, after `delayMs`.
    case afterRecords(Int, delayMs: Int)

    var description: String {
        switch self {
        case .insideActivity(let label): "inside \(label)"
        case .afterRecords(let n, let delay): "after \(n) started steps + \(delay) ms"
        }
    }

    static let labels = ["k-a", "k-side", "k-b1x", "k-b2x", "k-b3x", "k-b1y", "k-b2y", "k-b3y", "k-z"]

    /// 9 kill points inside activities and 18 between and around them.
    static let all: [KillPoint] =
        labels.map { .insideActivity($0) }
        + (1...9).flatMap { n in [KillPoint.afterRecords(n, delayMs: 0), .afterRecords(n, delayMs: 9)] }
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct CrashRecoveryTests {
    static let expected = "k-a!,k-side!,k-b1x!k-b1y!,k-b2x!k-b2y!,k-b3x!k-b3y!,k-z! #8"

    /// A worker runs a nine-activity workflow with parallel branches and is SIGKILLed; a second
    /// worker recovers the run. The result must be right, and no activity whose completion the
    /// journal recorded before the kill may run again.
    @Test(arguments: KillPoint.all)
    func sigkilledWorkerResumesWithoutRerunningCompletedActivities(_ point: KillPoint) async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath("crash")
        let side = temporaryPath("side")
        var environment = ["SIDE_FILE": side, "STEP_MS": "50"]
        if case .insideActivity(let label) = point { environment["KILL_IN"] = label }

        let first = try Child(
            worker, ["run", "CrashFlow", "--input", #"{"tag":"k"}"#, "--id", "crash", "--journal", journal],
            environment: environment)
        if case .afterRecords(let n, let delay) = point {
            let deadline = ContinuousClock.now + .seconds(20)
            while sideRecords(side).count < n, first.process.isRunning, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
            }
            if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
            first.kill(SIGKILL)
        }
        let exit = try await first.wait()
        try #require(exit.reason == .uncaughtSignal && exit.status == SIGKILL,
                     "first worker was not SIGKILLed (\(point)): \(first.output)")

        let inspector = try await Engine(journal: JournalConfiguration(journal, createIfMissing: false))
        let before = try await inspector.history("crash")
        #expect(before.0.status == .running)
        let completedBeforeKill = completedLabels(before.1)

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal], environment: ["SIDE_FILE": side, "STEP_MS": "50"])
        let deadline = ContinuousClock.now + .seconds(20)
        while try await inspector.describe("crash").run.status.isOpen {
            guard ContinuousClock.now < deadline, second.process.isRunning else {
                Issue.record("run did not complete after restart (\(point)): \(second.output)")
                second.kill(SIGKILL)
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        second.kill(SIGTERM)
        let stopped = try await second.wait()
        #expect(stopped.reason == .exit && stopped.status == 0, "worker did not stop cleanly: \(second.output)")

        let description = try await inspector.describe("crash")
        #expect(description.outcome == .completed(Data("\"\(Self.expected)\"".utf8)))
        let records = sideRecords(side)
        let rerun = Set(records.filter { $0.pid == second.pid }.map(\.label)).intersection(completedBeforeKill)
        #expect(rerun.isEmpty, "activities completed before the kill ran again: \(rerun.sorted()) (\(point))")
        #expect(Set(records.map(\.label)) == Set(KillPoint.labels))
        let (_, after) = try await inspector.history("crash")
        if case .insideActivity(let label) = point {
            // The killed attempt never completed, so it runs again: with the next attempt number and
            // the same idempotency key, after a WorkerLost record for the attempt cut off.
            let attempts = records.filter { $0.label == label }
            #expect(attempts.map(\.attempt) == [1, 2])
            #expect(attempts.map(\.pid) == [first.pid, second.pid])
            #expect(Set(attempts.map(\.key)).count == 1)
            let seq = try #require(after.first {
                $0.kind == .activityScheduled && $0.data.flatMap { try? JSONDecoder().decode(String.self, from: $0) } == label
            }?.seq)
            let lost = after.filter { $0.kind == .activityAttemptFailed && $0.seq == seq }
            #expect(lost.map(\.attempt) == [1])
            #expect(lost.first?.failure?.type == "WorkerLost")
            #expect(attempts.first?.key == "\(before.0.runID)/\(seq)")
        }
        // Every attempt recorded as lost belongs to an activity that had not completed at the kill.
        let scheduled = Dictionary(after.filter { $0.kind == .activityScheduled }.map { ($0.seq, $0) }) { a, _ in a }
        for event in after where event.kind == .activityAttemptFailed {
            #expect(event.failure?.type == "WorkerLost")
            let label = scheduled[event.seq]?.data.flatMap { try? JSONDecoder().decode(String.self, from: $0) }
            #expect(label.map { !completedBeforeKill.contains($0) } == true)
        }
        #expect(completedLabels(after) == Set(KillPoint.labels))
        #expect(after.map(\.index) == Array(0..<after.count))
    }

    /// A worker is SIGKILLed in the middle of a long activity that heartbeats its progress; the
    /// restarted worker's attempt 2 starts after the last heartbeat the journal recorded, with the
    /// same idempotency key.
    @Test func attemptAfterACrashResumesFromTheLastRecordedHeartbeat() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath("chunks")
        let side = temporaryPath("side")
        let first = try Child(
            worker, ["run", "ChunkFlow", "--input", "30", "--id", "chunks", "--journal", journal],
            environment: ["SIDE_FILE": side])
        let deadline = ContinuousClock.now + .seconds(20)
        while !sideRecords(side).contains(where: { $0.label == "chunk-3" }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let inspector = try await Engine(journal: JournalConfiguration(journal, createIfMissing: false))
        while try await !inspector.history("chunks").1.contains(where: { $0.kind == .activityHeartbeat }) {
            try #require(ContinuousClock.now < deadline, "no heartbeat was journaled: \(first.output)")
            try await Task.sleep(for: .milliseconds(5))
        }
        first.kill(SIGKILL)
        _ = try await first.wait()
        let beats = try await inspector.history("chunks").1.filter { $0.kind == .activityHeartbeat }
        let recorded = try #require(beats.last?.data.flatMap { try? JSONDecoder().decode(Int.self, from: $0) })
        let worked = sideRecords(side).filter { $0.attempt == 1 }.count
        #expect(recorded >= 1 && recorded <= worked && worked < 30, "killed mid-activity, after \(recorded) recorded")

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal], environment: ["SIDE_FILE": side])
        while try await inspector.describe("chunks").run.status.isOpen {
            guard ContinuousClock.now < deadline + .seconds(20), second.process.isRunning else {
                second.kill(SIGKILL)
                Issue.record("run did not complete after restart: \(second.output)")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        second.kill(SIGTERM)
        _ = try await second.wait()
        #expect(try await inspector.describe("chunks").outcome == .completed(Data(#""30 chunks, resumed after \#(recorded)""#.utf8)))
        let records = sideRecords(side)
        let retried = records.filter { $0.attempt == 2 }
        #expect(retried.map(\.label) == ((recorded + 1)...30).map { "chunk-\($0)" })
        #expect(Set(retried.map(\.pid)) == [second.pid])
        #expect(Set(records.map(\.key)).count == 1, "one idempotency key across attempts")
        let lost = try await inspector.history("chunks").1.filter { $0.kind == .activityAttemptFailed }
        #expect(lost.map(\.attempt) == [1])
        #expect(lost.first?.failure?.type == "WorkerLost")
    }

    /// A worker with a process pool is SIGKILLed while one of its two Python processes is busy: no
    /// process outlives it for long. The idle one reads EOF on stdin and exits; the busy one fails to
    /// write its answer and exits.
    @Test func processPoolWorkersDoNotOutliveAKilledWorker() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath("orphans")
        let pids = temporaryPath("pids")
        let environment = ["TEST_PROCESS_POOL": "1", "PID_FILE": pids]
        func started() -> [Int32] { pidsWritten(pids) }
        /// Running, not a zombie waiting for whoever adopted it to reap it.
        func running(_ pid: Int32) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")") else { return false }
            return !stat[close...].hasPrefix(") Z")
        }
        let first = try Child(worker, ["worker", "--quiet", "--journal", journal], environment: environment)
        let submitted = try await runCommand(worker, [
            "submit", "ModelCallFlow", "--input", #"{"op":"sleep","ms":3000}"#, "--id", "busy", "--journal", journal,
        ])
        try #require(submitted.status == 0, "\(submitted.stderr)")
        let inspector = try await Engine(journal: JournalConfiguration(journal, createIfMissing: false))
        let deadline = ContinuousClock.now + .seconds(20)
        while started().count < 2 ? true : try await inspector.describe("busy").activities.first?.state != .pending {
            try #require(ContinuousClock.now < deadline, "the pool did not warm or the call did not start: \(first.output)")
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(500))  // the request reaches the busy process
        first.kill(SIGKILL)
        _ = try await first.wait()
        let killed = ContinuousClock.now
        var idleGoneAfter: Duration?
        while ContinuousClock.now - killed < .seconds(10) {
            let alive = started().filter(running)
            if idleGoneAfter == nil, alive.count < 2 { idleGoneAfter = ContinuousClock.now - killed }
            if alive.isEmpty { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(started().filter(running).isEmpty, "a Python process outlived the killed worker")
        #expect((idleGoneAfter ?? .seconds(99)) < .seconds(2), "the idle process exited on EOF at once")
    }
}
