// Workflows shared by the tests and by the worker process they spawn (durable-test-worker).
//
// Environment read by Step:
//   SIDE_FILE  every Step attempt appends "<label> <pid> <attempt> <idempotency key>\n" to this file
//              with one write(2), so the
//              record survives SIGKILL (the tests compare it with the journal)
//   STEP_MS    how long each Step takes (default 20)
//   KILL_IN    a Step label: that step kills its own process with SIGKILL after its side-file record
// A Step whose label ends in "-fail" throws a non-retryable "Refused" error (after its record); one
// whose label ends in "-retry" heartbeats its attempt number and throws a retryable "UpstreamTimeout".
public import Durable
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One step of work: records itself in the side file, takes STEP_MS, returns a derived string.
public struct Step: Activity {
    public init() {}

    public func run(_ ctx: ActivityContext, input: String) async throws -> String {
        let env = ProcessInfo.processInfo.environment
        if let side = env["SIDE_FILE"] {
            let fd = open(side, O_WRONLY | O_APPEND | O_CREAT, 0o644)
            let line = "\(input) \(getpid()) \(ctx.attempt) \(ctx.idempotencyKey)\n"
            _ = line.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        if env["KILL_IN"] == input { kill(getpid(), SIGKILL) }
        if input.hasSuffix("-fail") { throw ApplicationError("step \(input) refused", type: "Refused", nonRetryable: true) }
        if input.hasSuffix("-retry") {
            try ctx.heartbeat(["attempt": ctx.attempt])
            throw ApplicationError("the model server did not answer within 30 s (attempt \(ctx.attempt))", type: "UpstreamTimeout")
        }
        let ms = Int(env["STEP_MS"] ?? "") ?? 20
        do {
            try await Task.sleep(for: .milliseconds(ms))
        } catch {
            // "cancelled <label> <pid>": three fields, so sideRecords() skips the line.
            if let side = env["SIDE_FILE"] {
                let fd = open(side, O_WRONLY | O_APPEND | O_CREAT, 0o644)
                let line = "cancelled \(input) \(getpid())\n"
                _ = line.withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
            throw error
        }
        return "\(input)!"
    }
}

/// A first step, three branches in a task group (two sequential steps each), an `async let` step in
/// parallel with them, and a final step: nine activities whose order interleaves.
public struct CrashFlow: Workflow {
    public struct Input: Codable, Sendable {
        public var tag: String
        public init(tag: String) { self.tag = tag }
    }

    public init() {}

    public func run(_ ctx: WorkflowContext, input: Input) async throws -> String {
        let first = try await ctx.execute(Step.self, "\(input.tag)-a")
        async let side = ctx.execute(Step.self, "\(input.tag)-side")
        let branches = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for branch in 1...3 {
                group.addTask {
                    let x = try await ctx.execute(Step.self, "\(input.tag)-b\(branch)x")
                    let y = try await ctx.execute(Step.self, "\(input.tag)-b\(branch)y")
                    return (branch, x + y)
                }
            }
            var results = [String](repeating: "", count: 3)
            for try await (branch, value) in group { results[branch - 1] = value }
            return results
        }
        let token = ctx.uuid().uuidString.prefix(8)
        let last = try await ctx.execute(Step.self, "\(input.tag)-z")
        return ([first, try await side] + branches + [last]).joined(separator: ",") + " #\(token.count)"
    }
}

/// Branches whose decisions depend on recorded randomness, time and activity results.
public struct Shuffle: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> [String] {
        var rng = ctx.random
        let labels = (0..<input).map { "s\($0)-\(Int.random(in: 0..<1000, using: &rng))" }
        return try await withThrowingTaskGroup(of: String.self) { group in
            for label in labels {
                group.addTask {
                    let first = try await ctx.execute(Step.self, label)
                    return try await ctx.execute(Step.self, first + ctx.uuid().uuidString.prefix(4))
                }
            }
            var out: [String] = []
            for try await value in group { out.append(value) }
            return out + ["\(ctx.now.timeIntervalSince1970 > 0)"]
        }
    }
}

/// Sleeps on a durable timer for `input` milliseconds, then runs one Step.
public struct Nap: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        try await ctx.sleep(for: .milliseconds(input))
        return try await ctx.execute(Step.self, "nap")
    }
}

/// Waits for `input` signals named "item" (strings) and returns them joined with commas; the query
/// "items" answers the items so far.
public struct Gather: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        var items: [String] = []
        ctx.setQueryHandler("items") { items }
        for try await item in ctx.signals(String.self, named: "item") {
            items.append(item)
            if items.count == input { break }
        }
        return items.joined(separator: ",")
    }
}

