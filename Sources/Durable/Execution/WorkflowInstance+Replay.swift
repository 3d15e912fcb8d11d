package import DurableJournal
package import Foundation

/// An activity to run: just scheduled, or found unfinished in history after a restart.
package struct PendingActivity: Sendable {
    package var seq: Int
    package var activityType: String
    package var input: Data
    package var options: ActivityOptions
    /// When the activity was scheduled (the recorded time), the start of its schedule-to-close timeout.
    package var scheduledAt: Date
    /// Attempts history records as failed (the highest attempt number among them).
    package var failedAttempts = 0
    /// When the last failed attempt was recorded, and the retry delay recorded with it.
    package var lastFailureAt: Date?
    package var retryDelayMs = 0
    /// The last heartbeat details recorded (JSON).
    package var lastHeartbeat: Data?
    /// The workflow asked for the activity to be cancelled.
    package var cancelRequested = false
    /// Found in history after a restart (rather than scheduled by this process).
    package var recovered = false

    package init(seq: Int, activityType: String, input: Data, options: ActivityOptions, scheduledAt: Date) {
        self.seq = seq
        self.activityType = activityType
        self.input = input
        self.options = options
        self.scheduledAt = scheduledAt
    }
}

/// A timer that history shows started and neither fired nor cancelled.
package struct PendingTimer: Sendable, Equatable {
    package var seq: Int
    package var due: Date
}

/// What a replay leaves to do: activities owed a result and timers still running.
package struct ReplayResult: Sendable {
    package var activities: [PendingActivity] = []
    /// In due order.
    package var timers: [PendingTimer] = []
}

extension WorkflowInstance {
    /// Re-runs the workflow against its recorded history, one activation per input event, and checks
    /// that the code emits exactly the commands recorded after each input event.
    ///
    /// - Returns: the activities still owed a result, in sequence order, with what history says of
    ///   their attempts, and the timers still running, in due order.
    /// - Throws: ``DurableError`` `nonDeterminism` at the first mismatch, naming the event index, what
    ///   history recorded and what the code did; or the activation errors of ``activate(_:)``.
    /// - Parameter openEnded: the last activation may have made decisions that are not recorded yet
    ///   (a pending run, or one held at its last activation): accept them instead of reporting a
    ///   mismatch. For reading a run's state (queries), not for checking code.
    package func replay(
        _ events: [HistoryEvent], openEnded: Bool = false, trace: ((WorkflowCommand) -> Void)? = nil
    ) throws(DurableError) -> ReplayResult {
        isReplaying = true
        defer { isReplaying = false }
        var timers: [Int: Date] = [:]
        var open: [Int: PendingActivity] = [:]
        var i = 0
        while i < events.count {
            let event = events[i]
            if event.kind == .workflowTerminated || event.kind == .activityOutput {  // the engine's record, not the code's
                i += 1
                continue
            }
            if event.kind == .activityAttemptFailed || event.kind == .activityHeartbeat {
                if var pending = open[event.seq] {
                    if event.kind == .activityHeartbeat {
                        // Heartbeats are journaled in the background: one of an attempt whose failure
                        // (which holds its last details) is already recorded is stale.
                        if event.attempt > pending.failedAttempts { pending.lastHeartbeat = event.data }
                    } else if event.attempt >= pending.failedAttempts {
                        pending.failedAttempts = event.attempt
                        pending.lastFailureAt = event.time
                        pending.retryDelayMs = event.failure?.nextRetryDelayMs ?? 0
                        if let beat = event.attemptDetails?.heartbeat { pending.lastHeartbeat = Data(beat.utf8) }
                    }
                    open[event.seq] = pending
                }
                i += 1
                continue
            }
            guard event.kind.isInput else {
                throw mismatch(at: event.index, recorded: WorkflowCommand.summary(of: event),
                               actual: "nothing (a decision with no event before it that caused it)")
            }
            var marked: Set<String> = []
            var j = i + 1
            while j < events.count, events[j].kind.isCommand {
                if events[j].kind == .patchMarker, let id = events[j].name { marked.insert(id) }
                j += 1
            }
            recordedPatches = marked
            let emitted = try activate(event)
            recordedPatches = []
            if let trace { emitted.forEach(trace) }
            if event.kind == .activityCompleted || event.kind == .activityFailed || event.kind == .activityCancelled {
                open[event.seq] = nil
            }
            if event.kind == .timerFired { timers[event.seq] = nil }
            i += 1
            var k = 0
            while i < events.count, events[i].kind.isCommand {
                let recorded = events[i]
                // A marker the code no longer asks about (its patched() call was removed once no run
                // needed the old branch) is skipped.
                if recorded.kind == .patchMarker, !(k < emitted.count && emitted[k].matches(recorded)) {
                    i += 1
                    continue
                }
                guard k < emitted.count else {
                    throw mismatch(at: recorded.index, recorded: WorkflowCommand.summary(of: recorded),
                                   actual: "nothing (no further decision in this activation)")
                }
                guard emitted[k].matches(recorded) else {
                    throw mismatch(at: recorded.index, recorded: WorkflowCommand.summary(of: recorded),
                                   actual: emitted[k].summary)
                }
                switch emitted[k] {
                case .scheduleActivity(let seq, let type, let input, let options):
                    var pending = PendingActivity(
                        seq: seq, activityType: type, input: input, options: options, scheduledAt: recorded.time)
                    pending.recovered = true
                    open[seq] = pending
                case .cancelActivity(let seq):
                    open[seq]?.cancelRequested = true
                case .startTimer(let seq, let due):
                    timers[seq] = due
                case .cancelTimer(let seq):
                    timers[seq] = nil
                case .markPatch, .rejectSignal, .completeWorkflow, .failWorkflow, .cancelWorkflow, .continueAsNew,
                     .startChild, .cancelChild:
                    break
                }
                k += 1
                i += 1
            }
            if k < emitted.count && !(openEnded && i == events.count) {
                let recorded = i < events.count ? WorkflowCommand.summary(of: events[i]) : "no further event"
                throw mismatch(at: i < events.count ? events[i].index : (events.last?.index ?? -1) + 1,
                               recorded: recorded, actual: emitted[k].summary)
            }
        }
        return ReplayResult(
            activities: open.keys.sorted().compactMap { open[$0] },
            timers: timers.map { PendingTimer(seq: $0.key, due: $0.value) }.sorted { ($0.due, $0.seq) < ($1.due, $1.seq) })
    }

    private func mismatch(at index: Int, recorded: String, actual: String) -> DurableError {
        DurableError(.nonDeterminism(runID: runID, eventIndex: index, recorded: recorded, actual: actual))
    }
}
