public import Foundation

/// A side effect that a workflow runs through its context: an inference call, an HTTP request, a
/// database write. Activities run at least once; use ``ActivityContext/idempotencyKey`` to make
/// repeated attempts harmless.
///
/// ```swift
/// struct Shout: Activity {
///     func run(_ ctx: ActivityContext, input: String) async throws -> String { input.uppercased() }
/// }
/// ```
public protocol Activity: Sendable {
    associatedtype Input: Codable & Sendable
    associatedtype Output: Codable & Sendable

    /// The name recorded in the journal. Defaults to the Swift type name.
    static var name: String { get }

    func run(_ ctx: ActivityContext, input: Input) async throws -> Output
}

extension Activity {
    public static var name: String { String(describing: Self.self) }
}

/// What an activity attempt knows about itself.
public struct ActivityContext: Sendable {
    public let runID: String
    public let workflowID: String
    public let activityType: String
    /// The activity's sequence number in its run.
    public let sequence: Int
    /// 1 for the first attempt, then 2, 3, ... for retries after failures recorded in history. An
    /// attempt cut off by a worker crash leaves no record, so the attempt after the restart repeats its
    /// number; use ``idempotencyKey`` (stable across all attempts) to deduplicate side effects.
    public let attempt: Int
    /// When this attempt started.
    public let startedAt: Date

    /// Stable across attempts of the same activity: run ID and sequence number.
    public var idempotencyKey: String { "\(runID)/\(sequence)" }

    /// `true` once the attempt has timed out or the worker is stopping.
    public var isCancelled: Bool { Task.isCancelled }

    package init(runID: String, workflowID: String, activityType: String, sequence: Int, attempt: Int, startedAt: Date) {
        self.runID = runID
        self.workflowID = workflowID
        self.activityType = activityType
        self.sequence = sequence
        self.attempt = attempt
        self.startedAt = startedAt
    }
}
