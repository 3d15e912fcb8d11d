package import Foundation

/// One activity across its attempts, as a value: which attempt is current, the retry between
/// attempts, the schedule-to-close deadline, the workflow's cancellation, and the one time the
/// activity ends.
///
/// Each attempt is an ``AttemptStateMachine`` of its own; this machine learns how it ended
/// (``attemptCompleted(_:)``, ``attemptFailed(_:retryable:immediately:now:)``,
/// ``attemptCancelled(_:)``) and decides what follows: the activity's end, or a failure to journal and
/// a retry once it is journaled (after a crash, recovery then knows which attempt numbers were used).
/// Every end goes through one ``Action/finish(_:)``; events after it find the machine
/// ``State/finished``. Like the attempt's machine it does no I/O and knows no time but what it is
/// told; ``ActivityExecution`` holds it under a lock and carries out its actions. Attempts are
/// generic, so tests use labels:
///
/// ```swift
/// var activity = ActivityStateMachine<String>(retry: .default, closeDeadline: nil)
/// _ = activity.issue("a1", number: 1)                    // .start("a1")
/// _ = activity.attemptFailed(1, retryable: true, now: now)  // .recordFailure(attempt: 1, retryDelay: 1 s)
/// _ = activity.failureRecorded(1)                        // .armRetryTimer(next: 2, after: 1 s)
/// _ = activity.issue("a2", number: 2)                    // .start("a2"), when the timer fires
/// ```
package struct ActivityStateMachine<Attempt: Sendable>: Sendable {
    package let retry: RetryPolicy
    /// When the schedule-to-close timeout ends the activity, if it has one.
    package let closeDeadline: Date?
    package private(set) var state: State
    /// The workflow cancelled the activity: no attempt starts any more, and the current one's end is
    /// the activity's cancellation (unless it completed).
    package private(set) var cancelRequested: Bool
    private var closeTimer: Int?
    /// The last heartbeat details recorded, for the next attempt to resume from.
    package private(set) var lastHeartbeat: Data?

    /// - Parameters:
    ///   - lastAttempt: the attempts already issued, by a worker before a restart.
    ///   - cancelRequested: the workflow cancelled the activity before it was dispatched here.
    package init(
        retry: RetryPolicy, closeDeadline: Date?, lastAttempt: Int = 0, cancelRequested: Bool = false,
        lastHeartbeat: Data? = nil
    ) {
        self.retry = retry
        self.closeDeadline = closeDeadline
        self.state = .idle(lastAttempt: lastAttempt)
        self.cancelRequested = cancelRequested
        self.lastHeartbeat = lastHeartbeat
    }

    package var isFinished: Bool {
        if case .finished = state { true } else { false }
    }

    /// The number of the last attempt issued (0 before the first).
    package var lastAttempt: Int {
        switch state {
        case .idle(let number), .attempting(_, let number), .recordingFailure(let number, _): number
        case .waitingToRetry(let next, _): next - 1
        case .finished(let number): number
        }
    }

    // MARK: - Attempts

    /// Attempt `number` is to start (the first one, or a retry whose delay is over).
    /// - Returns: ``Action/start(_:)``, the activity's cancellation, or nothing when it has ended.
    package mutating func issue(_ attempt: Attempt, number: Int) -> Action {
        switch state {
        case .idle, .waitingToRetry:
            if cancelRequested { return finish(.cancelled, attempt: number - 1) }
            state = .attempting(attempt, number: number)
            return .start(attempt)
        case .attempting, .recordingFailure, .finished:
            return .none
        }
    }

    /// The current attempt completed.
    package mutating func attemptCompleted(_ number: Int) -> Action {
        guard case .attempting(_, number) = state else { return .none }
        return finish(.completed, attempt: number)
    }

    /// The current attempt was cancelled (it stopped as the workflow asked, or its cancelled code ended
    /// otherwise).
    package mutating func attemptCancelled(_ number: Int) -> Action {
        guard case .attempting(_, number) = state else { return .none }
        return finish(.cancelled, attempt: number)
    }

    /// Attempt `number` failed (the current one, or one a worker issued before a restart and never
    /// reported on).
    /// - Parameters:
    ///   - retryable: the error may be retried (neither marked non-retryable nor of a type the policy
    ///     lists, nor a kind of timeout that is never retried).
    ///   - immediately: retry without the policy's delay (a lost attempt: nothing suggests the
    ///     activity itself needs a pause).
    ///   - now: the engine clock's time, to check the retry against the schedule-to-close deadline.
    /// - Returns: ``Action/recordFailure(attempt:retryDelay:)`` when a retry is due (then report
    ///   ``failureRecorded(_:)``), or the activity's end: failed, or cancelled when the workflow asked.
    package mutating func attemptFailed(_ number: Int, retryable: Bool, immediately: Bool = false, now: Date) -> Action {
        switch state {
        case .attempting(_, number), .idle(number):  // idle: the attempt lost before a restart
            break
        case .idle, .attempting, .recordingFailure, .waitingToRetry, .finished:
            return .none
        }
        if cancelRequested { return finish(.cancelled, attempt: number) }
        guard retryable && retry.allowsAttempt(after: number) else { return finish(.failed, attempt: number) }
        let delay = immediately ? .zero : retry.delay(afterAttempt: number)
        if let closeDeadline, now.addingTimeInterval(Double(delay.milliseconds) / 1000) >= closeDeadline {
            // The next attempt could not start before the deadline (or it has passed while this
            // attempt ended): this attempt's failure is the activity's.
            return finish(.failed, attempt: number)
        }
        state = .recordingFailure(number, retryDelay: delay)
        return .recordFailure(attempt: number, retryDelay: delay)
    }

    /// The failure of ``Action/recordFailure(attempt:retryDelay:)`` is journaled.
    /// - Returns: ``Action/armRetryTimer(next:after:)`` (report ``retryTimerArmed(_:)``; when it fires,
    ///   ``issue(_:number:)`` the next attempt), or the cancellation the workflow asked for meanwhile.
    package mutating func failureRecorded(_ number: Int) -> Action {
        guard case .recordingFailure(number, let delay) = state else { return .none }
        if cancelRequested { return finish(.cancelled, attempt: number) }
        state = .waitingToRetry(next: number + 1, timer: nil)
        return .armRetryTimer(next: number + 1, after: delay)
    }

    /// Resumes a recovered activity whose last failure was journaled before the restart: the next
    /// attempt starts once the rest of its retry delay is over.
    package mutating func retryPending(_ number: Int, after delay: Duration) -> Action {
        guard case .idle(number) = state else { return .none }
        state = .recordingFailure(number, retryDelay: max(delay, .zero))
        return failureRecorded(number)
    }

    /// A recovered activity that the workflow cancelled before the restart ends without another attempt.
    package mutating func endCancelledBeforeRestart() -> Action {
        guard case .idle(let last) = state, cancelRequested else { return .none }
        return finish(.cancelled, attempt: last)
    }

    /// The retry timer was armed under `id`.
    package mutating func retryTimerArmed(_ id: Int) -> Action {
        guard case .waitingToRetry(let next, nil) = state else { return .cancelTimer(id) }  // fired or moot
        state = .waitingToRetry(next: next, timer: id)
        return .none
    }

    /// The attempt's heartbeat details, recorded with its end: the next attempt resumes from them.
    package mutating func heartbeatRecorded(_ details: Data) {
        lastHeartbeat = details
    }

    // MARK: - From outside

    /// The workflow cancelled the activity: between attempts it ends now; the current attempt is
    /// cancelled (``Action/cancelAttempt(_:)``) and its end becomes the activity's.
    package mutating func cancel() -> Action {
        guard !isFinished, !cancelRequested else { return .none }
        cancelRequested = true
        switch state {
        case .attempting(let attempt, _):
            return .cancelAttempt(attempt)
        case .waitingToRetry(let next, _):
            return finish(.cancelled, attempt: next - 1)
        case .idle, .recordingFailure, .finished:
            return .none  // the next step sees the request
        }
    }

    /// The schedule-to-close timer was armed under `id`.
    package mutating func closeTimerArmed(_ id: Int) -> Action {
        guard !isFinished else { return .cancelTimer(id) }
        closeTimer = id
        return .none
    }

    /// The schedule-to-close deadline passed (its timer fired, or it had passed when a recovered
    /// activity was resumed).
    /// - Returns: ``Action/timeOutAttempt(_:number:)`` for a current attempt (if it has ended already,
    ///   report ``closeDeadlinePassedAfterAttempt(_:)``), else the activity's failure.
    package mutating func closeDeadlinePassed() -> Action {
        closeTimer = nil
        switch state {
        case .attempting(let attempt, let number):
            return .timeOutAttempt(attempt, number: number)
        case .idle, .recordingFailure, .waitingToRetry:
            return finish(.timedOut, attempt: lastAttempt)
        case .finished:
            return .none
        }
    }

    /// The attempt that ``Action/timeOutAttempt(_:number:)`` named had ended already: unless its end
    /// has reached this machine first, the deadline ends the activity.
    package mutating func closeDeadlinePassedAfterAttempt(_ number: Int) -> Action {
        guard case .attempting(_, number) = state else { return .none }
        return finish(.timedOut, attempt: number)
    }

    /// The run stops here (the worker is stopping, or the run ended or is held): nothing more is
    /// recorded. - Returns: ``Action/stop(_:)``, once.
    package mutating func stop() -> Action {
        var stop = Stop(timers: timers)
        switch state {
        case .attempting(let attempt, _): stop.attempt = attempt
        case .idle, .recordingFailure, .waitingToRetry: break
        case .finished: return .none
        }
        state = .finished(lastAttempt: lastAttempt)
        closeTimer = nil
        return .stop(stop)
    }

    private var timers: Timers {
        var timers = Timers(close: closeTimer)
        if case .waitingToRetry(_, let timer) = state { timers.retry = timer }
        return timers
    }

    private mutating func finish(_ outcome: Outcome, attempt: Int) -> Action {
        let finish = Finish(outcome: outcome, attempt: max(attempt, 0), timers: timers)
        state = .finished(lastAttempt: attempt)
        closeTimer = nil
        return .finish(finish)
    }
}

