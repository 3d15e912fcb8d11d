import Durable
import DurableJournal
import DurableTesting
import Foundation
import Testing

/// Branches started together issue their commands in the order the workflow's executor runs them,
/// which the code's text does not fix. Histories recorded by one version must replay on the next, so
/// that order is part of Durable's compatibility: a change to the executor or to the context's own
/// `async` layers that reorders branches breaks every recorded run with concurrent branches. These
/// tests make such a change fail here, not in a user's upgrade.
@Suite(.timeLimit(.minutes(2))) struct InterleavingTests {
    var recorded: URL {
        get throws {
            try #require(Bundle.module.url(forResource: "interleaving", withExtension: "json", subdirectory: "Histories"))
        }
    }

    /// The inputs of the activities scheduled first, in sequence order.
    func firstInputs(_ events: [HistoryEvent]) -> [String] {
        events.filter { $0.kind == .activityScheduled && $0.seq <= 5 }.sorted { $0.seq < $1.seq }
            .map { String(decoding: $0.data ?? Data(), as: UTF8.self) }
    }

    static let textOrder = [#""x-left""#, #""x-right""#, #""x-a""#, #""x-b""#, #""x-c""#]

    /// What the code decided when the history was recorded. Replay checks each command's kind, type
    /// and sequence number against the history, not its input (as Temporal's does not), so branches
    /// that swapped places would replay without a mismatch, each handed the other's result; the
    /// payload digests here catch that.
    static let recordedDecisions = [
        "ActivityScheduled(seq 1, LookUp) payload#5c928b2b", "ActivityScheduled(seq 2, LookUp) payload#6c8522",
        "ActivityScheduled(seq 3, LookUp) payload#e4e89cbd", "ActivityScheduled(seq 4, LookUp) payload#72e12d82",
        "ActivityScheduled(seq 5, LookUp) payload#54e33cdf", "TimerStarted(seq 6) payload#8b977301",
        "TimerStarted(seq 7) payload#8b977301", "TimerStarted(seq 8) payload#8b977301",
        "ActivityScheduled(seq 9, LookUp) payload#646c9ebd", "ActivityScheduled(seq 10, LookUp) payload#f2652f82",
        "ActivityScheduled(seq 11, LookUp) payload#d4673edf", "WorkflowCompleted payload#f3919791",
    ]

    @Test func aHistoryRecordedByAnEarlierVersionReplaysToTheSameDecisions() throws {
        let report = try assertReplays(history: try recorded, workflow: Interleaving.self)
        #expect(report.eventCount == 24)
        #expect(report.decisions == Self.recordedDecisions)
        let (_, events) = try HistoryExport.read(from: try recorded.path).decoded(path: try recorded.path)
        #expect(firstInputs(events) == Self.textOrder, "recorded: async let first, then the group's tasks as added")
    }

    @Test func aLiveRunIssuesTheBranchesInTheRecordedOrder() async throws {
        let env = try await TestEnvironment()
        env.register(Interleaving.self)
        env.stub(LookUp.self) { input in input.uppercased() }
        let run = try await env.engine.start(Interleaving.self, input: "x")
        let result = try await run.result()  // the group's in the order its branches finished
        #expect(result.prefix(2) == ["X-LEFT", "X-RIGHT"] && result.dropFirst(2).sorted() == ["X-A", "X-B", "X-C"], "\(result)")
        let (_, events) = try await env.engine.history(run.runID)
        #expect(firstInputs(events) == Self.textOrder)
        await env.close()
    }
}
