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
final class ActivityExecution: Sendable {
    private let engine: Engine
    let driver: RunDriver
    let pending: PendingActivity
    private let registration: ActivityRegistration

    private struct State {
        var attempt: AttemptRun?
        /// The timer that starts the next attempt after a retry delay.
        var retryTimer: Int?
        var closeTimer: Int?
        var cancelRequested = false
        var finished = false
        var lastHeartbeat: Data?
    }

    private let state: Mutex<State>

    init(engine: Engine, driver: RunDriver, pending: PendingActivity, registration: ActivityRegistration) {
        self.engine = engine
        self.driver = driver
        self.pending = pending
        self.registration = registration
        self.state = Mutex(State(lastHeartbeat: pending.lastHeartbeat))
    }

    var seq: Int { pending.seq }
    private var options: ActivityOptions { pending.options }
    private var pool: SlotPool { registration.pool }

    // MARK: - Start

    /// Starts the first attempt; for an activity found unfinished after a restart, first records the
    /// attempt the previous worker issued and never reported on (``WorkerLost``).
    func begin() {
        if let limit = options.scheduleToClose {
            let deadline = pending.scheduledAt.addingTimeInterval(Double(limit.milliseconds) / 1000)
            let timer = engine.timeouts.schedule(after: .milliseconds(max(0, deadline.timeIntervalSinceNow * 1000))) {
                self.scheduleToCloseExpired(limit)
            }
            state.withLock { $0.closeTimer = timer }
        }
        guard pending.recovered else {
            startAttempt(1)
            return
        }
        // An attempt counts as issued once the journal holds the event that issues it: the
        // ActivityScheduled event for attempt 1, the previous failure plus its retry delay after that.
        if pending.failedAttempts > 0, let failedAt = pending.lastFailureAt {
            let due = failedAt.addingTimeInterval(Double(pending.retryDelayMs) / 1000)
            if due.timeIntervalSinceNow > 0 {
                scheduleAttempt(pending.failedAttempts + 1, after: .milliseconds(Int64(due.timeIntervalSinceNow * 1000)))
                return
            }
        }
        let lost = pending.failedAttempts + 1
        if pending.cancelRequested {
            let failure = FailureInfo(WorkerLost(attempt: lost), retryable: false)
            finish(.activityCancelled, attempt: lost, data: encode(failure), details: nil)
            return
        }
        failed(attempt: lost, WorkerLost(attempt: lost), details: AttemptDetails())
    }

    private func startAttempt(_ number: Int) {
        guard !engine.isStopping, !driver.isClosed else { return }
        let attempt = AttemptRun(execution: self, number: number)
        let proceed = state.withLock { state -> Bool? in  // nil: the activity ended; false: cancelled
            state.retryTimer = nil
            if state.finished { return nil }
            if state.cancelRequested { return false }
            state.attempt = attempt
            return true
        }
        guard let proceed else { return }
        guard proceed else {
            finish(.activityCancelled, attempt: number - 1, data: encode(cancelledFailure), details: nil)
            return
        }
        if let limit = options.scheduleToStart {
            attempt.addTimer(engine.timeouts.schedule(after: limit) {
                self.settle(attempt, .timedOut(ScheduleToStartTimeout(
                    limit: limit, activityType: self.pending.activityType, sequence: self.seq, attempt: number)))
            }, startTimer: true)
        }
        let ticket = pool.acquire { grant in self.granted(attempt, grant) }
        if let ticket { attempt.setSlotTicket(ticket) }
    }

    private func granted(_ attempt: AttemptRun, _ grant: Grant) {
        pool.metrics.queueWait.recordNanoseconds(Int64(attempt.markGranted()))
        switch grant {
        case .warm(let lease):
            acquirePermit(attempt, lease)
        case .cold(let slot):
            Task {
                do {
                    let lease = try await self.pool.warmUp(slot: slot)
                    self.acquirePermit(attempt, lease)
                } catch {
                    self.settle(attempt, .finished(.failure(error)))
                }
            }
        }
    }

    private func acquirePermit(_ attempt: AttemptRun, _ lease: Lease) {
        guard attempt.hold(lease) else {  // settled while it waited: give the slot back
            pool.release(lease, retire: false)
            return
        }
        guard let permits = engine.permits else {
            run(attempt, lease)
            return
        }
        let ticket = permits.acquire { self.run(attempt, lease) }
        if let ticket { attempt.setPermitTicket(ticket) }
    }

