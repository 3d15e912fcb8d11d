public import DurableJournal
import Foundation

/// An error an activity throws to say how the runtime should treat it.
///
/// Any Swift error fails the attempt and is retried by the activity's ``RetryPolicy``; throw an
/// `ApplicationError` with `nonRetryable: true` when a retry cannot help (invalid input, a refusal).
public struct ApplicationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// Recorded as the failure's type; matched against ``RetryPolicy/nonRetryableErrorTypes``.
    public var type: String
    public var nonRetryable: Bool

    public init(_ message: String, type: String = "ApplicationError", nonRetryable: Bool = false) {
        self.message = message
        self.type = type
        self.nonRetryable = nonRetryable
    }

    public var description: String { message }
}

/// Thrown into workflow code when an activity failed for good: a non-retryable error, or its
/// attempts ran out.
public struct ActivityFailure: Error, Sendable, CustomStringConvertible {
    public var activityType: String
    public var sequence: Int
    public var attempts: Int
    /// The last attempt's error as recorded.
    public var cause: FailureInfo

    public var description: String {
        "activity \(activityType) (seq \(sequence)) failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(cause)"
    }
}

/// Thrown by ``WorkflowHandle/result()`` when the run ended with an error.
public struct WorkflowFailure: Error, Sendable, CustomStringConvertible {
    public var runID: String
    public var cause: FailureInfo

    public var description: String { "run \(runID) failed: \(cause)" }
}

/// The engine's own errors, with the run, event and names a person needs.
///
/// Match on ``code`` (a struct over a private enum, so that new codes do not break callers):
///
/// ```swift
/// do {
///     _ = try await client.start(ClaimIntake.self, input: claim, id: "claim-1042")
/// } catch let error as DurableError where error.code == .workflowIDReused {
///     // the claim was handled before
/// }
/// ```
public struct DurableError: Error, Sendable, CustomStringConvertible {
    /// What kind of engine error this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unknownWorkflowType, unknownActivityType, unknownQuery, badInput, badOutput, nonDeterminism,
                contextMisuse, strayAwait, evicted, runHeld, badResetPoint, shuttingDown, workflowIDReused,
                badSignalInput, payloadTooLarge, invalidIdentifier
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// No workflow type of that name is registered (or recorded by a worker, for a code-less client).
        public static let unknownWorkflowType = Code(.unknownWorkflowType)
        /// No activity type of that name is registered in this worker.
        public static let unknownActivityType = Code(.unknownActivityType)
        /// The run's workflow has no query handler of that name.
        public static let unknownQuery = Code(.unknownQuery)
        /// An input does not encode or decode as the type asked for.
        public static let badInput = Code(.badInput)
        /// A result does not decode as the type asked for.
        public static let badOutput = Code(.badOutput)
        /// Replaying the code did not reproduce the recorded history.
        public static let nonDeterminism = Code(.nonDeterminism)
        /// Workflow code called its context from outside the workflow's task tree.
        public static let contextMisuse = Code(.contextMisuse)
        /// Workflow code awaited something outside the engine.
        public static let strayAwait = Code(.strayAwait)
        /// The run was evicted from this worker.
        public static let evicted = Code(.evicted)
        /// The run is held (its history does not replay, or it cannot go on) until an operator acts.
        public static let runHeld = Code(.runHeld)
        /// A reset to an event that is not an activation boundary, or past the history.
        public static let badResetPoint = Code(.badResetPoint)
        /// The engine is shutting down.
        public static let shuttingDown = Code(.shuttingDown)
        /// The workflow ID reuse policy refuses a new run for a workflow ID that was used before.
        public static let workflowIDReused = Code(.workflowIDReused)
        /// A signal's input does not decode as the type the workflow waits for.
        public static let badSignalInput = Code(.badSignalInput)
        /// A payload is larger than ``DurableLimits/maximumPayloadBytes``; nothing was recorded.
        public static let payloadTooLarge = Code(.payloadTooLarge)
        /// A workflow ID, workflow type or signal name is empty or longer than
        /// ``DurableLimits/maximumIdentifierBytes`` bytes of UTF-8.
        public static let invalidIdentifier = Code(.invalidIdentifier)

