public import DurableJournal

/// Which `ActivityOutput` events of a history hold discarded partial output: the output of an attempt
/// that failed, was cancelled, was cut off by a lost worker (a later attempt exists) or was left when
/// the run closed. The partial output of the attempt that completed is kept (its result is the whole
/// output); that of an attempt still running is neither.
public struct PartialOutputVerdicts: Sendable {
    private struct Attempt: Hashable {
        var seq: Int
        var attempt: Int
    }

    private var completed: Set<Attempt> = []
    private var ended: Set<Attempt> = []
    /// Activities that ended (completed, failed or cancelled) with the attempt that ended them.
    private var closedActivities: Set<Int> = []
    private var lastAttempt: [Int: Int] = [:]
    private let runClosed: Bool

    /// - Parameter runClosed: the run has ended (an attempt without an end then never completes).
    public init(_ events: [HistoryEvent], runClosed: Bool) {
        self.runClosed = runClosed
        for event in events where event.seq != 0 {
            let attempt = Attempt(seq: event.seq, attempt: event.attempt)
            switch event.kind {
            case .activityCompleted:
                completed.insert(attempt)
                closedActivities.insert(event.seq)
            case .activityFailed, .activityCancelled:
                ended.insert(attempt)
                closedActivities.insert(event.seq)
            case .activityAttemptFailed:
                ended.insert(attempt)
            default:
                break
            }
            if event.attempt > 0 { lastAttempt[event.seq] = max(lastAttempt[event.seq] ?? 0, event.attempt) }
        }
    }

    /// Whether `event` is partial output that was discarded (`false` for any other kind of event).
    public func isDiscarded(_ event: HistoryEvent) -> Bool {
        guard event.kind == .activityOutput else { return false }
        let attempt = Attempt(seq: event.seq, attempt: event.attempt)
        if completed.contains(attempt) { return false }
        return ended.contains(attempt) || closedActivities.contains(event.seq) || runClosed
            || (lastAttempt[event.seq] ?? 0) > event.attempt
    }
}
