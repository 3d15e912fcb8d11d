package import DurableJournal
package import Foundation

/// An activity that history shows scheduled but not finished: the engine dispatches it after replay.
package struct PendingActivity: Sendable {
    package var seq: Int
    package var activityType: String
    package var input: Data
    package var options: ActivityOptions
    /// The attempt number to run next (1 + attempts already recorded as failed).
    package var attempt: Int
}

extension WorkflowInstance {
    /// Re-runs the workflow against its recorded history, one activation per input event, and checks
    /// that the code emits exactly the commands recorded after each input event.
    ///
    /// - Returns: the activities still owed a result, in sequence order.
    /// - Throws: ``DurableError`` `nonDeterminism` at the first mismatch, naming the event index, what
    ///   history recorded and what the code did; or the activation errors of ``activate(_:)``.
    package func replay(
        _ events: [HistoryEvent], trace: ((WorkflowCommand) -> Void)? = nil
    ) throws(DurableError) -> [PendingActivity] {
        isReplaying = true
        defer { isReplaying = false }
        var open: [Int: WorkflowCommand] = [:]
        var failedAttempts: [Int: Int] = [:]
        var i = 0
        while i < events.count {
            let event = events[i]
            if event.kind == .activityAttemptFailed {
                failedAttempts[event.seq] = max(failedAttempts[event.seq] ?? 0, event.attempt)
                i += 1
                continue
            }
            guard event.kind.isInput else {
                throw mismatch(at: event.index, recorded: WorkflowCommand.summary(of: event),
                               actual: "nothing (a decision with no event before it that caused it)")
            }
            let emitted = try activate(event)
            if let trace { emitted.forEach(trace) }
            if event.kind == .activityCompleted || event.kind == .activityFailed {
                open[event.seq] = nil
            }
            i += 1
            var k = 0
            while i < events.count, events[i].kind.isCommand {
                let recorded = events[i]
                guard k < emitted.count else {
                    throw mismatch(at: recorded.index, recorded: WorkflowCommand.summary(of: recorded),
                                   actual: "nothing (no further decision in this activation)")
                }
                guard emitted[k].matches(recorded) else {
                    throw mismatch(at: recorded.index, recorded: WorkflowCommand.summary(of: recorded),
                                   actual: emitted[k].summary)
                }
                if case .scheduleActivity(let seq, _, _, _) = emitted[k] { open[seq] = emitted[k] }
                k += 1
                i += 1
            }
            if k < emitted.count {
                let recorded = i < events.count ? WorkflowCommand.summary(of: events[i]) : "no further event"
                throw mismatch(at: i < events.count ? events[i].index : (events.last?.index ?? -1) + 1,
                               recorded: recorded, actual: emitted[k].summary)
            }
        }
        return open.keys.sorted().compactMap { seq in
            guard case .scheduleActivity(_, let type, let input, let options) = open[seq] else { return nil }
            return PendingActivity(
                seq: seq, activityType: type, input: input, options: options,
                attempt: (failedAttempts[seq] ?? 0) + 1)
        }
    }

    private func mismatch(at index: Int, recorded: String, actual: String) -> DurableError {
        DurableError(.nonDeterminism(runID: runID, eventIndex: index, recorded: recorded, actual: actual))
    }
}
