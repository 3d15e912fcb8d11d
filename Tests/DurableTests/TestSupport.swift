import Durable
import DurableTestSupport
import Foundation
import Synchronization
import Testing

/// Counts activity executions, by activity type and input.
final class CallLog: Sendable {
    private let calls = Mutex<[String]>([])

    func record(_ entry: String) { calls.withLock { $0.append(entry) } }
    var entries: [String] { calls.withLock { $0 } }
}

/// A fresh journal path in a per-process temporary folder.
func temporaryJournalPath(_ name: String = #function) -> String { temporaryJournal(name) }

struct Transform: Activity {
    let log: CallLog
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        log.record("transform:\(input)")
        return input.uppercased()
    }
}

struct Measure: Activity {
    let log: CallLog
    func run(_ ctx: ActivityContext, input: String) async throws -> Int {
        log.record("measure:\(input)")
        return input.count
    }
}

/// Fails the first `failures` attempts with a retryable error, then succeeds.
struct Flaky: Activity {
    let log: CallLog
    let failures: Int
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        log.record("flaky:\(ctx.attempt)")
        if ctx.attempt <= failures { throw ApplicationError("transient failure \(ctx.attempt)") }
        return "ok after \(ctx.attempt)"
    }
}

struct Refuse: Activity {
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        throw ApplicationError("refused \(input)", type: "Refused", nonRetryable: true)
    }
}

struct Slow: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(input))
        return input
    }
}

/// Sequential step, then three branches in parallel (async let and a task group), then a final step.
struct FanOut: Workflow {
    struct Result: Codable, Sendable, Equatable {
        var head: String
        var lengths: [Int]
        var tail: String
        var id: String
        var pick: Int
    }

    func run(_ ctx: WorkflowContext, input: [String]) async throws -> Result {
        let head = try await ctx.execute(Transform.self, input.first ?? "")
        async let a = ctx.execute(Measure.self, head)
        async let b = ctx.execute(Transform.self, head + "-b")
        let lengths = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for (i, word) in input.enumerated() {
                group.addTask { (i, try await ctx.execute(Measure.self, word)) }
            }
            var out = [Int](repeating: 0, count: input.count)
            for try await (i, n) in group { out[i] = n }
            return out
        }
        let tail = try await ctx.execute(Transform.self, "\(try await a)-\(try await b)")
        var rng = ctx.random
        return Result(head: head, lengths: lengths, tail: tail, id: ctx.uuid().uuidString, pick: Int.random(in: 0..<1000, using: &rng))
    }
}

struct RetryFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        try await ctx.execute(
            Flaky.self, input,
            options: .init(startToClose: .seconds(5), retry: .exponential(initial: .milliseconds(5), maxAttempts: 4)))
    }
}

struct RefuseFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        do {
            return try await ctx.execute(Refuse.self, input)
        } catch let failure as ActivityFailure {
            return "caught \(failure.cause.type) after \(failure.attempts)"
        }
    }
}

struct SlowFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        try await ctx.execute(Slow.self, input)
    }
}

struct TimeoutFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        try await ctx.execute(Slow.self, input, options: .init(startToClose: .milliseconds(50), retry: .none))
    }
}

/// Awaits `Task.sleep`, which escapes the engine. (Long enough that the task suspends: an await that
/// completes before its task suspends never reaches an executor and cannot be seen.)
struct SleepsOutsideEngine: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(200))
        return input
    }
}

/// Uses the context from a detached task while it waits for an activity.
struct DetachedContextUse: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        Task.detached { _ = ctx.uuid() }
        return "\(try await ctx.execute(Slow.self, 500))"
    }
}

struct Failing: Workflow {
    struct Oops: Error {}
    func run(_ ctx: WorkflowContext, input: String) async throws -> String { throw Oops() }
}

func makeEngine(_ path: String, log: CallLog = CallLog(), durability: Durability = .full) async throws -> Engine {
    let engine = try await Engine(journal: JournalConfiguration(path, durability: durability))
    engine.register(FanOut.self)
    engine.register(RetryFlow.self)
    engine.register(RefuseFlow.self)
    engine.register(TimeoutFlow.self)
    engine.register(SlowFlow.self)
    engine.register(Transformer.self)
    engine.register(SleepsOutsideEngine.self)
    engine.register(DetachedContextUse.self)
    engine.register(Failing.self)
    engine.register(Transform(log: log))
    engine.register(Measure(log: log))
    engine.register(Flaky(log: log, failures: 2))
    engine.register(Refuse())
    engine.register(Slow())
    return engine
}

/// Waits until a run that another process started is running, and returns an engine reading the
/// journal (which that process may not have created yet when this starts).
func waitForRunning(_ id: String, journal: String, timeout: Duration = .seconds(20)) async throws -> Engine {
    let deadline = ContinuousClock.now + timeout
    var engine: Engine?
    while ContinuousClock.now < deadline {
        if engine == nil { engine = try? await Engine(journal: JournalConfiguration(journal, createIfMissing: false)) }
        if let engine, let run = try? await engine.describe(id), run.run.status == .running, run.eventCount >= 1 {
            return engine
        }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw TestProcessError("run \(id) did not start within \(timeout)")
}

/// Each activity attempt ran at most once, and none ran after its completion was journaled: the
/// attempts executed (the side file) are distinct and end with the one history records as completed.
func checkAttempts(_ records: [SideRecord], _ history: [HistoryEvent], run: String) {
    let labels = Dictionary(history.filter { $0.kind == .activityScheduled }.map {
        ($0.seq, $0.data.flatMap { try? JSONDecoder().decode(String.self, from: $0) } ?? "?")
    }) { a, _ in a }
    for completed in history where completed.kind == .activityCompleted {
        let label = labels[completed.seq] ?? "?"
        let attempts = records.filter { $0.label == label }.map(\.attempt)
        #expect(Set(attempts).count == attempts.count, "\(run) \(label): an attempt ran twice: \(attempts)")
        #expect(attempts.max() == completed.attempt,
                "\(run) \(label): ran as attempts \(attempts), completed as attempt \(completed.attempt)")
    }
    #expect(history.map(\.index) == Array(0..<history.count), "\(run): event indexes have a gap")
}
