import CoreMetrics
import Dispatch
import DurableJournal
import Foundation
import Synchronization

/// One activity of a run driven here, across its attempts: gets each attempt a slot, runs it under
/// its timeouts, and turns the attempt's end into a history event (a result, a failure, a retry, a
/// cancellation).
///
/// Every attempt ends exactly once (``AttemptRun/settle()``): by its code returning or throwing, by a
/// timeout, by a cancellation while it waits, or by the worker stopping. Whoever settles it releases
/// its slot and reports the outcome; everyone else finds it settled and does nothing.
///
/// **Inline start.** When recording an attempt's result makes the same run schedule exactly one
/// activity, and its slot is free at once, the new attempt starts on the same thread
/// (`Task.immediate`), so a sequential workflow moves from step to step without a thread hop. Slots
/// handed over later (when another attempt releases one) always start a new task, so attempts never
/// nest on one stack.
final class ActivityExecution: Sendable {
    private let engine: DurableWorker
    let driver: RunDriver
    let pending: PendingActivity
    private let firstRegistration: ActivityRegistration

    private struct State {
        var attempt: AttemptRun?
        /// The number of the last attempt issued (0 before the first): what a timeout or cancellation
        /// between attempts is recorded with.
        var lastAttempt: Int
        /// The timer that starts the next attempt after a retry delay.
        var retryTimer: Int?
        var closeTimer: Int?
        /// The schedule-to-close deadline has passed: no attempt may start.
        var closeExpired = false
        var cancelRequested = false
        var finished = false
        var lastHeartbeat: Data?
    }

    private let state: Mutex<State>

    init(engine: DurableWorker, driver: RunDriver, pending: PendingActivity, registration: ActivityRegistration) {
        self.engine = engine
        self.driver = driver
        self.pending = pending
        self.firstRegistration = registration
        self.state = Mutex(State(
            lastAttempt: pending.failedAttempts, cancelRequested: pending.cancelRequested,
            lastHeartbeat: pending.lastHeartbeat))
    }

    var seq: Int { pending.seq }
    private var options: ActivityOptions { pending.options }

    /// When the schedule-to-close timeout ends the activity, counted from its scheduling.
    private var closeDeadline: Date? {
        options.scheduleToClose.map { pending.scheduledAt.addingTimeInterval(Double($0.milliseconds) / 1000) }
    }

    // MARK: - Start

    /// Starts the first attempt; for an activity found unfinished after a restart, first records the
    /// attempt the previous worker issued and never reported on (``WorkerLost``).
    /// - Parameter inline: the first attempt may start on this thread (see the type's discussion).
    func begin(inline: Bool) {
        guard pending.recovered else {
            armCloseTimer()
            startAttempt(1, inline: inline)
            return
        }
        // An attempt counts as issued once the journal holds the event that issues it: the
        // ActivityScheduled event for attempt 1, the previous failure plus its retry delay after that.
        var lost: Int? = pending.failedAttempts + 1
        var retryIn: Duration?
        if pending.failedAttempts > 0, let failedAt = pending.lastFailureAt {
            let wait = failedAt.addingTimeInterval(Double(pending.retryDelayMs) / 1000).timeIntervalSince(engine.clock.now())
            if wait > 0 {
                lost = nil
                retryIn = .milliseconds(Int64(wait * 1000))
            }
        }
        let lastIssued = lost ?? pending.failedAttempts
        state.withLock { $0.lastAttempt = lastIssued }
        if pending.cancelRequested {  // the workflow cancelled it before the restart: nothing more runs
            let failure = lost.map { FailureInfo(WorkerLost(attempt: $0), retryable: false) } ?? cancelledFailure
            finish(.activityCancelled, attempt: lastIssued, data: encode(failure), details: nil)
            return
        }
        if let limit = options.scheduleToClose, let deadline = closeDeadline, deadline <= engine.clock.now() {
            // Its time ran out while no worker drove it: no attempt starts after the deadline.
            let error = ScheduleToCloseTimeout(
                limit: limit, activityType: pending.activityType, sequence: seq, attempt: lastIssued)
            finish(.activityFailed, attempt: lastIssued, data: encode(FailureInfo(error, retryable: false)), details: nil)
            return
        }
        armCloseTimer()
        if let lost {
            failed(attempt: lost, WorkerLost(attempt: lost), details: AttemptDetails())
        } else if let retryIn {
            scheduleAttempt(pending.failedAttempts + 1, after: retryIn)
        }
    }

