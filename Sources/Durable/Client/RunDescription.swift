public import DurableJournal
public import Foundation

/// A summary of a run for `runs show` and ``Engine/describe(_:)``.
public struct RunDescription: Sendable {
    public var run: RunRecord
    public var eventCount: Int
    /// Bytes of the payloads (inputs, results, signals) in the history, as
    /// ``WorkflowContext/historySize`` counts them; 0 when the history could not be read.
    public var historyPayloadBytes: Int = 0
    /// The workflow input as JSON.
    public var input: Data?
    /// The outcome, when the run is closed.
    public var outcome: RunOutcome?
    /// Every activity the run scheduled, in sequence order, with its attempts so far.
    public var activities: [ActivitySummary]
    /// Every durable timer the run started, in sequence order.
    public var timers: [TimerSummary] = []
    /// The run that started this one as a child, if any.
    public var parent: ParentLink?
    /// The child runs this run started, in sequence order.
    public var children: [ChildSummary] = []
    /// Why the history could not be read (a corrupt event), if it could not.
    public var historyError: JournalError?
    /// Signals sent and not yet delivered, by name, oldest first.
    public var queuedSignals: [String] = []
    /// The signal names a running run's workflow waits for now (from a replay of its history); `nil`
    /// when the run is not running or this engine has not registered the workflow type (the
    /// code-less `durable` CLI).
    public var awaitedSignals: [String]?
    /// Signals the workflow rejected because their input did not decode (``EventKind/signalRejected``).
    public var rejectedSignals: [RejectedSignal] = []

    /// The activities scheduled and not yet finished.
    public var pendingActivities: [ActivitySummary] { activities.filter { $0.state == .pending } }
}

/// A signal the workflow rejected: its input did not decode as the type the workflow waits for.
public struct RejectedSignal: Sendable, Equatable {
    public var name: String
    /// When the workflow rejected it (the time of its delivery).
    public var time: Date
    public var reason: String

    public static func from(_ events: [HistoryEvent]) -> [RejectedSignal] {
        events.filter { $0.kind == .signalRejected }.map {
            RejectedSignal(
                name: $0.name ?? "", time: $0.time, reason: $0.data.map { String(decoding: $0, as: UTF8.self) } ?? "")
        }
    }
}

/// One child run of a run (``WorkflowContext/executeChild(_:_:id:cancellation:)``).
public struct ChildSummary: Sendable, Equatable {
    public var seq: Int
    public var workflowType: String
    public var workflowID: String
    public var runID: String
    /// `running` until the parent has its outcome; then completed, failed, cancelled or terminated.
    public var state: String

    /// Reads child summaries from a parent's history.
    public static func from(_ events: [HistoryEvent]) -> [ChildSummary] {
        var children: [Int: ChildSummary] = [:]
        for event in events {
            switch event.kind {
            case .childStarted:
                let ids = event.meta.flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:]
                children[event.seq] = ChildSummary(
                    seq: event.seq, workflowType: event.name ?? "?", workflowID: ids["workflowID"] ?? "?",
                    runID: ids["runID"] ?? "?", state: "running")
            case .childClosed:
                if let outcome = event.data.flatMap({ try? JSONDecoder().decode(ChildOutcome.self, from: $0) }) {
                    children[event.seq]?.state = outcome.status
                }
            default: break
            }
        }
        return children.keys.sorted().compactMap { children[$0] }
    }
}

/// One durable timer of a run (``WorkflowContext/sleep(for:)``).
public struct TimerSummary: Sendable, Equatable {
    public enum State: String, Sendable {
        case waiting, fired, cancelled
    }

    public var seq: Int
    public var due: Date
    public var state: State

    /// Reads timer summaries from a history.
    public static func from(_ events: [HistoryEvent]) -> [TimerSummary] {
        var timers: [Int: TimerSummary] = [:]
        for event in events {
            switch event.kind {
            case .timerStarted:
                if let due = event.timerDue { timers[event.seq] = TimerSummary(seq: event.seq, due: due, state: .waiting) }
            case .timerFired where timers[event.seq]?.state == .waiting: timers[event.seq]?.state = .fired
            case .timerCancelled: timers[event.seq]?.state = .cancelled
            default: break
            }
        }
        return timers.keys.sorted().compactMap { timers[$0] }
    }
}

/// One activity of a run as its history tells it: where it stands, how many attempts it took, how
/// the last one ran and why the last failure happened.
public struct ActivitySummary: Sendable, Equatable {
    public enum State: String, Sendable {
        case pending, completed, failed, cancelled
    }

    public var seq: Int
    public var activityType: String
    public var state: State
    /// The highest attempt number recorded (0 while the first attempt has not reported).
    public var attempts: Int
    /// The workflow asked for the activity to be cancelled.
    public var cancelRequested: Bool
    /// The most recent failure recorded (an attempt's or the activity's).
    public var lastFailure: FailureInfo?
    /// How the last reported attempt ran: slot, cold or warm, durations.
    public var lastAttempt: AttemptDetails?
    /// The last heartbeat details recorded (JSON).
    public var lastHeartbeat: String?
    /// When the next attempt is due, after a failed attempt that is retried (`nil` once the activity
    /// has ended, and when no retry is waiting). A time in the past means the attempt has started.
    public var nextRetryAt: Date?

    /// Reads activity summaries from a history.
    public static func from(_ events: [HistoryEvent]) -> [ActivitySummary] {
        var summaries: [Int: ActivitySummary] = [:]
        for event in events {
            if event.kind == .activityScheduled {
                summaries[event.seq] = ActivitySummary(
                    seq: event.seq, activityType: event.name ?? "?", state: .pending, attempts: 0, cancelRequested: false)
                continue
            }
            guard var summary = summaries[event.seq] else { continue }
            summary.attempts = max(summary.attempts, event.attempt)
            switch event.kind {
            case .activityCompleted: summary.state = .completed
            case .activityFailed: summary.state = .failed
            case .activityCancelled: summary.state = .cancelled
            case .activityCancelRequested: summary.cancelRequested = true
            case .activityHeartbeat: summary.lastHeartbeat = event.data.map { String(decoding: $0, as: UTF8.self) }
            default: break
            }
            if let failure = event.failure {
                summary.lastFailure = failure
                summary.nextRetryAt = failure.nextRetryDelayMs.map { event.time.addingTimeInterval(Double($0) / 1000) }
            }
            if summary.state != .pending { summary.nextRetryAt = nil }
            if let details = event.attemptDetails {
                summary.lastAttempt = details
                if let beat = details.heartbeat { summary.lastHeartbeat = beat }
            }
            summaries[event.seq] = summary
        }
        return summaries.keys.sorted().compactMap { summaries[$0] }
    }
}
