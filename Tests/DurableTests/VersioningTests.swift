import Durable
import Foundation
import Testing

// Three deployments of one workflow type ("Order"): V2 adds a step behind ctx.patched, V3 removes
// the old branch once no run needs it.

struct OrderV1: Workflow {
    static var name: String { "Order" }
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        let a = try await ctx.execute(Slow.self, input)
        let b = try await ctx.execute(Transform.self, "b\(a)")
        return b
    }
}

struct OrderV2: Workflow {
    static var name: String { "Order" }
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        let a = try await ctx.execute(Slow.self, input)
        var check = ""
        if ctx.patched("add-check") {
            check = try await ctx.execute(Transform.self, "check") + " "
        }
        let b = try await ctx.execute(Transform.self, "b\(a)")
        return check + b
    }
}

struct OrderV3: Workflow {
    static var name: String { "Order" }
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        let a = try await ctx.execute(Slow.self, input)
        let check = try await ctx.execute(Transform.self, "check") + " "
        let b = try await ctx.execute(Transform.self, "b\(a)")
        return check + b
    }
}

@Suite(.timeLimit(.minutes(2))) struct VersioningTests {
    func engine<W: Workflow>(_ path: String, _ workflow: W.Type, log: CallLog = CallLog()) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path))
        engine.register(workflow)
        engine.register(Slow())
        engine.register(Transform(log: log))
        return engine
    }

    @Test func patchedKeepsOldHistoriesOnTheOldBranchAndNewRunsOnTheNewOne() async throws {
        let path = temporaryJournalPath()
        let v1 = try await engine(path, OrderV1.self)
        let old = try await v1.start(OrderV1.self, input: 1)
        #expect(try await old.result() == "B1")
        await v1.shutdown()

        let v2 = try await engine(path, OrderV2.self)
        // A history recorded before the change replays through the changed code.
        #expect(try await v2.replay(old.runID).mismatch == nil)
        let new = try await v2.start(OrderV2.self, input: 2)
        #expect(try await new.result() == "CHECK B2")
        let kinds = try await v2.history(new.runID).1.map(\.kind)
        #expect(kinds.contains(.patchMarker))
        #expect(try await v2.replay(new.runID).mismatch == nil)
        await v2.shutdown()

        // The old branch removed: histories with the marker still replay; the old one no longer does.
        let v3 = try await engine(path, OrderV3.self)
        #expect(try await v3.replay(new.runID).mismatch == nil)
        #expect(try await v3.replay(old.runID).mismatch?.isNonDeterminism == true)
        await v3.shutdown()
    }

    @Test func aRunInFlightTakesTheNewBranchForDecisionsItMakesAfterTheChange() async throws {
        let path = temporaryJournalPath()
        let log = CallLog()
        let v1 = try await engine(path, OrderV1.self, log: log)
        let run = try await v1.start(OrderV1.self, input: 400)  // still in its first activity
        try await Task.sleep(for: .milliseconds(100))
        await v1.shutdown()

        let v2 = try await engine(path, OrderV2.self, log: log)
        try await v2.recover()
        // The patched() call comes after the first activity's result: that decision is made live,
        // after the deployment, so the run takes the new branch from there on.
        #expect(try await v2.outcome(of: run.runID) == .completed(Data(#""CHECK B400""#.utf8)))
        #expect(try await v2.replay(run.runID).mismatch == nil)
        await v2.shutdown()
    }
}
