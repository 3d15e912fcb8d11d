import Durable
import DurableJournal
import Foundation
import Testing

/// Files mail one message per run, continuing as new after each: signals queued for the run move to
/// the next run.
struct Mailroom: Workflow {
    func run(_ ctx: WorkflowContext, input: [String]) async throws -> [String] {
        let mail = try await ctx.waitForSignal(String.self, named: "mail")
        let filed = input + [mail]
        if filed.count < 3 { throw ctx.continueAsNew(with: filed) }
        return filed
    }
}

/// A saga whose second step waits on a long activity; cancelled there, it must still compensate.
struct HoldAndWait: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let saga = Saga(ctx)
        return try await saga.run {
            _ = try await ctx.execute(Slow.self, 1)
            saga.addCompensation(Slow.self, 2)  // the undo: a 2 ms activity
            _ = try await ctx.execute(Slow.self, 30_000)
            return "done"
        }
    }
}

/// Answers a query from the clock and randomness, which must not disturb the run.
struct Clocked: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        ctx.setQueryHandler("when") { "\(ctx.now.timeIntervalSince1970 > 0) \(ctx.uuid().uuidString.count)" }
        let first = ctx.uuid()
        let signal = try await ctx.waitForSignal(String.self, named: "go")
        return "\(signal) \(first)"
    }
}

@Suite(.timeLimit(.minutes(2))) struct PrimitiveInteractionTests {
    func engine() async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(Mailroom.self)
        engine.register(HoldAndWait.self)
        engine.register(Clocked.self)
        engine.register(Slow())
        return engine
    }

    @Test func signalsQueuedForARunThatContinuesAsNewGoToTheNextRun() async throws {
        let engine = try await engine()
        let run = try await engine.start(Mailroom.self, input: [], id: "mailroom")
        for letter in ["a", "b", "c"] { try await engine.signal("mailroom", name: "mail", letter) }
        #expect(try await run.result() == ["a", "b", "c"])
        await engine.shutdown()
    }

    @Test func aCancelledSagaStillCompensates() async throws {
        let engine = try await engine()
        let run = try await engine.start(HoldAndWait.self, input: "x")
        let deadline = ContinuousClock.now + .seconds(20)
        while try await engine.history(run.runID).1.filter({ $0.kind == .activityScheduled }).count < 2,
            ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(10))
        }
        try await engine.cancel(run.runID)
        await #expect(throws: WorkflowFailure.self) { _ = try await run.result() }
        let history = try await engine.history(run.runID).1
        let scheduled = history.filter { $0.kind == .activityScheduled }.compactMap {
            $0.data.flatMap { try? JSONDecoder().decode(Int.self, from: $0) }
        }
        #expect(scheduled == [1, 30_000, 2], "the undo ran after the cancellation")
        #expect(try await engine.describe(run.runID).run.status == .cancelled)
        await engine.shutdown()
    }

    @Test func aQueryThatReadsTheClockAndRandomnessLeavesTheRunAlone() async throws {
        let engine = try await engine()
        let run = try await engine.start(Clocked.self, input: "x")
        let answer = try await engine.query(run.runID, name: "when")
        #expect(String(decoding: answer, as: UTF8.self) == #""true 36""#)
        _ = try await engine.query(run.runID, name: "when")
        try await engine.signal(run.runID, name: "go", "ok")
        let result = try await run.result()
        #expect(result.hasPrefix("ok "))
        #expect(try await engine.replay(run.runID).mismatch == nil, "the query did not move the random sequence")
        await engine.shutdown()
    }

    @Test func reservedSignalNamesAreRefused() async throws {
        let engine = try await engine()
        let run = try await engine.start(Clocked.self, input: "x")
        await #expect(throws: DurableError.self) { try await engine.signal(run.runID, name: "durable.terminate", "x") }
        #expect(try await engine.describe(run.runID).run.status == .running)
        await engine.shutdown()
    }
}
