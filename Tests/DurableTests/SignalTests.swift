import Durable
import DurableJournal
import DurableTestSupport
import DurableTesting
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Waits for a "decision" signal, at most `input` milliseconds.
struct Approval: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        do {
            let reviewer = try await ctx.waitForSignal(String.self, named: "decision", timeout: .milliseconds(input))
            return "approved by \(reviewer)"
        } catch is WorkflowTimeout {
            return "timed out"
        }
    }
}

/// Runs an activity first, then takes `input` "n" signals (which may have arrived meanwhile).
struct CollectAfterWork: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> [Int] {
        _ = try await ctx.execute(Slow.self, 300)
        var values: [Int] = []
        for _ in 0..<input { values.append(try await ctx.waitForSignal(Int.self, named: "n")) }
        return values
    }
}

@Suite(.timeLimit(.minutes(2))) struct SignalTests {
    func engine(_ path: String = temporaryJournalPath(#function)) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path))
        engine.register(Approval.self)
        engine.register(CollectAfterWork.self)
        engine.register(Slow())
        registerTestWorkflows(engine)
        return engine
    }

    @Test func signalWakesAWaitingWorkflowAndIsJournaledOnce() async throws {
        let engine = try await engine()
        let run = try await engine.start(Approval.self, input: 10_000, id: "claim-7")
        try await eventually("the run waits for its signal") {
            try await engine.describe("claim-7").awaitedSignals == ["decision"]
        }
        #expect(try await engine.signal("claim-7", name: "decision", "ana") == run.runID)
        #expect(try await run.result() == "approved by ana")
        let events = try await engine.history(run.runID).1
        let received = events.filter { $0.kind == .signalReceived }
        #expect(received.map(\.name) == ["decision"])
        #expect(received.first?.data == Data(#""ana""#.utf8))
        #expect(events.contains { $0.kind == .timerCancelled }, "the timeout's timer was cancelled")
        #expect(try await engine.journal.queuedSignals().isEmpty)
        #expect(try await engine.replay(run.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func signalsSentBeforeTheWorkflowWaitsAreKeptInOrder() async throws {
        let engine = try await engine()
        let run = try await engine.start(CollectAfterWork.self, input: 3)
        for n in [1, 2, 3] { try await engine.signal(run.runID, name: "n", n) }
        #expect(try await run.result() == [1, 2, 3])
        #expect(try await engine.history(run.runID).1.filter { $0.kind == .signalReceived }.count == 3)
        #expect(try await engine.replay(run.runID).mismatch == nil)
        await engine.shutdown()
    }

    /// On the test kit's clock: a 48-hour timeout in no time.
    @Test func waitForSignalTimesOutOnADurableTimer() async throws {
        let env = try await TestEnvironment(journal: JournalConfiguration(temporaryJournalPath()))
        env.register(Approval.self)
        let run = try await env.engine.start(Approval.self, input: 48 * 3_600_000)
        #expect(try await run.result() == "timed out")
        #expect(env.skipped > .seconds(47 * 3600), "the clock skipped to the timer")
        #expect(try await env.engine.history(run.runID).1.contains { $0.kind == .timerFired })
        await env.close()
    }

    @Test(.enabled(if: TestBackend.isSQLite, "damages a queued signal in the SQLite file"))
    func aSignalWithAnUnreadablePayloadStaysQueuedAndDoesNotHoldUpOthers() async throws {
        let path = temporaryJournalPath()
        let sender = try await Engine(journal: JournalConfiguration(path))
        _ = try await sender.submit(workflowType: "Gather", input: Data("1".utf8), id: "g-bad")
        _ = try await sender.submit(workflowType: "Gather", input: Data("1".utf8), id: "g-good")
        try await sender.signal("g-bad", name: "item", "spoiled")
        try await sender.signal("g-good", name: "item", "fine")
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in  // flip the last byte of g-bad's signal payload, as a bad disk would
            let row = try #require(try Row.fetchOne(db, sql: """
                SELECT signals.id, signals.data FROM signals JOIN runs ON runs.id = signals.run WHERE runs.workflow_id = 'g-bad'
                """))
            var data: Data = row[1]
            data[data.count - 1] ^= 0xFF
            try db.execute(sql: "UPDATE signals SET data = ? WHERE id = ?", arguments: [data, row[0] as Int64])
        }
        try queue.close()

        let worker = try await engine(path)
        try await worker.recover()
        #expect(try await worker.outcome(of: "g-good") == .completed(Data(#""fine""#.utf8)))
        let bad = try await worker.describe("g-bad")
        #expect(bad.run.status == .running)
        #expect(bad.queuedSignals == ["item"], "still queued, not lost")
        let check = try await worker.journal.check()
        #expect(check.problems.count == 1)
        #expect(check.problems.first?.hasPrefix("run \(bad.run.runID): queued signal ") == true, "\(check.problems)")
        #expect(check.problems.first?.contains("'item' payload unreadable") == true)
        await worker.shutdown()
    }

    @Test func signalsToUnknownOrEndedRunsAreRefused() async throws {
        let engine = try await engine()
        let run = try await engine.start(Approval.self, input: 50)
        _ = try await run.result()
        await #expect { try await engine.signal(run.runID, name: "decision", "late") } throws: { error in
            (error as? JournalError)?.isRunClosed == true
        }
        await #expect(throws: JournalError.self) { try await engine.signal("no-such-run", name: "decision", "x") }
        await #expect(throws: DurableError.self) { try await engine.signal(run.runID, name: "decision", json: Data("{".utf8)) }
        await engine.shutdown()
    }

    /// Signals sent from another process while no worker runs (after a SIGKILL) and while one runs:
    /// each is delivered once, in order.
    @Test func signalsFromTheCLISurviveAWorkerCrashAndAreDeliveredOnce() async throws {
        let worker = try productPath("durable-test-worker")
        let durable = try productPath("durable")
        let journal = temporaryJournalPath()
        let first = try Child(worker, ["run", "Gather", "--input", "3", "--id", "gather", "--journal", journal])
        // One bound for all of it (two worker processes, three CLI processes): 20 s ran out in a
        // fresh-clone run while other jobs held both cores; waiting costs nothing when things are fast.
        let deadline = ContinuousClock.now + .seconds(60)
        let engine = try await waitForRunning("gather", journal: journal)
        let send = { (value: String) in
            try await runCommand(durable, ["signal", "gather", "item", "--input", "\"\(value)\"", "--journal", journal])
        }
        let live = try await send("a")  // delivered by the running worker
        #expect(live.status == 0 && live.stdout.contains("signal 'item' queued for run"), "\(live.stderr)")
        try await eventually("the first signal's delivery", timeout: deadline - .now) {
            try await engine.history("gather").1.filter { $0.kind == .signalReceived }.count >= 1
        }
        first.kill(SIGKILL)
        _ = try await first.wait()
        #expect(try await send("b").status == 0)  // no worker runs: queued in the journal
        #expect(try await engine.journal.queuedSignals().count == 1)

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal])
        defer { second.kill(SIGKILL) }
        try await eventually("the queued signal's delivery", timeout: deadline - .now) {
            try await engine.history("gather").1.filter { $0.kind == .signalReceived }.count >= 2
        }
        #expect(try await send("c").status == 0)
        try await eventually("the run's end", timeout: deadline - .now) {
            try await !engine.describe("gather").run.status.isOpen
        }
        #expect(try await engine.describe("gather").outcome == .completed(Data(#""a,b,c""#.utf8)))
        let received = try await engine.history("gather").1.filter { $0.kind == .signalReceived }
        #expect(received.count == 3)
        #expect(try await engine.journal.queuedSignals().isEmpty)
        let ended = try await runCommand(durable, ["signal", "gather", "item", "--input", "\"d\"", "--journal", journal])
        #expect(ended.status == 2)
        #expect(ended.stderr.contains("is completed; signals go to open runs only"))
    }
}
