import Durable
import DurableTestSupport
import Foundation
import Testing

/// Reports its stage through a query while it works and waits for a review.
struct Staged: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        var stage = "received"
        ctx.setQueryHandler("stage") { stage }
        _ = try await ctx.execute(Slow.self, 50)
        stage = "waiting for review"
        let reviewer = try await ctx.waitForSignal(String.self, named: "review")
        stage = "approved by \(reviewer)"
        return stage
    }
}

@Suite(.timeLimit(.minutes(2))) struct QueryTests {
    @Test func queryAnswersFromTheLiveRunAndFromAReplayAndIsNeverRecorded() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(Staged.self)
        engine.register(Slow())
        let run = try await engine.start(Staged.self, input: "claim", id: "claim-9")
        let deadline = ContinuousClock.now + .seconds(10)
        var stage = ""
        while stage != #""waiting for review""#, ContinuousClock.now < deadline {
            stage = String(decoding: try await engine.query("claim-9", name: "stage"), as: UTF8.self)
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(stage == #""waiting for review""#)
        // The live run answers as soon as it has moved on, which can be before the activity's result
        // is committed (seen on PostgreSQL under load): count the events once it is.
        try await eventually("the activity's result committed") {
            try await engine.history(run.runID).1.contains { $0.kind == .activityCompleted }
        }
        let eventsBefore = try await engine.history(run.runID).1.count
        _ = try await engine.query(run.runID, name: "stage")
        #expect(try await engine.history(run.runID).1.count == eventsBefore, "a query records nothing")

        try await engine.signal(run.runID, name: "review", "ana")
        #expect(try await run.result() == "approved by ana")
        // The run has ended: the answer comes from a replay of its history.
        #expect(try await engine.query(run.runID, name: "stage") == Data(#""approved by ana""#.utf8))
        await #expect { _ = try await engine.query(run.runID, name: "owner") } throws: { error in
            "\(error)".contains("has no query 'owner'; it answers: stage")
        }
        await engine.shutdown()
    }

    @Test func theCLIAnswersAQueryFromAnotherProcess() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath()
        let child = try Child(worker, ["run", "Gather", "--input", "2", "--id", "gather", "--journal", journal])
        defer { child.kill(SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(20)
        let inspector = try await waitForRunning("gather", journal: journal)
        try await inspector.signal("gather", name: "item", "a")
        while try await inspector.history("gather").1.filter({ $0.kind == .signalReceived }).isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        // A run submitted and not picked up yet answers too (from its first activation).
        let pendingEngine = try await Engine(journal: JournalConfiguration(journal, createIfMissing: false))
        _ = try await pendingEngine.submit(workflowType: "Gather", input: Data("1".utf8), id: "waiting")
        let pending = try await runCommand(worker, ["query", "waiting", "items", "--journal", journal])
        #expect(pending.status == 0, "\(pending.stderr)")
        #expect(pending.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
        let answer = try await runCommand(worker, ["query", "gather", "items", "--journal", journal])
        #expect(answer.status == 0, "\(answer.stderr)")
        #expect(answer.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == #"["a"]"#)
        let unknown = try await runCommand(worker, ["query", "gather", "nope", "--journal", journal])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("has no query 'nope'; it answers: items"))
    }
}