    // MARK: - Running

    private func run(_ attempt: AttemptRun, _ lease: Lease) {
        guard let startTimer = attempt.beginRunning() else {  // settled while it waited for a permit
            engine.permits?.release()
            return
        }
        if startTimer != 0 { engine.timeouts.cancel(startTimer) }
        let number = attempt.number
        let context = ActivityContext(
            runID: driver.runID, workflowID: driver.workflowID, activityType: pending.activityType, sequence: seq,
            attempt: number, startedAt: Date(), slot: lease.name,
            lastHeartbeatData: state.withLock { $0.lastHeartbeat }, heartbeats: attempt)
        if let limit = options.startToClose {
            attempt.addTimer(engine.timeouts.schedule(after: limit) {
                self.settle(attempt, .timedOut(StartToCloseTimeout(
                    limit: limit, activityType: self.pending.activityType, sequence: self.seq, attempt: number)))
            })
        }
        if let limit = options.heartbeatTimeout { armHeartbeatCheck(attempt, limit, after: limit) }
        let invoke = registration.invoke
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
        // Dispatched while this run's previous attempt result is being recorded (a sequential
        // workflow's next step): start on this thread at once, without a hop to another thread.
        // Anything else (other runs, a start, a recovery, the writer thread) gets an ordinary task.
        let task = ActivityChain.runID == runID ? Task.immediate(operation: body) : Task(operation: body)
        attempt.setTask(task)
    }