/// Waits for one "review" signal and answers whether it approved. It names the signal's type, so an
/// application that registers it refuses a review that does not decode before it is sent.
public struct ReviewClaim: Workflow {
    public struct Review: Codable, Sendable {
        public var approved: Bool
        public init(approved: Bool) { self.approved = approved }
    }

    public static var signals: [String: any Decodable.Type] { ["review": Review.self] }

    public init() {}

    public func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let review = try await ctx.waitForSignal(Review.self, named: "review")
        return "\(input) \(review.approved ? "approved" : "declined")"
    }
}

/// A transfer as a saga: debit, reserve, then a step that fails; the undos run in reverse.
public struct Transfer: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let saga = Saga(ctx)
        return try await saga.run {
            _ = try await ctx.execute(Step.self, "\(input)-debit")
            saga.addCompensation(Step.self, "\(input)-undo-debit")
            _ = try await ctx.execute(Step.self, "\(input)-reserve")
            saga.addCompensation(Step.self, "\(input)-undo-reserve")
            return try await ctx.execute(Step.self, "\(input)-fail", options: .init(retry: .none))
        }
    }
}

/// Three Steps that complete, then one that keeps failing (retried without end, 100 ms after the first
/// failure, then four times longer each time up to 60 s): a run whose pending activity is retrying.
public struct Flaky: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        for step in ["ocr", "rules", "score"] { _ = try await ctx.execute(Step.self, "\(input)-\(step)") }
        return try await ctx.execute(
            Step.self, "\(input)-retry",
            options: .init(retry: .exponential(initial: .milliseconds(100), coefficient: 4, maximum: .seconds(60), maxAttempts: 0)))
    }
}

/// Runs a ``Nap`` of `input` milliseconds as a child run.
public struct Family: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        "family " + (try await ctx.executeChild(Nap.self, input))
    }
}

/// Works through `input` chunks of 50 ms each, heartbeating the number done, and resumes after the
/// last heartbeat a previous attempt recorded. Every chunk worked appends
/// "chunk-<n> <pid> <attempt> <idempotency key>" to SIDE_FILE.
public struct Chunks: Activity {
    public init() {}

    public func run(_ ctx: ActivityContext, input: Int) async throws -> String {
        let resumed = ctx.lastHeartbeatDetails(as: Int.self) ?? 0
        let side = ProcessInfo.processInfo.environment["SIDE_FILE"]
        for chunk in (resumed + 1)..<(max(resumed, input) + 1) {
            try await Task.sleep(for: .milliseconds(50))
            if let side {
                let fd = open(side, O_WRONLY | O_APPEND | O_CREAT, 0o644)
                let line = "chunk-\(chunk) \(getpid()) \(ctx.attempt) \(ctx.idempotencyKey)\n"
                _ = line.withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
            try ctx.heartbeat(chunk)
        }
        return "\(input) chunks, resumed after \(resumed)"
    }
}

/// One ``Chunks`` activity of `input` chunks.
public struct ChunkFlow: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        try await ctx.execute(Chunks.self, input, options: .init(startToClose: .seconds(60), heartbeatTimeout: .seconds(10)))
    }
}

/// An activity the shared registration keeps in a one-slot pool whose factory takes 20 ms: the first
/// call cold-starts the slot, later ones find it warm. Doubles its input after 5 ms.
public struct Pooled: Activity {
    public init() {}

    public func run(_ ctx: ActivityContext, input: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(5))
        return input * 2
    }
}

/// Calls ``Pooled`` for 1 through `input`, one after the other, and sums the results.
public struct PooledFlow: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        var total = 0
        for i in 1...max(1, input) { total += try await ctx.execute(Pooled.self, i) }
        return total
    }
}

/// The Python fixture (`Tests/Fixtures/model_worker.py`) as an activity of a process pool, which the
/// shared registration adds only when `TEST_PROCESS_POOL` is set (two warm processes).
public struct FixtureModel: ActivityDeclaration {
    public struct Input: Codable, Sendable {
        public var op: String
        public var ms: Int?
        public init(op: String, ms: Int? = nil) {
            self.op = op
            self.ms = ms
        }
    }

    public struct Output: Codable, Sendable {
        public var pid: Int32
    }
}

/// Calls ``FixtureModel`` once; returns the pid of the process that answered.
public struct ModelCallFlow: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: FixtureModel.Input) async throws -> Int32 {
        try await ctx.execute(FixtureModel.self, input, options: .init(startToClose: .seconds(60))).pid
    }
}

private let fixtureScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/model_worker.py").path

/// An in-process activity that serves a model (for lineage): its version is `TEST_MODEL_VERSION`
/// (default `1`), read when the activity is registered. Returns the input's length.
public struct Score: Activity {
    public init() {}

