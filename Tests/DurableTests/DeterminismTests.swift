import Durable
import DurableTestSupport
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct DeterminismTests {
    /// Records a run of a workflow with eight parallel branches (whose labels come from the recorded
    /// random seed) in a worker process, then replays it 100 times here and 4 times in other processes:
    /// every replay must make the same decisions in the same order, with the same payloads.
    @Test func parallelBranchesReplayToIdenticalDecisionsInAndAcrossProcesses() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath()
        let recorder = try Child(
            worker, ["run", "Shuffle", "--input", "8", "--id", "shuffle", "--journal", journal], environment: ["STEP_MS": "1"])
        let exit = try await recorder.wait()
        try #require(exit.status == 0, "recording run failed: \(recorder.output)")

        let engine = try await Engine(journal: JournalConfiguration(journal, createIfMissing: false))
        registerTestWorkflows(engine)
        let reference = try await engine.replay("shuffle")
        #expect(reference.mismatch == nil)
        #expect(reference.decisions.count == 8 * 2 + 1)
        for _ in 0..<100 {
            let again = try await engine.replay("shuffle")
            #expect(again.mismatch == nil)
            #expect(again.decisions == reference.decisions)
        }
        for _ in 0..<4 {
            let child = try Child(worker, ["replay", "shuffle", "--json", "--journal", journal])
            #expect(try await child.wait().status == 0)
            let object = try JSONSerialization.jsonObject(with: Data(child.output.utf8)) as? [String: Any]
            #expect(object?["decisions"] as? [String] == reference.decisions)
        }
    }

    /// The same event sequence delivered live twice gives the same commands: two runs of a workflow
    /// whose branches all complete in one fixed order record identical decisions.
    @Test func liveRunsOfTheSameWorkflowRecordTheSameDecisionSequence() async throws {
        var traces: [[String]] = []
        for _ in 0..<2 {
            let path = temporaryJournalPath()
            let engine = try await Engine(journal: JournalConfiguration(path, durability: .fast))
            engine.register(Ordered.self)
            engine.register(Echo())
            let run = try await engine.start(Ordered.self, input: 6)
            _ = try await run.result()
            let (_, events) = try await engine.history(run.runID)
            traces.append(events.filter { $0.kind.isCommand }.map { "\($0.kind.name) \($0.seq) \($0.name ?? "")" })
            await engine.shutdown()
        }
        #expect(traces[0] == traces[1])
        #expect(traces[0].count == 6 + 1 + 1)
    }
}

struct Echo: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int { input }
}

/// Branches that each run one activity, then one after all: the commands' order depends only on the
/// executor's scheduling of the group's children.
struct Ordered: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<input { group.addTask { try await ctx.execute(Echo.self, i) } }
            return try await group.reduce(0, +)
        }
        return try await ctx.execute(Echo.self, sum)
    }
}