    /// Checks the gap since the attempt's last heartbeat when `after` has passed; fires the heartbeat
    /// timeout or checks again when the next heartbeat could be overdue (no timer per heartbeat).
    private func armHeartbeatCheck(_ attempt: AttemptRun, _ limit: Duration, after delay: Duration) {
        attempt.addTimer(engine.timeouts.schedule(after: delay) {
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

    /// Journals an attempt's heartbeat details (throttled by the caller).
    func journalHeartbeat(_ attempt: AttemptRun, _ details: Data) {
        driver.post(.record(HistoryEvent(
            index: 0, kind: .activityHeartbeat, time: Date(), seq: seq, attempt: attempt.number, data: details),
            committed: nil))
    }

    func cancelTimer(_ timer: Int) { engine.timeouts.cancel(timer) }

    var heartbeatJournalNanos: UInt64 { UInt64(max(0, engine.workerOptions.heartbeatJournalInterval.milliseconds)) * 1_000_000 }

    // MARK: - Ending attempts

    enum Outcome {
        case finished(Result<Data, any Error>)
        case timedOut(any ActivityTimeoutError)
        /// Cancelled by the workflow before the attempt started running.
        case cancelled
    }

    /// Ends an attempt, once: releases what it holds and reports the outcome.
    func settle(_ attempt: AttemptRun, _ outcome: Outcome) {
        guard let held = attempt.settle() else { return }
        for timer in held.timers { engine.timeouts.cancel(timer) }
        if let ticket = held.slotTicket { _ = pool.cancel(ticket: ticket) }
        // A permit granted meanwhile reaches run(), which finds the attempt settled and releases it.
        if let ticket = held.permitTicket { _ = engine.permits?.cancel(ticket: ticket) }
        var failed = true
        switch outcome {
        case .finished(.success): failed = false
        case .finished(.failure): break
        case .timedOut, .cancelled: held.task?.cancel()  // an in-process task is abandoned, a process killed
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
            details.pid = registration.processID(lease.resource)
            if let runNanos = held.runNanos {
                details.runMs = Double(runNanos) / 1e6
                pool.metrics.run.recordNanoseconds(Int64(runNanos))
                engine.permits?.release()
            }
            var timedOut = false
            if case .timedOut = outcome { timedOut = true }
            let retire = timedOut || (failed && pool.options.recycleAfterFailure)
            pool.release(lease, retire: retire)
        }
        if failed { pool.metrics.failures.increment() }
        ended(attempt.number, outcome, details)
    }

    private func ended(_ number: Int, _ outcome: Outcome, _ details: AttemptDetails) {
        guard !engine.isStopping else { return }
        let cancelRequested = state.withLock { state -> Bool in
            if let beat = details.heartbeat { state.lastHeartbeat = Data(beat.utf8) }
            return state.cancelRequested
        }
        switch outcome {
        case .finished(.success(let output)):
            finish(.activityCompleted, attempt: number, data: output, details: details)
        case .cancelled:
            finish(.activityCancelled, attempt: number, data: encode(cancelledFailure), details: details)
        case .finished(.failure(let error)) where cancelRequested:
            var failure = FailureInfo(error, retryable: false)
            if error is CancellationError { failure = cancelledFailure }
            finish(.activityCancelled, attempt: number, data: encode(failure), details: details)
        case .finished(.failure(let error)):
            failed(attempt: number, error, details: details)
        case .timedOut(let error):
            failed(attempt: number, error, details: details)
        }
    }

    /// Records a failed attempt and schedules the next, or ends the activity when no retry is due.
    private func failed(attempt number: Int, _ error: any Error, details: AttemptDetails) {
        let policy = options.retry
        var failure = FailureInfo(error)
        let retryable = failure.retryable != false && !policy.nonRetryableErrorTypes.contains(failure.type)
        guard retryable && policy.allowsAttempt(after: number) else {
            failure.retryable = false
            finish(.activityFailed, attempt: number, data: encode(failure), details: details)
            return
        }
        // A lost attempt is retried at once: nothing suggests the activity itself needs a pause.
        let delay = error is WorkerLost ? .zero : policy.delay(afterAttempt: number)
        failure.retryable = true
        failure.nextRetryDelayMs = Int(delay.milliseconds)
        let event = HistoryEvent(
            index: 0, kind: .activityAttemptFailed, time: Date(), seq: seq, attempt: number, data: encode(failure),
            meta: details.json)
        // The next attempt is issued only once this failure is journaled: after a crash, recovery
        // then knows which attempt numbers were used.
        driver.post(.record(event, committed: { result in
            if case .success = result { self.scheduleAttempt(number + 1, after: delay) }
        }))
    }

    private func scheduleAttempt(_ number: Int, after delay: Duration) {
        guard delay > .zero else {
            startAttempt(number)
            return
        }
        let timer = engine.timeouts.schedule(after: delay) { self.startAttempt(number) }
        state.withLock { $0.retryTimer = timer }
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
            index: 0, kind: kind, time: Date(), seq: seq, attempt: max(attempt, 0), data: data,
            meta: details.flatMap { $0 == AttemptDetails() ? nil : $0.json })
        driver.post(.input(event, newRun: nil, claim: false, alreadyRecorded: false, committed: nil))
    }

    // MARK: - Cancellation and timeouts from outside

    /// The workflow cancelled the activity: a waiting attempt ends now, a running one is cancelled and
    /// reports when it stops, a retry delay is cut short.
    func requestCancel() {
        let (attempt, betweenAttempts) = state.withLock { state -> (AttemptRun?, Bool) in
            guard !state.finished, !state.cancelRequested else { return (nil, false) }
            state.cancelRequested = true
            if let timer = state.retryTimer {
                engine.timeouts.cancel(timer)
                state.retryTimer = nil
                return (nil, true)
            }
            return (state.attempt, false)
        }
        if betweenAttempts {
            finish(.activityCancelled, attempt: 0, data: encode(cancelledFailure), details: nil)
        } else if let attempt {
            if let task = attempt.runningTask {
                task.cancel()
            } else {
                settle(attempt, .cancelled)
            }
        }
    }

    private func scheduleToCloseExpired(_ limit: Duration) {
        let current = state.withLock { state -> AttemptRun?? in
            guard !state.finished else { return .none }
            state.closeTimer = nil
            if let timer = state.retryTimer { engine.timeouts.cancel(timer) }
            return .some(state.attempt)
        }
        guard let current else { return }
        let error = ScheduleToCloseTimeout(
            limit: limit, activityType: pending.activityType, sequence: seq, attempt: current?.number ?? 0)
        if let attempt = current, !attempt.isSettled {
            settle(attempt, .timedOut(error))
        } else {
            finish(.activityFailed, attempt: error.attempt, data: encode(FailureInfo(error, retryable: false)), details: nil)
        }
    }

    /// The worker is stopping: cancel whatever runs; nothing more is recorded.
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
