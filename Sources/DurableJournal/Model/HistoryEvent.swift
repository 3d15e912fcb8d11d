public import Foundation

/// The kinds of event a run's history holds, with the integer stored in the journal.
///
/// Three roles:
/// - *input* events wake the workflow (``workflowStarted``, ``activityCompleted``, ``activityFailed``):
///   each starts one activation;
/// - *command* events are what the workflow decided in that activation (``activityScheduled``,
///   ``workflowCompleted``, ``workflowFailed``), recorded in the same transaction as the input event;
/// - *informational* events (``activityAttemptFailed``) record what the worker runtime did; replay
///   skips them.
public enum EventKind: Int, Sendable, CaseIterable, Codable {
    case workflowStarted = 1
    case activityScheduled = 2
    case activityCompleted = 3
    case activityAttemptFailed = 4
    case activityFailed = 5
    case workflowCompleted = 6
    case workflowFailed = 7

    public var name: String {
        switch self {
        case .workflowStarted: "WorkflowStarted"
        case .activityScheduled: "ActivityScheduled"
        case .activityCompleted: "ActivityCompleted"
        case .activityAttemptFailed: "ActivityAttemptFailed"
        case .activityFailed: "ActivityFailed"
        case .workflowCompleted: "WorkflowCompleted"
        case .workflowFailed: "WorkflowFailed"
        }
    }

    /// An event that starts an activation.
    public var isInput: Bool {
        switch self {
        case .workflowStarted, .activityCompleted, .activityFailed: true
        default: false
        }
    }

    /// An event that records a decision of the workflow code.
    public var isCommand: Bool {
        switch self {
        case .activityScheduled, .workflowCompleted, .workflowFailed: true
        default: false
        }
    }
}

/// One recorded event of a run's history, with its payloads decoded.
public struct HistoryEvent: Sendable, Equatable {
    /// Position in the run's history, from 0.
    public var index: Int
    public var kind: EventKind
    /// When the event was recorded (millisecond precision). For input events this is also the
    /// workflow's `ctx.now` during the activation the event starts.
    public var time: Date
    /// The command sequence number the event refers to (activity events); 0 otherwise.
    public var seq: Int
    /// The attempt number for activity results and failures; 0 otherwise.
    public var attempt: Int
    /// The workflow type (started) or activity type (scheduled), or `nil`.
    public var name: String?
    /// The main payload: workflow or activity input or result as JSON, or a ``FailureInfo`` as JSON.
    public var data: Data?
    /// Secondary details as JSON: the activity options of a scheduled activity.
    public var meta: Data?

    public init(
        index: Int, kind: EventKind, time: Date, seq: Int = 0, attempt: Int = 0,
        name: String? = nil, data: Data? = nil, meta: Data? = nil
    ) {
        self.index = index
        self.kind = kind
        self.time = time
        self.seq = seq
        self.attempt = attempt
        self.name = name
        self.data = data
        self.meta = meta
    }

    /// `data` decoded as a failure, for failure events.
    public var failure: FailureInfo? {
        guard kind == .activityFailed || kind == .activityAttemptFailed || kind == .workflowFailed,
            let data
        else { return nil }
        return try? JSONDecoder().decode(FailureInfo.self, from: data)
    }
}

/// A failure as recorded in history: the error's type name and message, and how the runtime judged it.
public struct FailureInfo: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The Swift type name of the error, e.g. `"TimeoutError"`, used to match non-retryable types.
    public var type: String
    public var message: String
    /// `false` when a retry could not help (non-retryable type, or retries exhausted).
    public var retryable: Bool?
    /// For attempt failures: the delay before the next attempt, in milliseconds.
    public var nextRetryDelayMs: Int?

    public init(type: String, message: String, retryable: Bool? = nil, nextRetryDelayMs: Int? = nil) {
        self.type = type
        self.message = message
        self.retryable = retryable
        self.nextRetryDelayMs = nextRetryDelayMs
    }

    public var description: String { "\(type): \(message)" }
}

extension Date {
    /// Milliseconds since 1970, the unit times are stored in.
    package var journalMillis: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }

    package init(journalMillis: Int64) {
        self.init(timeIntervalSince1970: Double(journalMillis) / 1000)
    }
}
