import Durable
import DurableTestSupport
import Foundation
import GRDB
import Synchronization
import Testing

// Version 1 of a workflow, and three changed versions registered under the same name.
struct TwoSteps: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let upper = try await ctx.execute(Transform.self, input)
        let count = try await ctx.execute(Measure.self, upper)
        return "\(upper):\(count)"
    }
}

struct TwoStepsReordered: Workflow {
    static let name = "TwoSteps"
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let count = try await ctx.execute(Measure.self, input)
        let upper = try await ctx.execute(Transform.self, input)
        return "\(upper):\(count)"
    }
}

struct TransformV2: Activity {
    func run(_ ctx: ActivityContext, input: String) async throws -> String { input.uppercased() }
}

struct TwoStepsRenamed: Workflow {
    static let name = "TwoSteps"
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let upper = try await ctx.execute(TransformV2.self, input)
        let count = try await ctx.execute(Measure.self, upper)
        return "\(upper):\(count)"
    }
}

struct TwoStepsExtra: Workflow {
    static let name = "TwoSteps"
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let upper = try await ctx.execute(Transform.self, input)
        let count = try await ctx.execute(Measure.self, upper)
        _ = try await ctx.execute(Transform.self, "audit")
        return "\(upper):\(count)"
    }
}

/// Blocks until the test opens its gate; honours cancellation (so that engine shutdown ends it).
struct Gated: Activity {
    static let gates = Mutex<[String: Bool]>([:])
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        while Self.gates.withLock({ $0[input] }) != true {
            try await Task.sleep(for: .milliseconds(5))
        }
        return input
    }
}

struct GatedFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let first = try await ctx.execute(Gated.self, input)
        return try await ctx.execute(Transform.self, first)
    }
}

/// The same name, but the code now runs Measure first: replay of an open run cannot match.
struct GatedFlowChanged: Workflow {
    static let name = "GatedFlow"
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let n = try await ctx.execute(Measure.self, input)
        return try await ctx.execute(Transform.self, "\(n)")
    }
}

struct Transformer: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        try await ctx.execute(Transform.self, input)
    }
}

struct OtherGatedFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        try await ctx.execute(Gated.self, input)
    }
}