    private func armCloseTimer() {
        guard let limit = options.scheduleToClose, let deadline = closeDeadline else { return }
        let timer = engine.timeouts.schedule(at: deadline) { self.scheduleToCloseExpired(limit) }
        state.withLock { $0.closeTimer = timer }
    }

    private func startAttempt(_ number: Int, inline: Bool = false) {
        guard !engine.isStopping, !driver.isClosed else { return }
        // Looked up again for retries: an activity registered again serves the next attempt.
        let registration = number == 1 ? firstRegistration
            : engine.activityRegistration(pending.activityType) ?? firstRegistration
        let attempt = AttemptRun(execution: self, registration: registration, number: number)
        let proceed = state.withLock { state -> Bool? in  // nil: the activity ended; false: cancelled
            state.retryTimer = nil
            if state.finished || state.closeExpired { return nil }
            if state.cancelRequested { return false }
            state.attempt = attempt
            state.lastAttempt = number
            return true
        }
        guard let proceed else { return }
        guard proceed else {
            finish(.activityCancelled, attempt: number - 1, data: encode(cancelledFailure), details: nil)
            return
        }
        engine.clock.beginWork()  // until settle() has posted the attempt's outcome
        if let limit = options.scheduleToStart {
            attempt.addTimer(engine.timeouts.schedule(after: limit) {
                self.settle(attempt, .timedOut(ScheduleToStartTimeout(
                    limit: limit, activityType: self.pending.activityType, sequence: self.seq, attempt: number)))
            }, startTimer: true)
        }
        let pool = registration.pool
        let ticket = pool.newTicket()
        guard attempt.setSlotTicket(ticket, inline: inline) else { return }
        pool.acquire(ticket: ticket) { grant in self.granted(attempt, grant) }
        attempt.endInlineWindow()
    }

    private func granted(_ attempt: AttemptRun, _ grant: Grant) {
        let pool = attempt.registration.pool
        pool.metrics.queueWait.recordNanoseconds(Int64(attempt.markGranted()))
        switch grant {
        case .warm(let lease):
            acquirePermit(attempt, lease)
        case .cold(let slot):
            Task {
                do {
                    self.acquirePermit(attempt, try await pool.warmUp(slot: slot))
                } catch {
                    self.settle(attempt, .finished(.failure(error)))
                }
            }
        case .unavailable(let error):
            settle(attempt, .finished(.failure(error)))
        }
    }

    private func acquirePermit(_ attempt: AttemptRun, _ lease: Lease) {
        guard attempt.hold(lease) else {  // settled while it waited: give the slot back
            attempt.registration.pool.release(lease, retire: false)
            return
        }
        guard let permits = engine.permits else {
            run(attempt, lease)
            return
        }
        let ticket = permits.newTicket()
        guard attempt.setPermitTicket(ticket) else { return }  // settled meanwhile: settle released the slot
        permits.acquire(ticket: ticket) { self.run(attempt, lease) }
    }

    // MARK: - Running

    private func run(_ attempt: AttemptRun, _ lease: Lease) {
        guard let (startTimer, inline) = attempt.beginRunning() else {  // settled while it waited for a permit
            engine.permits?.release()
            return
        }
        if startTimer != 0 { engine.timeouts.cancel(startTimer) }
        let number = attempt.number
        let context = ActivityContext(
            runID: driver.runID, workflowID: driver.workflowID, activityType: pending.activityType, sequence: seq,
            attempt: number, startedAt: engine.clock.now(), slot: lease.name,
            lastHeartbeatData: state.withLock { $0.lastHeartbeat }, heartbeats: attempt)
        if let limit = options.startToClose {
            attempt.addTimer(engine.timeouts.schedule(after: limit) {
                self.settle(attempt, .timedOut(StartToCloseTimeout(
                    limit: limit, activityType: self.pending.activityType, sequence: self.seq, attempt: number)))
            })
        }
        if let limit = options.heartbeatTimeout { armHeartbeatCheck(attempt, limit, after: limit) }
        let invoke = attempt.registration.invoke
        let input = pending.input
        let runID = driver.runID
        let body: @Sendable () async -> Void = {
            let result: Result<Data, any Error>
            do {
                result = .success(try await invoke(lease.resource, context, input))
            } catch {
                result = .failure(error)
            }
            ActivityChain.$runID.withValue(runID) { self.settle(attempt, .finished(result)) }
        }
        attempt.setTask(inline ? Task.immediate(operation: body) : Task(operation: body))
    }