        public var description: String { base.rawValue }
    }

    package enum Detail: Sendable {
        case unknownWorkflowType(String, known: [String])
        case unknownActivityType(String)
        case unknownQuery(runID: String, name: String, known: [String])
        case badInput(type: String, reason: String)
        case badOutput(type: String, reason: String)
        case nonDeterminism(runID: String, eventIndex: Int, recorded: String, actual: String)
        case contextMisuse(operation: String)
        case strayAwait(runID: String)
        case evicted(runID: String)
        case runHeld(runID: String, reason: String)
        case badResetPoint(runID: String, index: Int, reason: String)
        case shuttingDown
        case workflowIDReused(workflowID: String, runID: String, status: String, policy: String)
        case badSignalInput(runID: String, signal: String, type: String, reason: String)
        case payloadTooLarge(what: String, bytes: Int, limit: Int = DurableLimits.maximumPayloadBytes)
        /// `what` is "workflow ID", "workflow type" or "signal name"; `bytes` its length in UTF-8.
        case invalidIdentifier(what: String, bytes: Int)
        /// `what` holds a NUL character (U+0000).
        case identifierWithNUL(what: String)
    }

    package let detail: Detail

    package init(_ detail: Detail) { self.detail = detail }

    /// What kind of error this is.
    public var code: Code {
        switch detail {
        case .unknownWorkflowType: .unknownWorkflowType
        case .unknownActivityType: .unknownActivityType
        case .unknownQuery: .unknownQuery
        case .badInput: .badInput
        case .badOutput: .badOutput
        case .nonDeterminism: .nonDeterminism
        case .contextMisuse: .contextMisuse
        case .strayAwait: .strayAwait
        case .evicted: .evicted
        case .runHeld: .runHeld
        case .badResetPoint: .badResetPoint
        case .shuttingDown: .shuttingDown
        case .workflowIDReused: .workflowIDReused
        case .badSignalInput: .badSignalInput
        case .payloadTooLarge: .payloadTooLarge
        case .invalidIdentifier, .identifierWithNUL: .invalidIdentifier
        }
    }

    /// The run the error is about, when it is about one.
    public var runID: String? {
        switch detail {
        case .unknownQuery(let runID, _, _), .nonDeterminism(let runID, _, _, _), .strayAwait(let runID),
            .evicted(let runID), .runHeld(let runID, _), .badResetPoint(let runID, _, _),
            .workflowIDReused(_, let runID, _, _), .badSignalInput(let runID, _, _, _):
            runID
        default: nil
        }
    }

    /// `value` as payload JSON. - Throws: `badInput` naming `what` when it does not encode.
    static func encode<Value: Encodable>(
        _ value: Value, with encoder: JSONEncoder = .payload(), as what: @autoclosure () -> String
    ) throws(DurableError) -> Data {
        do {
            return try encoder.encode(value)
        } catch {
            throw DurableError(.badInput(type: what(), reason: "\(error)"))
        }
    }

    /// Throws `payloadTooLarge` naming `what` when `data` is over ``DurableLimits/maximumPayloadBytes``.
    static func checkPayload(_ data: Data?, _ what: @autoclosure () -> String) throws(DurableError) {
        if let data, data.count > DurableLimits.maximumPayloadBytes {
            throw DurableError(.payloadTooLarge(what: what(), bytes: data.count))
        }
    }

    /// `true` for a replay that did not match the recorded history.
    public var isNonDeterminism: Bool { code == .nonDeterminism }

    public var description: String {
        switch detail {
        case .unknownWorkflowType(let name, let known):
            "unknown workflow type '\(name)'"
                + (known.isEmpty ? " (no workflow types are registered)" : "; known types: \(known.joined(separator: ", "))")
        case .unknownQuery(let runID, let name, let known):
            "run \(runID) has no query '\(name)'"
                + (known.isEmpty ? " (it registers no query handlers)" : "; it answers: \(known.joined(separator: ", "))")
        case .unknownActivityType(let name):
            "activity type '\(name)' is not registered in this worker"
        case .badInput(let type, let reason):
            "input is not a valid \(type): \(reason)"
        case .badOutput(let type, let reason):
            "result is not a valid \(type): \(reason)"
        case .nonDeterminism(let runID, let index, let recorded, let actual):
            "non-determinism in run \(runID) at event \(index): history recorded \(recorded), the code did \(actual)"
        case .contextMisuse(let operation):
            "WorkflowContext.\(operation) was called outside the workflow's executor (from Task.detached, "
                + "an unstructured Task, another actor or after the run ended); workflow code must stay on "
                + "the workflow's task tree"
        case .strayAwait(let runID):
            "run \(runID): workflow code awaited something outside the engine (Task.sleep, an actor, I/O); "
                + "use the context's operations and activities instead"
        case .evicted(let runID):
            "run \(runID) was evicted from this worker"
        case .runHeld(let runID, let reason):
            "run \(runID) is held: \(reason)"
        case .badResetPoint(let runID, let index, let reason):
            "cannot reset run \(runID) to event \(index): \(reason)"
        case .shuttingDown:
            "the engine is shutting down"
        case .workflowIDReused(let workflowID, let runID, let status, let policy):
            "workflow ID \(workflowID) was used by run \(runID) (\(status)); the reuse policy \(policy) refuses a new run"
        case .badSignalInput(let runID, let signal, let type, let reason):
            "run \(runID): signal '\(signal)' input is not a valid \(type): \(reason)"
        case .payloadTooLarge(let what, let bytes, let limit) where limit == DurableLimits.maximumPayloadBytes:
            "\(what) is \(bytes) bytes, over the limit of \(limit) bytes (\(limit >> 20) MiB) a payload may have; "
                + "pass a reference instead"
        case .payloadTooLarge(let what, let bytes, let limit):
            "\(what) is \(bytes) bytes, over its limit of \(limit) bytes"
        case .invalidIdentifier(let what, let bytes):
            bytes == 0
                ? "the \(what) is empty"
                : "the \(what) is \(bytes) bytes long; at most \(DurableLimits.maximumIdentifierBytes) bytes of UTF-8 are allowed"
        case .identifierWithNUL(let what):
            "the \(what) contains a NUL character (U+0000), which names and IDs may not hold"
        }
    }
}