@Suite(.timeLimit(.minutes(2))) struct ReplayTests {
    func recordTwoSteps() async throws -> (path: String, runID: String) {
        let path = temporaryJournalPath()
        let engine = try await makeEngine(path)
        engine.register(TwoSteps.self)
        let run = try await engine.start(TwoSteps.self, input: "abc")
        #expect(try await run.result() == "ABC:3")
        await engine.shutdown()
        return (path, run.runID)
    }

    func replay<W: Workflow>(_ path: String, _ runID: String, with workflow: W.Type) async throws -> ReplayReport {
        let engine = try await makeEngine(path)
        engine.register(TransformV2())
        engine.register(workflow)
        return try await engine.replay(runID)
    }

    @Test func unchangedCodeReplaysCleanly() async throws {
        let (path, runID) = try await recordTwoSteps()
        let report = try await replay(path, runID, with: TwoSteps.self)
        #expect(report.mismatch == nil)
        #expect(report.eventCount == 6)
    }

    @Test func reorderedActivitiesAreReportedWithEventIndex() async throws {
        let (path, runID) = try await recordTwoSteps()
        let mismatch = try #require(try await replay(path, runID, with: TwoStepsReordered.self).mismatch)
        #expect(mismatch.isNonDeterminism)
        #expect(mismatch.description == "non-determinism in run \(runID) at event 1: history recorded "
            + "ActivityScheduled(seq 1, Transform), the code did ActivityScheduled(seq 1, Measure)")
    }

    @Test func renamedActivityIsReported() async throws {
        let (path, runID) = try await recordTwoSteps()
        let mismatch = try #require(try await replay(path, runID, with: TwoStepsRenamed.self).mismatch)
        #expect(mismatch.description.contains("at event 1: history recorded ActivityScheduled(seq 1, Transform), "
            + "the code did ActivityScheduled(seq 1, TransformV2)"))
    }

    @Test func extraActivityIsReported() async throws {
        let (path, runID) = try await recordTwoSteps()
        let mismatch = try #require(try await replay(path, runID, with: TwoStepsExtra.self).mismatch)
        #expect(mismatch.description.contains("at event 5: history recorded WorkflowCompleted, "
            + "the code did ActivityScheduled(seq 3, Transform)"))
    }

    /// Two runs are left open by a stopped worker; the code of one type changes incompatibly. On
    /// restart, that run is held with the mismatch while the other completes; once the original
    /// code is back, the held run resumes and completes too.
    @Test func recoveryHoldsTheMismatchedRunAndContinuesOthers() async throws {
        let path = temporaryJournalPath()
        let first = try await makeEngine(path)
        first.register(GatedFlow.self)
        first.register(OtherGatedFlow.self)
        first.register(Gated())
        let changed = try await first.start(GatedFlow.self, input: "gate-a", id: "changed")
        let other = try await first.start(OtherGatedFlow.self, input: "gate-b", id: "other")
        try await Task.sleep(for: .milliseconds(50))
        await first.shutdown()
        #expect(try await first.describe("changed").run.status == .running)

        Gated.gates.withLock { $0["gate-a"] = true; $0["gate-b"] = true }
        let second = try await makeEngine(path)
        second.register(GatedFlowChanged.self)
        second.register(OtherGatedFlow.self)
        second.register(Gated())
        let report = try await second.recover()
        let reason = try #require(report.held[changed.runID])
        #expect(reason.contains("non-determinism in run \(changed.runID) at event 1"))
        #expect(reason.contains("history recorded ActivityScheduled(seq 1, Gated), the code did ActivityScheduled(seq 1, Measure)"))
        #expect(report.resumed == [other.runID])
        #expect(try await second.outcome(of: other.runID) == .completed(Data(#""gate-b""#.utf8)))
        let held = try await second.describe("changed").run
        #expect(held.status == .held)
        #expect(held.error == reason)
        await second.shutdown()

        let third = try await gatedEngine(path)
        let fixed = try await third.recover()
        #expect(fixed.resumed == [changed.runID])
        #expect(try await third.outcome(of: changed.runID) == .completed(Data(#""GATE-A""#.utf8)))
        await third.shutdown()
    }

    /// An engine with the gated workflow registered.
    func gatedEngine(_ path: String) async throws -> Engine {
        let engine = try await makeEngine(path)
        engine.register(GatedFlow.self)
        engine.register(Gated())
        return engine
    }

    /// Starts a gated run and stops the engine while the run waits at its closed gate.
    func leaveOpenRun(_ path: String, gate: String) async throws -> String {
        let engine = try await gatedEngine(path)
        let run = try await engine.start(GatedFlow.self, input: gate)
        try await Task.sleep(for: .milliseconds(30))
        await engine.shutdown()
        return run.runID
    }

    /// An engine recovers open runs by itself before its first start.
    @Test func firstStartRecoversRunsLeftOpen() async throws {
        let path = temporaryJournalPath()
        let left = try await leaveOpenRun(path, gate: "gate-left")
        Gated.gates.withLock { $0["gate-left"] = true }
        let second = try await gatedEngine(path)
        let fresh = try await second.start(Transformer.self, input: "x")
        #expect(try await fresh.result() == "X")
        #expect(try await second.outcome(of: left) == .completed(Data(#""GATE-LEFT""#.utf8)))
        await second.shutdown()
    }

    @Test(.enabled(if: TestBackend.isSQLite, "damages a payload in the SQLite file; the conformance suite reads damaged rows on both"))
    func corruptHistoryHoldsTheRunWithRunAndEventNamed() async throws {
        let path = temporaryJournalPath()
        let runID = try await leaveOpenRun(path, gate: "gate-corrupt")
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "UPDATE events SET data = substr(data, 1, length(data) - 2) WHERE idx = 0")
        }
        try queue.close()

        let second = try await gatedEngine(path)
        let report = try await second.recover()
        let reason = try #require(report.held[runID])
        #expect(reason.contains("corrupt journal: run \(runID), event 0"))
        #expect(try await second.describe(runID).run.status == .held)
        await second.shutdown()
    }
}