// MARK: - Vocabulary

extension ActivityStateMachine {
    /// How the activity ended, as its history records it.
    package enum Outcome: Sendable, Equatable {
        /// The current attempt's output (`ActivityCompleted`).
        case completed
        /// The current attempt's failure (`ActivityFailed`), not retried.
        case failed
        /// `ActivityCancelled`: with the current attempt's end, or plain between attempts.
        case cancelled
        /// The schedule-to-close deadline passed between attempts (`ActivityFailed` with
        /// ``ScheduleToCloseTimeout``).
        case timedOut
    }

    /// The timers to cancel when the activity ends.
    package struct Timers: Sendable, Equatable {
        package var close: Int?
        package var retry: Int?
    }

    /// The activity's end.
    package struct Finish: Sendable, Equatable {
        package var outcome: Outcome
        /// The attempt it is recorded with (the last one issued).
        package var attempt: Int
        package var timers: Timers
    }

    /// What ``stop()`` lets go of.
    package struct Stop: Sendable {
        package var timers: Timers
        /// The current attempt, to stop (``AttemptStateMachine/workerStopping(now:)``).
        package var attempt: Attempt?
    }

    /// What the caller must do.
    package enum Action: Sendable {
        case none
        /// Ask for the attempt's slot (``AttemptStateMachine/requestSlot(ticket:inline:)``).
        case start(Attempt)
        /// Pass the cancellation to the attempt (``AttemptStateMachine/cancelRequested(now:)``).
        case cancelAttempt(Attempt)
        /// Time the attempt out (``AttemptStateMachine/timedOut(_:now:)`` with
        /// ``TimeoutKind/scheduleToClose``); if it had ended already, report
        /// ``closeDeadlinePassedAfterAttempt(_:)``.
        case timeOutAttempt(Attempt, number: Int)
        /// Journal the attempt's failure as retryable with this delay, then report ``failureRecorded(_:)``.
        case recordFailure(attempt: Int, retryDelay: Duration)
        /// Arm the retry timer (report ``retryTimerArmed(_:)``; when it fires, ``issue(_:number:)``
        /// attempt `next`).
        case armRetryTimer(next: Int, after: Duration)
        case cancelTimer(Int)
        /// The activity ended: cancel the timers and record the outcome for the workflow.
        case finish(Finish)
        /// The run stops here: cancel the timers and stop the attempt; nothing is recorded.
        case stop(Stop)
    }

    package enum State: Sendable {
        /// No attempt issued here yet; `lastAttempt` were issued before a restart.
        case idle(lastAttempt: Int)
        /// This attempt is current: waiting, running, or ended with its end on its way here.
        case attempting(Attempt, number: Int)
        /// This attempt failed; the next is issued once its failure is journaled.
        case recordingFailure(Int, retryDelay: Duration)
        /// The retry timer runs (`timer` once reported); attempt `next` starts when it fires.
        case waitingToRetry(next: Int, timer: Int?)
        case finished(lastAttempt: Int)
    }
}
