/// Recorded in a child run's `WorkflowStarted` event (`meta`): the run that started it and the
/// sequence number of its `ChildStarted` decision there.
public struct ParentLink: Codable, Sendable, Equatable {
    public var parentRunID: String
    public var parentSeq: Int

    public init(parentRunID: String, parentSeq: Int) {
        self.parentRunID = parentRunID
        self.parentSeq = parentSeq
    }
}

/// How a child run ended, queued for its parent (a `durable.child` signal) in the transaction that
/// ends the child, and recorded in the parent's `ChildClosed` event.
public struct ChildOutcome: Codable, Sendable, Equatable {
    /// The child's sequence number in the parent.
    public var seq: Int
    public var childRunID: String
    /// The child's final status: completed, failed, cancelled or terminated.
    public var status: String
    /// The result as JSON text, for a completed child.
    public var result: String?
    public var failure: FailureInfo?

    public init(seq: Int, childRunID: String, status: String, result: String? = nil, failure: FailureInfo? = nil) {
        self.seq = seq
        self.childRunID = childRunID
        self.status = status
        self.result = result
        self.failure = failure
    }
}