    /// Checks the gap since the attempt's last heartbeat when `after` has passed; fires the heartbeat
    /// timeout or checks again when the next heartbeat could be overdue (no timer per heartbeat).
    private func armHeartbeatCheck(_ attempt: AttemptRun, _ limit: Duration, after delay: Duration) {
        attempt.setHeartbeatTimer(engine.timeouts.schedule(after: delay) {
            let quiet = attempt.nanosSinceHeartbeat()
            let limitNanos = UInt64(limit.milliseconds) * 1_000_000
            if quiet >= limitNanos {
                self.settle(attempt, .timedOut(HeartbeatTimeout(
                    limit: limit, activityType: self.pending.activityType, sequence: self.seq, attempt: attempt.number)))
            } else if !attempt.isSettled {
                self.armHeartbeatCheck(attempt, limit, after: .nanoseconds(Int64(limitNanos - quiet)))
            }
        })
    }

    /// Journals an attempt's heartbeat details (throttled by the caller). Posted from another thread:
    /// the caller may be a process pool's reader thread, which must not wait for a commit.
    func journalHeartbeat(_ attempt: AttemptRun, _ details: Data) {
        let event = HistoryEvent(
            index: 0, kind: .activityHeartbeat, time: engine.clock.now(), seq: seq, attempt: attempt.number, data: details)
        engine.clock.beginWork()
        DispatchQueue.global().async {
            self.driver.post(.record(event, committed: nil))
            self.engine.clock.endWork()
        }
    }

    func cancelTimer(_ timer: Int) { engine.timeouts.cancel(timer) }

    var heartbeatJournalNanos: UInt64 { UInt64(max(0, engine.workerOptions.heartbeatJournalInterval.milliseconds)) * 1_000_000 }

    // MARK: - Ending attempts

    enum Outcome {
        case finished(Result<Data, any Error>)
        case timedOut(any ActivityTimeoutError)
        /// Cancelled by the workflow before its code ran, or the worker is stopping.
        case cancelled
    }

    /// Ends an attempt, once: releases what it holds and reports the outcome.
    func settle(_ attempt: AttemptRun, _ outcome: Outcome) {
        guard let held = attempt.settle() else { return }
        let pool = attempt.registration.pool
        for timer in held.timers { engine.timeouts.cancel(timer) }
        if let ticket = held.slotTicket { _ = pool.cancel(ticket: ticket) }
        // A permit granted meanwhile reaches run(), which finds the attempt settled and releases it.
        if let ticket = held.permitTicket { _ = engine.permits?.cancel(ticket: ticket) }
        let codeRan = held.runNanos != nil
        // A Bool test first: no dynamic cast on the path of every in-process step.
        let process = attempt.registration.isProcessPool ? held.lease?.resource as? WorkerProcess : nil
        var stderr: String?
        if case .timedOut = outcome, codeRan, let tail = process?.stderrTail(), !tail.isEmpty {
            stderr = tail  // what a hung process wrote (before it is stopped below) explains the hang
        }
        var failed = true
        var retire = false
        switch outcome {
        case .finished(.success):
            failed = false
        case .finished(.failure(let error)) where error is CancellationError && held.task?.isCancelled == true:
            // The code stopped because it was cancelled: like a cancellation, its slot is replaced
            // and it is not the activity's failure.
            retire = true
            failed = false
        case .finished(.failure(let error)):
            // A process that answered with an error (or with output of the wrong shape) is in
            // service; one that crashed or broke the protocol is unhealthy and replaced regardless.
            retire = pool.options.recycleAfterFailure && !(process != nil && error is ApplicationError)
        case .timedOut, .cancelled:
            // Code that was running is cancelled (a process is killed) and may still use its slot.
            held.task?.cancel()
            retire = codeRan
            if case .cancelled = outcome { failed = false }  // not the activity's failure
        }
        // A shared pool has no queue and no slots: its attempts record only their run time.
        var details = AttemptDetails(
            queueMs: pool.isShared ? nil : held.queueNanos.map { Double($0) / 1e6 },
            heartbeat: held.heartbeat.map { String(decoding: $0, as: UTF8.self) })
        if let lease = held.lease {
            if !pool.isShared {
                details.slot = lease.name
                details.cold = lease.cold
            }
            if lease.cold { details.warmUpMs = Double(lease.warmUpNanos) / 1e6 }
            details.pid = process?.pid
            if let runNanos = held.runNanos {
                details.runMs = Double(runNanos) / 1e6
                pool.metrics.run.recordNanoseconds(Int64(runNanos))
                engine.permits?.release()
            }
            pool.release(lease, retire: retire)
        }
        if failed { pool.metrics.failures.increment() }
        ended(attempt.number, outcome, details, isShared: pool.isShared, stderr: stderr)
        engine.clock.endWork()
    }

