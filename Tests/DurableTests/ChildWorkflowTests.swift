import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct Square: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        _ = try await ctx.execute(Slow.self, 10)
        if input < 0 { throw ApplicationError("negative", type: "Negative", nonRetryable: true) }
        return input * input
    }
}

/// Squares each number in a child run of its own, in parallel.
struct SumOfSquares: Workflow {
    func run(_ ctx: WorkflowContext, input: [Int]) async throws -> String {
        do {
            let squares = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in input { group.addTask { try await ctx.executeChild(Square.self, n) } }
                return try await group.reduce(0, +)
            }
            return "sum \(squares)"
        } catch let failure as ChildWorkflowFailure {
            return "child \(failure.status): \(failure.cause.type)"
        }
    }
}

struct Sleeper: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        try await ctx.sleep(for: .milliseconds(input))
        return "slept"
    }
}

struct Guardian: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        try await ctx.executeChild(Sleeper.self, input, id: "ward")
    }
}

@Suite(.timeLimit(.minutes(2))) struct ChildWorkflowTests {
    func engine(_ path: String = temporaryJournalPath(#function)) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path))
        engine.register(Square.self)
        engine.register(SumOfSquares.self)
        engine.register(Sleeper.self)
        engine.register(Guardian.self)
        engine.register(Slow())
        registerTestWorkflows(engine)
        return engine
    }

    @Test func childRunsDoTheirWorkAndTheParentGetsTheResults() async throws {
        let engine = try await engine()
        let run = try await engine.start(SumOfSquares.self, input: [1, 2, 3], id: "squares")
        #expect(try await run.result() == "sum 14")
        let events = try await engine.history(run.runID).1
        #expect(events.filter { $0.kind == .childStarted }.count == 3)
        #expect(events.filter { $0.kind == .childClosed }.count == 3)
        let children = try await engine.runs().filter { $0.workflowID.hasPrefix("squares/") }
        #expect(children.count == 3 && children.allSatisfy { $0.status == .completed })
        let child = try await engine.describe(try #require(children.first).runID)
        #expect(child.parent?.parentRunID == run.runID)
        #expect(try await engine.describe(run.runID).children.count == 3)
        #expect(try await engine.replay(run.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func aFailedChildReachesTheParentAsChildWorkflowFailure() async throws {
        let engine = try await engine()
        let run = try await engine.start(SumOfSquares.self, input: [2, -1])
        #expect(try await run.result() == "child failed: Negative")
        await engine.shutdown()
    }

    @Test func aChildWorkflowIDInUseHoldsTheParentWithTheReason() async throws {
        let engine = try await engine()
        let squatter = try await engine.start(Sleeper.self, input: 30_000, id: "ward")
        let run = try await engine.start(Guardian.self, input: 10)
        await #expect { _ = try await run.result() } throws: { error in
            "\(error)".contains("child workflow ID 'ward' is in use by open run \(squatter.runID)")
        }
        #expect(try await engine.describe(run.runID).run.status == .held)
        await engine.shutdown()
    }

    @Test func cancellingTheParentCancelsTheChild() async throws {
        let engine = try await engine()
        let run = try await engine.start(Guardian.self, input: 30_000)
        let deadline = ContinuousClock.now + .seconds(10)
        while (try? await engine.describe("ward"))?.run.status != .running, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        try await engine.cancel(run.runID)
        await #expect(throws: WorkflowFailure.self) { _ = try await run.result() }
        #expect(try await engine.describe(run.runID).run.status == .cancelled)
        #expect(try await engine.describe("ward").run.status == .cancelled)
        await engine.shutdown()
    }

    @Test func aSigkilledWorkerInTheMiddleOfAChildRunFinishesBothAfterTheRestart() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath()
        // Opened (the journal created) before the run command starts, so that watching for the child
        // does not wait for an open: under the whole suite's load, that took longer than the child's
        // nap, and the run had finished unseen. The nap leaves seconds to see the child running.
        let inspector = try await Engine(journal: JournalConfiguration(journal))
        let first = try Child(worker, ["run", "Family", "--input", "4000", "--id", "fam", "--journal", journal])
        do {
            try await eventually("run fam/1 running") { (try? await inspector.describe("fam/1"))?.run.status == .running }
        } catch {
            Issue.record("\(error); the run command said: \(first.output)")  // what held it up
            throw error
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while try await !inspector.history("fam/1").1.contains(where: { $0.kind == .timerStarted }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        first.kill(SIGKILL)
        _ = try await first.wait()

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal])
        defer { second.kill(SIGKILL) }
        while try await inspector.describe("fam").run.status.isOpen, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await inspector.describe("fam").outcome == .completed(Data(#""family nap!""#.utf8)))
        #expect(try await inspector.describe("fam/1").run.status == .completed)
        #expect(try await inspector.journal.queuedSignals().isEmpty)
    }
}