/// The four activity timeouts; see ``ActivityOptions``.
public enum TimeoutKind: String, Sendable, CaseIterable {
    case scheduleToStart, startToClose, scheduleToClose, heartbeat

    /// The name of the error type recorded for this timeout, e.g. `"StartToCloseTimeout"`.
    public var errorType: String {
        switch self {
        case .scheduleToStart: "ScheduleToStartTimeout"
        case .startToClose: "StartToCloseTimeout"
        case .scheduleToClose: "ScheduleToCloseTimeout"
        case .heartbeat: "HeartbeatTimeout"
        }
    }

    /// Whether the retry policy applies. Start-to-close and heartbeat timeouts end one attempt;
    /// schedule-to-start (it waited too long to start) and schedule-to-close (the whole budget is spent) end
    /// the activity.
    public var isRetryable: Bool { self == .startToClose || self == .heartbeat }

    init?(errorType: String) {
        guard let kind = Self.allCases.first(where: { $0.errorType == errorType }) else { return nil }
        self = kind
    }
}

/// An activity timeout. Each kind has its own type, so workflow code can catch the one it cares
/// about (`catch let timeout as HeartbeatTimeout`) or all of them (`catch let timeout as any ActivityTimeoutError`).
///
/// The same error is recorded for the attempt that timed out; workflow code receives it when the
/// timeout ended the activity (a non-retryable kind, or the last attempt).
public protocol ActivityTimeoutError: Error, Sendable, CustomStringConvertible {
    static var kind: TimeoutKind { get }
    /// The limit that was exceeded.
    var limit: Duration { get }
    var activityType: String { get }
    /// The activity's sequence number in its run.
    var sequence: Int { get }
    /// The attempt that timed out (the last one, for workflow code).
    var attempt: Int { get }
    init(limit: Duration, activityType: String, sequence: Int, attempt: Int)
}

extension ActivityTimeoutError {
    public var description: String {
        let what: String
        switch Self.kind {
        case .scheduleToStart: what = "waited longer than its schedule-to-start timeout for a slot"
        case .startToClose: what = "ran longer than its start-to-close timeout"
        case .scheduleToClose: what = "took longer in all than its schedule-to-close timeout"
        case .heartbeat: what = "sent no heartbeat within its heartbeat timeout"
        }
        return "activity \(activityType) (seq \(sequence), attempt \(attempt)) \(what) of \(limit)"
    }

    var failureInfo: FailureInfo {
        FailureInfo(type: Self.kind.errorType, message: description, retryable: Self.kind.isRetryable,
                    limitMs: limit.milliseconds)
    }
}

/// An attempt waited longer than ``ActivityOptions/scheduleToStart`` before its code started (for a
/// pool slot, a cold slot's warm-up, the worker-wide limit).
public struct ScheduleToStartTimeout: ActivityTimeoutError {
    public static let kind = TimeoutKind.scheduleToStart
    public var limit: Duration, activityType: String, sequence: Int, attempt: Int
    public init(limit: Duration, activityType: String, sequence: Int, attempt: Int) {
        (self.limit, self.activityType, self.sequence, self.attempt) = (limit, activityType, sequence, attempt)
    }
}

/// An attempt ran longer than ``ActivityOptions/startToClose``.
public struct StartToCloseTimeout: ActivityTimeoutError {
    public static let kind = TimeoutKind.startToClose
    public var limit: Duration, activityType: String, sequence: Int, attempt: Int
    public init(limit: Duration, activityType: String, sequence: Int, attempt: Int) {
        (self.limit, self.activityType, self.sequence, self.attempt) = (limit, activityType, sequence, attempt)
    }
}