    /// - Parameter stderr: the stderr tail of a process whose attempt timed out, for the failure.
    private func ended(_ number: Int, _ outcome: Outcome, _ details: AttemptDetails, isShared: Bool, stderr: String?) {
        guard !engine.isStopping else { return }
        let cancelRequested = state.withLock { state -> Bool in
            if let beat = details.heartbeat { state.lastHeartbeat = Data(beat.utf8) }
            return state.cancelRequested
        }
        switch outcome {
        case .finished(.success(let output)):
            // An activity without a pool records details only when it fails: a success's duration is
            // in the event times, and the details would cost a sequential step several per cent.
            finish(.activityCompleted, attempt: number, data: output, details: isShared ? nil : details)
        case .finished(.failure(let error)) where cancelRequested:
            let failure = error is CancellationError ? cancelledFailure : FailureInfo(error, retryable: false)
            finish(.activityCancelled, attempt: number, data: encode(failure), details: details)
        case .timedOut(let error) where cancelRequested:
            finish(.activityCancelled, attempt: number, data: encode(FailureInfo(error, retryable: false, stderr: stderr)),
                   details: details)
        case .cancelled:
            finish(.activityCancelled, attempt: number, data: encode(cancelledFailure), details: details)
        case .finished(.failure(let error)):
            failed(attempt: number, error, details: details)
        case .timedOut(let error):
            failed(attempt: number, error, details: details, stderr: stderr)
        }
    }

    /// Records a failed attempt and schedules the next, or ends the activity when no retry is due.
    private func failed(attempt number: Int, _ error: any Error, details: AttemptDetails, stderr: String? = nil) {
        let policy = options.retry
        var failure = FailureInfo(error, stderr: stderr)
        let retryable = failure.retryable != false && !policy.nonRetryableErrorTypes.contains(failure.type)
        guard retryable && policy.allowsAttempt(after: number) else {
            failure.retryable = false
            finish(.activityFailed, attempt: number, data: encode(failure), details: details)
            return
        }
        // A lost attempt is retried at once: nothing suggests the activity itself needs a pause.
        let delay = error is WorkerLost ? .zero : policy.delay(afterAttempt: number)
        if let deadline = closeDeadline, state.withLock({ $0.closeExpired })
            || engine.clock.now().addingTimeInterval(Double(delay.milliseconds) / 1000) >= deadline {
            // The next attempt could not start before the schedule-to-close deadline (or it has
            // passed while this attempt ended): this attempt's failure is the activity's.
            failure.retryable = false
            finish(.activityFailed, attempt: number, data: encode(failure), details: details)
            return
        }
        failure.retryable = true
        failure.nextRetryDelayMs = Int(delay.milliseconds)
        let event = HistoryEvent(
            index: 0, kind: .activityAttemptFailed, time: engine.clock.now(), seq: seq, attempt: number, data: encode(failure),
            meta: details.json)
        // The next attempt is issued only once this failure is journaled: after a crash, recovery
        // then knows which attempt numbers were used.
        driver.post(.record(event, committed: { result in
            if case .success = result { self.scheduleAttempt(number + 1, after: delay) }
        }))
    }

