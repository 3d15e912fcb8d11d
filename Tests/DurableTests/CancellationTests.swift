import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Works on a long activity; when cancelled, runs a cleanup activity and ends as cancelled.
struct LongClaim: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        do {
            _ = try await ctx.execute(Slow.self, input)
            return "done"
        } catch is CancellationError {
            _ = try await ctx.withoutCancellation { try await ctx.execute(Slow.self, 1) }
            throw CancellationError()
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct CancellationTests {
    func engine(_ path: String) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path))
        engine.register(LongClaim.self)
        engine.register(Slow())
        registerTestWorkflows(engine)
        return engine
    }

    @Test func cancelledWorkflowCleansUpAndEndsAsCancelled() async throws {
        let engine = try await engine(temporaryJournalPath())
        let run = try await engine.start(LongClaim.self, input: 30_000, id: "long")
        try await eventually("the activity's start") { try await engine.describe("long").activities.count == 1 }
        try await engine.cancel("long", reason: "customer withdrew the claim")
        await #expect { _ = try await run.result() } throws: { error in
            (error as? WorkflowFailure)?.cause.type == "Cancelled"
                && (error as? WorkflowFailure)?.cause.message == "customer withdrew the claim"
        }
        let described = try await engine.describe("long")
        #expect(described.run.status == .cancelled)
        let kinds = try await engine.history(run.runID).1.map(\.kind)
        #expect(kinds.contains(.workflowCancelRequested))
        #expect(kinds.contains(.activityCancelRequested) && kinds.contains(.activityCancelled))
        #expect(kinds.filter { $0 == .activityCompleted }.count == 1, "the cleanup activity ran")
        #expect(kinds.last == .workflowCancelled)
        #expect(try await engine.replay(run.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func terminateEndsARunAtOnceWithItsReason() async throws {
        let engine = try await engine(temporaryJournalPath())
        let run = try await engine.start(LongClaim.self, input: 30_000)
        try await eventually("the activity's start") { try await engine.describe(run.runID).activities.count == 1 }
        let started = ContinuousClock.now
        try await engine.terminate(run.runID, reason: "duplicate submission")
        #expect(try await engine.outcome(of: run.runID) == .terminated("duplicate submission"))
        #expect(ContinuousClock.now - started < .seconds(10), "ended at once, not after the 30 s activity")
        let events = try await engine.history(run.runID).1
        #expect(events.last?.kind == .workflowTerminated)
        #expect(try await engine.describe(run.runID).run.status == .terminated)
        await #expect(throws: JournalError.self) { try await engine.signal(run.runID, name: "x", "late") }
        await engine.shutdown()
    }

    @Test func theCLITerminatesARunNoWorkerDrivesAndCancelsOneAWorkerDrives() async throws {
        let worker = try productPath("durable-test-worker")
        let durable = try productPath("durable")
        let journal = temporaryJournalPath()
        // A run left open by a killed worker: terminated in the journal directly.
        let first = try Child(worker, ["run", "Gather", "--input", "5", "--id", "orphan", "--journal", journal])
        let inspector = try await waitForRunning("orphan", journal: journal)
        first.kill(SIGKILL)
        _ = try await first.wait()
        let terminated = try await runCommand(
            durable, ["terminate", "orphan", "--reason", "abandoned", "--journal", journal])
        #expect(terminated.status == 0, "\(terminated.stderr)")
        #expect(try await inspector.describe("orphan").run.status == .terminated)
        #expect(try await inspector.history("orphan").1.last?.kind == .workflowTerminated)
        let again = try await runCommand(durable, ["terminate", "orphan", "--reason", "x", "--journal", journal])
        #expect(again.status == 2 && again.stderr.contains("is terminated; terminations go to open runs only"))

        // A run a worker drives: the worker delivers the cancellation; Gather has no cleanup.
        let second = try Child(worker, ["worker", "--quiet", "--journal", journal])
        defer { second.kill(SIGKILL) }
        let submitted = try await runCommand(
            durable, ["submit", "Gather", "--input", "5", "--id", "drives", "--journal", journal])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        _ = try await waitForRunning("drives", journal: journal)
        let cancelled = try await runCommand(durable, ["cancel", "drives", "--journal", journal])
        #expect(cancelled.status == 0 && cancelled.stdout.contains("cancellation requested for run"))
        let deadline = ContinuousClock.now + .seconds(20)
        while try await inspector.describe("drives").run.status.isOpen, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(try await inspector.describe("drives").run.status == .cancelled)
    }
}