    public static var modelIdentity: ModelIdentity? {
        ModelIdentity(
            name: "scorer", version: ProcessInfo.processInfo.environment["TEST_MODEL_VERSION"] ?? "1",
            weights: ["scorer.bin": String(repeating: "ab", count: 32)], metadata: ["prompt": "p-7"])
    }

    public func run(_ ctx: ActivityContext, input: String) async throws -> Int { input.count }
}

/// Scores its input, then its input with `!` appended: two decisions of the ``Score`` model.
public struct LineageFlow: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: String) async throws -> Int {
        let first = try await ctx.execute(Score.self, input)
        return first + (try await ctx.execute(Score.self, input + "!"))
    }
}

/// Scores its input, then has a ``LineageFlow`` child score it twice more: lineage across runs.
public struct LineageParent: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: String) async throws -> Int {
        let own = try await ctx.execute(Score.self, input)
        return own + (try await ctx.executeChild(LineageFlow.self, input + " (child)", id: ctx.workflowID + "/child"))
    }
}

/// Publishes its tokens as partial output, `ms` apart, and returns them joined; attempt 1 fails
/// after `failAfter` tokens when that is set (its partial output is then discarded).
public struct Generate: Activity {
    public struct Input: Codable, Sendable {
        public var tokens: [String]
        public var ms: Int
        public var failAfter: Int?

        public init(tokens: [String], ms: Int = 0, failAfter: Int? = nil) {
            self.tokens = tokens
            self.ms = ms
            self.failAfter = failAfter
        }
    }

    public init() {}

    public func run(_ ctx: ActivityContext, input: Input) async throws -> String {
        for (i, token) in input.tokens.enumerated() {
            if ctx.attempt == 1, let failAfter = input.failAfter, i == failAfter {
                throw ApplicationError("the stream broke after \(failAfter) tokens")
            }
            try ctx.publish(token)
            if input.ms > 0 { try await Task.sleep(for: .milliseconds(input.ms)) }
        }
        return input.tokens.joined()
    }
}

/// Calls ``Generate`` with up to three attempts.
public struct StreamFlow: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Generate.Input) async throws -> String {
        try await ctx.execute(Generate.self, input, options: .init(retry: .exponential(initial: .milliseconds(10), maxAttempts: 3)))
    }
}

/// A document of about `input` characters that does not compress (base64 of a generator seeded with
/// the size): a payload stored out of line. The same size gives the same document.
public struct MakeDocument: Activity {
    public init() {}

    public func run(_ ctx: ActivityContext, input: Int) async throws -> String {
        var state = UInt64(input)
        let raw = (0..<max(0, input) * 3 / 4).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        return Data(raw).base64EncodedString()
    }
}

/// The length of a document.
public struct MeasureDocument: Activity {
    public init() {}

    public func run(_ ctx: ActivityContext, input: String) async throws -> Int { input.utf8.count }
}

/// Makes a document of `input` characters and measures it twice: the document is an activity's
/// result and two activities' input, stored once out of line.
public struct DocumentFlow: Workflow {
    public init() {}

    public func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        let document = try await ctx.execute(MakeDocument.self, input)
        let first = try await ctx.execute(MeasureDocument.self, document)
        return first + (try await ctx.execute(MeasureDocument.self, document))
    }
}

/// Registers the shared workflows and activities.
public func registerTestWorkflows(_ engine: Engine) { registerTestWorkflows(engine.worker) }

/// Registers the shared workflows and activities on a worker.
public func registerTestWorkflows(_ engine: DurableWorker) {
    engine.register(CrashFlow.self)
    engine.register(Shuffle.self)
    engine.register(Nap.self)
    engine.register(Gather.self)
    engine.register(ReviewClaim.self)
    engine.register(Transfer.self)
    engine.register(Family.self)
    engine.register(Flaky.self)
    engine.register(ChunkFlow.self)
    engine.register(PooledFlow.self)
    engine.register(Step())
    engine.register(Chunks())
    engine.register(ModelCallFlow.self)
    engine.register(LineageFlow.self)
    engine.register(LineageParent.self)
    engine.register(StreamFlow.self)
    engine.register(Generate())
    engine.register(Score())
    engine.register(DocumentFlow.self)
    engine.register(MakeDocument())
    engine.register(MeasureDocument())
    if ProcessInfo.processInfo.environment["TEST_PROCESS_POOL"] != nil {
        engine.register(FixtureModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixtureScript], pool: .warm(min: 2, max: 2)))
    }
    engine.register(Pooled.self, pool: .warm(min: 0, max: 1)) {
        try await Task.sleep(for: .milliseconds(20))
        return Pooled()
    }
}
