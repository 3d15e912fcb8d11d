import CoreMetrics
import Dispatch
import DurableJournal
import Foundation
import Synchronization

/// One activity of a run driven here, across its attempts: gets each attempt a slot, runs it under
/// its timeouts, and turns the attempt's end into a history event (a result, a failure, a retry, a
/// cancellation).
///
/// Every attempt ends exactly once, as its ``AttemptStateMachine`` decides: by its code returning or
/// throwing, by a timeout, by the workflow's cancellation, or by the worker stopping. The machine
/// returns the settlement to the one event that ended it; this type carries it out (releases the
/// slot, records the outcome). Every other event finds the attempt settled.
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
        let configuration = AttemptRun.Machine.Configuration(
            scheduleToStart: options.scheduleToStart, startToClose: options.startToClose,
            heartbeatTimeout: options.heartbeatTimeout, recycleAfterFailure: registration.pool.options.recycleAfterFailure,
            heartbeatJournalNanos: UInt64(max(0, engine.workerOptions.heartbeatJournalInterval.milliseconds)) * 1_000_000)
        let attempt = AttemptRun(execution: self, registration: registration, number: number, configuration: configuration)
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
        engine.clock.beginWork()  // until the attempt's settlement is carried out
        let ticket = registration.pool.newTicket()
        perform(attempt) { $0.requestSlot(ticket: ticket, inline: inline) }
    }

    // MARK: - Carrying out the attempt's actions

    /// Passes one event to the attempt's machine and carries out the action it returns.
    private func perform(_ attempt: AttemptRun, _ event: (inout AttemptRun.Machine) -> AttemptRun.Machine.Action) {
        carryOut(attempt.handle(event), for: attempt)
    }

    private func carryOut(_ action: consuming AttemptRun.Machine.Action, for attempt: AttemptRun) {
        switch consume action {
        case .none:
            break
        case .requestSlot(let ticket, let startTimeout):
            if let limit = startTimeout {
                let timer = engine.timeouts.schedule(after: limit) { self.timedOut(attempt, .scheduleToStart) }
                perform(attempt) { $0.timerArmed(.scheduleToStart, id: timer) }
            }
            attempt.registration.pool.acquire(ticket: ticket) { grant in self.granted(attempt, grant) }
            attempt.slotRequestReturned()
        case .warmUp(let slot):
            Task {
                let pool = attempt.registration.pool
                do {
                    let lease = try await pool.warmUp(slot: slot)
                    let permit = self.engine.permits?.newTicket()
                    let now = Self.now()
                    self.perform(attempt) { $0.slotGranted(lease, waited: 0, permitTicket: permit, now: now) }
                } catch {
                    let now = Self.now()
                    self.perform(attempt) { $0.slotUnavailable(error, now: now) }
                }
            }
        case .requestPermit(let ticket):
            engine.permits?.acquire(ticket: ticket) {
                let now = Self.now()
                self.perform(attempt) { $0.permitGranted(now: now) }
            }
        case .run(let run):
            self.run(attempt, run)
        case .releaseSlot(let lease):
            attempt.registration.pool.release(lease, retire: false)
        case .releasePermit:
            engine.permits?.release()
        case .cancelWork(let task):
            task.cancel()
        case .cancelTimer(let timer):
            engine.timeouts.cancel(timer)
        case .checkHeartbeat(let delay):
            armHeartbeatCheck(attempt, after: delay)
        case .settle(let settlement):
            settle(attempt, settlement)
        }
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private func granted(_ attempt: AttemptRun, _ grant: Grant) {
        let now = Self.now()
        let waited = now &- attempt.issuedAt
        attempt.registration.pool.metrics.queueWait.recordNanoseconds(Int64(waited))
        switch grant {
        case .warm(let lease):
            let permit = engine.permits?.newTicket()
            perform(attempt) { $0.slotGranted(lease, waited: waited, permitTicket: permit, now: now) }
        case .cold(let slot):
            perform(attempt) { $0.coldSlotGranted(slot: slot, waited: waited) }
        case .unavailable(let error):
            perform(attempt) { $0.slotUnavailable(error, now: now) }
        }
    }

    private func timedOut(_ attempt: AttemptRun, _ kind: TimeoutKind) {
        let now = Self.now()
        perform(attempt) { $0.timedOut(kind, now: now) }
    }

    // MARK: - Running

    private func run(_ attempt: AttemptRun, _ run: AttemptRun.Machine.Run) {
        if let timer = run.cancelTimer { engine.timeouts.cancel(timer) }
        let lease = run.lease
        let context = ActivityContext(
            runID: driver.runID, workflowID: driver.workflowID, activityType: pending.activityType, sequence: seq,
            attempt: attempt.number, startedAt: engine.clock.now(), slot: lease.name,
            lastHeartbeatData: state.withLock { $0.lastHeartbeat }, heartbeats: attempt)
        if let limit = run.startToClose {
            let timer = engine.timeouts.schedule(after: limit) { self.timedOut(attempt, .startToClose) }
            perform(attempt) { $0.timerArmed(.startToClose, id: timer) }
        }
        if let limit = run.heartbeatTimeout { armHeartbeatCheck(attempt, after: limit) }
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
            ActivityChain.$runID.withValue(runID) { self.finished(attempt, lease, result) }
        }
        let task = run.inline ? Task.immediate(operation: body) : Task(operation: body)
        perform(attempt) { $0.started(task) }
    }

    /// The attempt's code returned or threw.
    private func finished(_ attempt: AttemptRun, _ lease: Lease, _ result: Result<Data, any Error>) {
        let now = Self.now()
        switch result {
        case .success(let output):
            perform(attempt) { $0.completed(output, now: now) }
        case .failure(let error):
            // A Bool test first: no dynamic cast on the path of every in-process step. A process that
            // answered with an error stays in service.
            let serves = attempt.registration.isProcessPool && lease.resource is WorkerProcess && error is ApplicationError
            perform(attempt) { $0.failed(error, slotServes: serves, now: now) }
        }
    }

    /// Arms the attempt's next heartbeat check (see ``AttemptStateMachine/heartbeatCheckDue(now:)``).
    private func armHeartbeatCheck(_ attempt: AttemptRun, after delay: Duration) {
        let timer = engine.timeouts.schedule(after: delay) {
            let now = Self.now()
            self.perform(attempt) { $0.heartbeatCheckDue(now: now) }
        }
        perform(attempt) { $0.timerArmed(.heartbeatCheck, id: timer) }
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

    // MARK: - Ending attempts

    /// Carries out an attempt's settlement (once per attempt: the machine returns it once): lets go
    /// of what it held and reports how it ended.
    private func settle(_ attempt: AttemptRun, _ settlement: consuming AttemptRun.Machine.Settlement) {
        let pool = attempt.registration.pool
        settlement.forEachTimer { engine.timeouts.cancel($0) }
        if let ticket = settlement.slotTicket { _ = pool.cancel(ticket: ticket) }
        // A permit granted meanwhile reaches the machine, which finds the attempt settled and gives it back.
        if let ticket = settlement.permitTicket { _ = engine.permits?.cancel(ticket: ticket) }
        // A Bool test first: no dynamic cast on the path of every in-process step.
        let process = attempt.registration.isProcessPool ? settlement.lease?.resource as? WorkerProcess : nil
        var stderr: String?
        if settlement.codeRan, settlement.ending.timedOut, let tail = process?.stderrTail(), !tail.isEmpty {
            stderr = tail  // what a hung process wrote (before it is stopped below) explains the hang
        }
        // Code that was cut off is cancelled (a process is killed) and may still use its slot.
        settlement.work?.cancel()
        // A shared pool has no queue and no slots: its attempts record only their run time.
        var details = AttemptDetails(
            queueMs: pool.isShared ? nil : settlement.queueNanos.map { Double($0) / 1e6 },
            heartbeat: settlement.heartbeat.map { String(decoding: $0, as: UTF8.self) })
        if let lease = settlement.lease.take() {
            if !pool.isShared {
                details.slot = lease.name
                details.cold = lease.cold
            }
            if lease.cold { details.warmUpMs = Double(lease.warmUpNanos) / 1e6 }
            details.pid = process?.pid
            if let runNanos = settlement.runNanos {
                details.runMs = Double(runNanos) / 1e6
                pool.metrics.run.recordNanoseconds(Int64(runNanos))
            }
            if settlement.releasePermit { engine.permits?.release() }
            pool.release(lease, retire: settlement.retire)
        }
        if settlement.countsAsFailure { pool.metrics.failures.increment() }
        ended(attempt.number, settlement.ending, details, isShared: pool.isShared, stderr: stderr)
        engine.clock.endWork()
    }

    /// - Parameter stderr: the stderr tail of a process whose attempt timed out, for the failure.
    private func ended(
        _ number: Int, _ ending: AttemptRun.Machine.Ending, _ details: AttemptDetails, isShared: Bool, stderr: String?
    ) {
        guard !engine.isStopping else { return }
        let cancelRequested = state.withLock { state -> Bool in
            if let beat = details.heartbeat { state.lastHeartbeat = Data(beat.utf8) }
            return state.cancelRequested
        }
        // The workflow's cancellation may reach the activity just before its attempt: an attempt that
        // failed meanwhile ends the activity as cancelled all the same.
        switch ending {
        case .stopped:
            break  // nothing is recorded: the run is driven elsewhere now, or later
        case .completed(let output):
            // An activity without a pool records details only when it fails: a success's duration is
            // in the event times, and the details would cost a sequential step several per cent.
            finish(.activityCompleted, attempt: number, data: output, details: isShared ? nil : details)
        case .failed(.threw(let error)) where cancelRequested, .cancelled(.threw(let error)):
            let failure = error is CancellationError ? cancelledFailure : FailureInfo(error, retryable: false)
            finish(.activityCancelled, attempt: number, data: encode(failure), details: details)
        case .failed(.timedOut(let kind)) where cancelRequested, .cancelled(.timedOut(let kind)):
            let error = timeoutError(kind, attempt: number)
            finish(.activityCancelled, attempt: number, data: encode(FailureInfo(error, retryable: false, stderr: stderr)),
                   details: details)
        case .cancelled(nil):
            finish(.activityCancelled, attempt: number, data: encode(cancelledFailure), details: details)
        case .failed(.threw(let error)):
            failed(attempt: number, error, details: details)
        case .failed(.timedOut(let kind)):
            failed(attempt: number, timeoutError(kind, attempt: number), details: details, stderr: stderr)
        }
    }

    private func timeoutError(_ kind: TimeoutKind, attempt: Int) -> any ActivityTimeoutError {
        let limit = switch kind {
        case .scheduleToStart: options.scheduleToStart
        case .startToClose: options.startToClose
        case .scheduleToClose: options.scheduleToClose
        case .heartbeat: options.heartbeatTimeout
        }
        return kind.error(limit: limit ?? .zero, activityType: pending.activityType, sequence: seq, attempt: attempt)
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
        } else if let attempt {
            // An attempt that waits ends now; running code is asked to stop. One that has ended has
            // its failure record being committed: scheduleAttempt sees the request.
            let now = Self.now()
            perform(attempt) { $0.cancelRequested(now: now) }
        }
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
        // An attempt that has not ended is settled by the timeout (and not retried); one that ended by
        // itself first has its failure find the deadline passed (failed(attempt:_:details:)).
        if let attempt = current.attempt {
            let now = Self.now()
            let action = attempt.handle { $0.timedOut(.scheduleToClose, now: now) }
            if case .settle = action { return carryOut(action, for: attempt) }
        }
        let error = ScheduleToCloseTimeout(
            limit: limit, activityType: pending.activityType, sequence: seq, attempt: current.number)
        finish(.activityFailed, attempt: error.attempt, data: encode(FailureInfo(error, retryable: false)), details: nil)
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
        let now = Self.now()
        if let attempt { perform(attempt) { $0.workerStopping(now: now) } }
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
