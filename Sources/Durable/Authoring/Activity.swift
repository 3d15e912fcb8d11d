public import Foundation
import Synchronization

/// What workflow code needs to call an activity: its name and its input and output types.
///
/// ``Activity`` adds the Swift implementation. Declare an activity that runs elsewhere, in a process
/// pool for instance, with this protocol alone:
///
/// ```swift
/// struct Sentiment: ActivityDeclaration {
///     typealias Input = String
///     typealias Output = Score
/// }
/// engine.register(Sentiment.self, processPool: ProcessPoolOptions(command: ["python3", "sentiment.py"]))
/// ```
public protocol ActivityDeclaration: Sendable {
    associatedtype Input: Codable & Sendable
    associatedtype Output: Codable & Sendable

    /// The name recorded in the journal. Defaults to the Swift type name.
    static var name: String { get }

    /// The model this activity serves (name, version, weights hashes, metadata), journaled with the end
    /// of every attempt that ran, together with the SHA-256 of its input and output; `nil` (the default) for an
    /// activity that serves none. Read once, when the activity is registered: hash the weights in a
    /// `static let`. A process-pool worker may report its model in its ready line; that report wins
    /// (see `Docs/activities.md`, "Model lineage").
    ///
    /// ```swift
    /// static let modelIdentity: ModelIdentity? = try! ModelIdentity(
    ///     name: "fraud", version: "2026.11", weightFiles: ["/models/fraud.onnx"])
    /// ```
    static var modelIdentity: ModelIdentity? { get }

    /// The key whose ``PoolOptions/keyRateLimit`` an attempt with this input counts against (a tenant,
    /// an API account); `nil` (the default): only the pool's ``PoolOptions/rateLimit``. Read only in a
    /// pool with rate limits.
    static func rateLimitKey(for input: Input) -> String?

    /// The units an attempt with this input uses of its pool's rate limits: 1 (one request) by
    /// default; a model API's tokens, for instance, estimated from the input. Read only in a pool with
    /// rate limits.
    static func rateLimitCost(for input: Input) -> Int
}

extension ActivityDeclaration {
    public static var name: String { TypeNames.name(of: Self.self) }
    public static var modelIdentity: ModelIdentity? { nil }
    public static func rateLimitKey(for input: Input) -> String? { nil }
    public static func rateLimitCost(for input: Input) -> Int { 1 }
}

/// Type names as `String(describing:)` writes them, made once per type: the default ``Workflow/name``
/// and ``ActivityDeclaration/name``, read on every step (`String(describing:)` of a type demangles its
/// name at run time, and cost a step more than encoding its input).
enum TypeNames {
    private static let names = Mutex<[ObjectIdentifier: String]>([:])

    static func name(of type: Any.Type) -> String {
        let key = ObjectIdentifier(type)
        if let name = names.withLock({ $0[key] }) { return name }
        let name = String(describing: type)
        names.withLock { $0[key] = name }
        return name
    }
}

/// A side effect that a workflow runs through its context: an inference call, an HTTP request, a
/// database write. Activities run at least once; use ``ActivityContext/idempotencyKey`` to make
/// repeated attempts harmless.
///
/// ```swift
/// struct Shout: Activity {
///     func run(_ ctx: ActivityContext, input: String) async throws -> String { input.uppercased() }
/// }
/// ```
public protocol Activity: ActivityDeclaration {
    // Restated so that conforming types get Input and Output inferred from `run`.
    associatedtype Input
    associatedtype Output

    func run(_ ctx: ActivityContext, input: Input) async throws -> Output
}

/// What an activity attempt knows about itself.
public struct ActivityContext: Sendable {
    public let runID: String
    public let workflowID: String
    public let activityType: String
    /// The activity's sequence number in its run.
    public let sequence: Int
    /// 1 for the first attempt, then 2, 3, ... An attempt cut off by a worker crash is recorded as
    /// lost (``WorkerLost``) and the next attempt gets the next number; ``idempotencyKey`` stays the
    /// same across all attempts.
    public let attempt: Int
    /// When this attempt started.
    public let startedAt: Date
    /// The pool slot running this attempt, e.g. `"ScoreFraud#2"`.
    public let slot: String
    /// The details of the last heartbeat recorded by an earlier attempt (JSON), `nil` if none.
    public let lastHeartbeatData: Data?
    let heartbeats: (any HeartbeatSink)?

    /// Stable across attempts of the same activity: run ID and sequence number.
    public var idempotencyKey: String { "\(runID)/\(sequence)" }

    /// `true` once the attempt was cancelled: it timed out, the workflow cancelled the activity, or
    /// the worker is stopping.
    public var isCancelled: Bool { Task.isCancelled }

    /// Reports that the attempt is alive, with progress details that a later attempt can read through
    /// ``lastHeartbeatDetails(as:)`` to resume where this one stopped. Keeps a
    /// ``ActivityOptions/heartbeatTimeout`` from firing. Cheap: details are journaled at most once
    /// a second (and always with the attempt's failure).
    ///
    /// ```swift
    /// for page in (ctx.lastHeartbeatDetails(as: Int.self) ?? 0)..<pages {
    ///     try ctx.heartbeat(page)            // throws CancellationError once cancelled
    ///     try await ocr(page)
    /// }
    /// ```
    /// - Throws: `CancellationError` when the attempt was cancelled or timed out; stop then.
    public func heartbeat<Details: Encodable>(_ details: Details) throws {
        let data = try DurableError.encode(details, as: "heartbeat details (\(Details.self))")
        try DurableError.checkPayload(data, "heartbeat details")
        try heartbeats?.heartbeat(data)
        try Task.checkCancellation()
    }

    /// Reports that the attempt is alive, without details.
    /// - Throws: `CancellationError` when the attempt was cancelled or timed out.
    public func heartbeat() throws {
        try heartbeats?.heartbeat(nil)
        try Task.checkCancellation()
    }

    /// The details of the last heartbeat an earlier attempt recorded, decoded; `nil` if there is none.
    public func lastHeartbeatDetails<Details: Decodable>(as type: Details.Type) -> Details? {
        lastHeartbeatData.flatMap { try? JSONDecoder.payload().decode(Details.self, from: $0) }
    }

    package init(
        runID: String, workflowID: String, activityType: String, sequence: Int, attempt: Int, startedAt: Date,
        slot: String = "", lastHeartbeatData: Data? = nil, heartbeats: (any HeartbeatSink)? = nil
    ) {
        self.runID = runID
        self.workflowID = workflowID
        self.activityType = activityType
        self.sequence = sequence
        self.attempt = attempt
        self.startedAt = startedAt
        self.slot = slot
        self.lastHeartbeatData = lastHeartbeatData
        self.heartbeats = heartbeats
    }
}

/// Where an attempt's heartbeats go.
package protocol HeartbeatSink: Sendable {
    /// Records a heartbeat; throws `CancellationError` once the attempt has ended or was cancelled.
    func heartbeat(_ details: Data?) throws
}