/// The activity, all attempts and delays together, took longer than ``ActivityOptions/scheduleToClose``.
public struct ScheduleToCloseTimeout: ActivityTimeoutError {
    public static let kind = TimeoutKind.scheduleToClose
    public var limit: Duration, activityType: String, sequence: Int, attempt: Int
    public init(limit: Duration, activityType: String, sequence: Int, attempt: Int) {
        (self.limit, self.activityType, self.sequence, self.attempt) = (limit, activityType, sequence, attempt)
    }
}

/// An attempt sent no heartbeat for longer than ``ActivityOptions/heartbeatTimeout``.
public struct HeartbeatTimeout: ActivityTimeoutError {
    public static let kind = TimeoutKind.heartbeat
    public var limit: Duration, activityType: String, sequence: Int, attempt: Int
    public init(limit: Duration, activityType: String, sequence: Int, attempt: Int) {
        (self.limit, self.activityType, self.sequence, self.attempt) = (limit, activityType, sequence, attempt)
    }
}

extension TimeoutKind {
    /// The error of this kind, for workflow code.
    func error(limit: Duration, activityType: String, sequence: Int, attempt: Int) -> any ActivityTimeoutError {
        switch self {
        case .scheduleToStart: ScheduleToStartTimeout(limit: limit, activityType: activityType, sequence: sequence, attempt: attempt)
        case .startToClose: StartToCloseTimeout(limit: limit, activityType: activityType, sequence: sequence, attempt: attempt)
        case .scheduleToClose: ScheduleToCloseTimeout(limit: limit, activityType: activityType, sequence: sequence, attempt: attempt)
        case .heartbeat: HeartbeatTimeout(limit: limit, activityType: activityType, sequence: sequence, attempt: attempt)
        }
    }
}

/// Thrown by workflow code to end the run and start a new run of the same workflow ID with a new
/// input and an empty history; see ``WorkflowContext/continueAsNew(with:)``.
public struct ContinueAsNew: Error, Sendable {
    let input: Data
}

/// Thrown into a parent workflow when a child run did not complete: it failed, was cancelled or was
/// terminated.
public struct ChildWorkflowFailure: Error, Sendable, CustomStringConvertible {
    public var workflowType: String
    public var childRunID: String
    /// `failed`, `cancelled` or `terminated`.
    public var status: String
    public var cause: FailureInfo

    public var description: String { "child \(workflowType) (run \(childRunID)) \(status): \(cause)" }
}

/// What happens to a child run when the task awaiting it in the parent is cancelled.
public enum ChildCancellation: Sendable {
    /// Ask the child to cancel (it sees `durable cancel`) and wait for it to end.
    case cancel
    /// Stop waiting at once and let the child run on by itself.
    case abandon
}

/// Thrown by ``WorkflowContext/withTimeout(_:_:)`` when its timer fired before the operation ended.
public struct WorkflowTimeout: Error, Sendable, CustomStringConvertible {
    public var limit: Duration
    public var description: String { "the operation did not finish within \(limit)" }
}

/// Recorded for an attempt that a worker issued but never reported on, because the worker stopped
/// (a crash, SIGKILL, or shutdown). The attempt may have run in part, in full, or not at all; the
/// next attempt carries the next number and the same idempotency key. Retryable; counts as an
/// attempt, so `maximumAttempts: 1` means at most once.
public struct WorkerLost: Error, Sendable, CustomStringConvertible {
    public var attempt: Int
    public var description: String {
        "the worker stopped before attempt \(attempt) reported a result; it may have run in part or in full"
    }
}

/// A pool could not warm a slot for an attempt: its factory threw or exceeded the pool's warm-up timeout.
public struct SlotWarmUpFailed: Error, Sendable, CustomStringConvertible {
    public var pool: String
    public var reason: String
    public var description: String { "pool \(pool) could not warm a slot: \(reason)" }
}

extension FailureInfo {
    /// Records any error: type name and description, and the stderr tail of a process, if given.
    package init(_ error: any Error, retryable: Bool? = nil, stderr: String?) {
        self.init(error, retryable: retryable)
        if let stderr = stderr?.trimmingCharacters(in: .whitespacesAndNewlines), !stderr.isEmpty {
            message += "; stderr: \(stderr)"
        }
    }

    /// Records any error: type name and description.
    package init(_ error: any Error, retryable: Bool? = nil) {
        if let timeout = error as? any ActivityTimeoutError {
            self = timeout.failureInfo
            if let retryable { self.retryable = retryable }
        } else if let app = error as? ApplicationError {
            self.init(type: app.type, message: app.message, retryable: retryable ?? !app.nonRetryable)
        } else if let failure = error as? ActivityFailure {
            self.init(type: "ActivityFailure", message: failure.description, retryable: retryable)
        } else {
            self.init(type: String(describing: Swift.type(of: error)), message: String(describing: error), retryable: retryable)
        }
    }
}