    /// Starts attempt `number` after `delay`, unless the workflow cancelled the activity meanwhile.
    private func scheduleAttempt(_ number: Int, after delay: Duration) {
        // The timer is registered under the lock, so a cancel sees it, and it cannot fire before
        // its registration is recorded (its callback takes the same lock).
        let cancelled = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            if state.cancelRequested { return true }
            state.retryTimer = engine.timeouts.schedule(after: max(delay, .zero)) { self.startAttempt(number) }
            return false
        }
        if cancelled { finish(.activityCancelled, attempt: number - 1, data: encode(cancelledFailure), details: nil) }
    }

    /// Ends the activity with an input event for the workflow.
    private func finish(_ kind: EventKind, attempt: Int, data: Data?, details: AttemptDetails?) {
        let timers = state.withLock { state -> [Int]? in
            guard !state.finished else { return nil }
            state.finished = true
            state.attempt = nil
            return [state.closeTimer, state.retryTimer].compactMap { $0 }
        }
        guard let timers else { return }
        for timer in timers { engine.timeouts.cancel(timer) }
        driver.untrack(self)
        let event = HistoryEvent(
            index: 0, kind: kind, time: engine.clock.now(), seq: seq, attempt: max(attempt, 0), data: data,
            meta: details.flatMap { $0 == AttemptDetails() ? nil : $0.json })
        driver.post(.input(event, newRun: nil, alreadyRecorded: false, committed: nil))
    }

    // MARK: - Cancellation and timeouts from outside

    /// The workflow cancelled the activity: a waiting attempt ends now, a running one is cancelled and
    /// reports when it stops, a retry delay is cut short.
    func requestCancel() {
        let (attempt, betweenAttempts) = state.withLock { state -> (AttemptRun?, Int?) in
            guard !state.finished, !state.cancelRequested else { return (nil, nil) }
            state.cancelRequested = true
            if let timer = state.retryTimer {
                engine.timeouts.cancel(timer)
                state.retryTimer = nil
                return (nil, state.lastAttempt)
            }
            return (state.attempt, nil)
        }
        if let betweenAttempts {
            finish(.activityCancelled, attempt: betweenAttempts, data: encode(cancelledFailure), details: nil)
        } else if let attempt, !attempt.cancelRunningCode() {
            settle(attempt, .cancelled)
        }
        // Otherwise a failure record is being committed: scheduleAttempt sees the request.
    }

    private func scheduleToCloseExpired(_ limit: Duration) {
        let current = state.withLock { state -> (attempt: AttemptRun?, number: Int)? in
            guard !state.finished else { return nil }
            state.closeTimer = nil
            state.closeExpired = true  // a retry timer firing at the same moment starts nothing
            if let timer = state.retryTimer { engine.timeouts.cancel(timer) }
            return (state.attempt, state.lastAttempt)
        }
        guard let current else { return }
        let error = ScheduleToCloseTimeout(
            limit: limit, activityType: pending.activityType, sequence: seq, attempt: current.number)
        // An attempt that ends by itself meanwhile wins the settle; its failure then finds the
        // deadline passed and is not retried (failed(attempt:_:details:)).
        if let attempt = current.attempt, !attempt.isSettled {
            settle(attempt, .timedOut(error))
        } else {
            finish(.activityFailed, attempt: error.attempt, data: encode(FailureInfo(error, retryable: false)), details: nil)
        }
    }

    /// The run stopped here (the worker is stopping, or the run ended or is held): cancel whatever
    /// runs; nothing more is recorded.
    func stop() {
        let (attempt, timers) = state.withLock { state -> (AttemptRun?, [Int]) in
            state.finished = true
            defer { state.attempt = nil }
            return (state.attempt, [state.closeTimer, state.retryTimer].compactMap { $0 })
        }
        for timer in timers { engine.timeouts.cancel(timer) }
        if let attempt { settle(attempt, .cancelled) }
    }

    private var cancelledFailure: FailureInfo {
        FailureInfo(type: "Cancelled", message: "the workflow cancelled the activity", retryable: false)
    }

    private func encode<T: Encodable>(_ value: T) -> Data? { try? JSONEncoder.payload().encode(value) }
}

/// The run whose activity attempt result the current task is recording, if any.
enum ActivityChain {
    @TaskLocal static var runID: String?
}
