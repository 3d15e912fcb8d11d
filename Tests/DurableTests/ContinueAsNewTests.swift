import Durable
import DurableJournal
import Foundation
import Testing

/// Runs one activity per run and continues as new until the counter reaches 3; reports how long
/// each run's history was when it decided.
struct Relay: Workflow {
    struct State: Codable, Sendable {
        var count: Int
        var lengths: [Int] = []
    }

    func run(_ ctx: WorkflowContext, input: State) async throws -> State {
        _ = try await ctx.execute(Slow.self, 60)
        var next = input
        next.lengths.append(ctx.historyLength)
        guard input.count >= 3 else {
            next.count += 1
            throw ctx.continueAsNew(with: next)
        }
        return next
    }
}

@Suite(.timeLimit(.minutes(2))) struct ContinueAsNewTests {
    func engine(_ path: String) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path))
        engine.register(Relay.self)
        engine.register(Slow())
        return engine
    }

    @Test func aRunContinuesAsNewWithAFreshHistoryUnderTheSameWorkflowID() async throws {
        let engine = try await engine(temporaryJournalPath())
        let first = try await engine.start(Relay.self, input: .init(count: 0), id: "counter")
        let final = try await first.result()
        #expect(final.count == 3)
        // Every run's history is as short as the first one's: nothing accumulates.
        #expect(final.lengths.count == 4 && Set(final.lengths).count == 1)
        let runs = try await engine.runs().filter { $0.workflowID == "counter" }
        #expect(runs.map(\.status).sorted { $0.rawValue < $1.rawValue }
            == [.completed, .continuedAsNew, .continuedAsNew, .continuedAsNew])
        let firstHistory = try await engine.history(first.runID).1
        #expect(firstHistory.last?.kind == .workflowContinuedAsNew)
        #expect(try await engine.describe("counter").run.status == .completed, "the workflow ID names the newest run")
        #expect(try await engine.replay(first.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func theNextRunSurvivesARestartRightAfterTheContinuation() async throws {
        let path = temporaryJournalPath()
        let first = try await engine(path)
        let run = try await first.start(Relay.self, input: .init(count: 0), id: "counter")
        try await Task.sleep(for: .milliseconds(90))  // the first run has continued, the second is in flight
        await first.shutdown()

        let second = try await engine(path)
        try await second.recover()
        var outcome = try await second.outcome(of: run.runID)
        while case .continuedAsNew(let next) = outcome { outcome = try await second.outcome(of: next) }
        guard case .completed(let data) = outcome else {
            Issue.record("the chain did not complete: \(outcome)")
            return
        }
        #expect(try JSONDecoder().decode(Relay.State.self, from: data).count == 3)
        await second.shutdown()
    }
}
