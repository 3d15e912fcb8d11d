public import DurableJournal

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
public struct DurableError: Error, Sendable, CustomStringConvertible {
    package enum Code: Sendable {
        case unknownWorkflowType(String, known: [String])
        case unknownActivityType(String)
        case badInput(type: String, reason: String)
        case badOutput(type: String, reason: String)
        case nonDeterminism(runID: String, eventIndex: Int, recorded: String, actual: String)
        case contextMisuse(operation: String)
        case strayAwait(runID: String)
        case evicted(runID: String)
        case runHeld(runID: String, reason: String)
        case workerRunning(journal: String, holder: String)
        case shuttingDown
        case timedOut(String)
    }

    package let code: Code

    package init(_ code: Code) { self.code = code }

    /// `true` when another process holds the journal's worker lock.
    public var isWorkerRunning: Bool {
        if case .workerRunning = code { return true }
        return false
    }

    /// `true` for a replay that did not match the recorded history.
    public var isNonDeterminism: Bool {
        if case .nonDeterminism = code { return true }
        return false
    }

    public var description: String {
        switch code {
        case .unknownWorkflowType(let name, let known):
            "unknown workflow type '\(name)'"
                + (known.isEmpty ? " (no workflow types are registered)" : "; known types: \(known.joined(separator: ", "))")
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
        case .workerRunning(let journal, let holder):
            "another worker (\(holder)) is driving runs in journal \(journal); stop it first "
                + "(one worker per journal in this version)"
        case .shuttingDown:
            "the engine is shutting down"
        case .timedOut(let what):
            "timed out: \(what)"
        }
    }
}

/// The error recorded when an attempt exceeded its start-to-close timeout.
public struct StartToCloseTimeout: Error, Sendable, CustomStringConvertible {
    public var limit: Duration
    public var description: String { "attempt exceeded its start-to-close timeout of \(limit)" }
}

extension FailureInfo {
    /// Records any error: type name and description.
    package init(_ error: any Error, retryable: Bool? = nil) {
        if let app = error as? ApplicationError {
            self.init(type: app.type, message: app.message, retryable: retryable ?? !app.nonRetryable)
        } else if let failure = error as? ActivityFailure {
            self.init(type: "ActivityFailure", message: failure.description, retryable: retryable)
        } else {
            self.init(type: String(describing: Swift.type(of: error)), message: String(describing: error), retryable: retryable)
        }
    }
}
