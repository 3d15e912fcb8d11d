public import DurableJournal

/// One ended activity attempt of a run, with the lineage its event recorded (the model that served it,
/// the SHA-256 of its input and output): what `durable lineage` and the console show.
public struct LineageAttempt: Sendable {
    /// The event that ended the attempt.
    public var event: HistoryEvent
    public var activityType: String
    public var details: AttemptDetails?

    /// The events that end an attempt, with their activity's type from its `ActivityScheduled` event.
    public static func all(in events: [HistoryEvent]) -> [LineageAttempt] {
        var types: [Int: String] = [:]
        var attempts: [LineageAttempt] = []
        for event in events {
            switch event.kind {
            case .activityScheduled:
                types[event.seq] = event.name
            case .activityCompleted, .activityAttemptFailed, .activityFailed, .activityCancelled:
                attempts.append(LineageAttempt(event: event, activityType: types[event.seq] ?? "?", details: event.attemptDetails))
            default:
                break
            }
        }
        return attempts
    }

    /// `completed`, `failed, retried`, `failed` or `cancelled`.
    public var outcome: String {
        switch event.kind {
        case .activityCompleted: "completed"
        case .activityAttemptFailed: "failed, retried"
        case .activityCancelled: "cancelled"
        default: "failed"
        }
    }
}
