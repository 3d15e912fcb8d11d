import CoreMetrics
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DurableJournal
import Foundation
import Logging
import Synchronization
import Tracing

/// One activity of a run driven here, across its attempts: gets each attempt a slot, runs it under
/// its timeouts, and turns the attempt's end into a history event (a result, a failure, a retry, a
/// cancellation).
///
/// Two value machines decide; this type carries out their actions (slots, permits, timers, tasks,
/// journal records). Each attempt is an ``AttemptStateMachine`` (in its ``AttemptRun``) and ends
/// exactly once, with one ``AttemptStateMachine/Ending``: its code returned or threw, a timeout, the
/// workflow's cancellation, or the worker stopping. The ``ActivityStateMachine`` learns that ending
/// and decides what follows: the activity's end, or a retry once the failure is journaled; it also
/// owns the retry timer, the schedule-to-close deadline and a cancellation between attempts.
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
    /// For an activity found unfinished after a restart: what the previous worker left.
    private let recovery: Recovery?
    /// When the schedule-to-close timeout ends the activity, counted from its scheduling.
    private let closeDeadline: Date?

    private typealias Machine = ActivityStateMachine<AttemptRun>
    private let machine: Mutex<Machine>

    /// What a recovered activity resumes from. An attempt counts as issued once the journal holds the
    /// event that issues it: the ActivityScheduled event for attempt 1, the previous failure plus its
    /// retry delay after that.
    private struct Recovery {
        /// The attempt the previous worker issued and never reported on, to be recorded as lost.
        var lost: Int?
        /// The rest of the retry delay of the last recorded failure, when it has not passed.
        var retryIn: Duration?
        var lastIssued: Int
    }

    init(engine: DurableWorker, driver: RunDriver, pending: PendingActivity, registration: ActivityRegistration) {
        self.engine = engine
        self.driver = driver
        self.pending = pending
        self.firstRegistration = registration
        var recovery: Recovery?
        if pending.recovered {
            var lost: Int? = pending.failedAttempts + 1
            var retryIn: Duration?
            if pending.failedAttempts > 0, let failedAt = pending.lastFailureAt {
                let wait = failedAt.addingTimeInterval(Double(pending.retryDelayMs) / 1000)
                    .timeIntervalSince(engine.clock.now())
                if wait > 0 {
                    lost = nil
                    retryIn = .milliseconds(Int64(wait * 1000))
                }
            }
            recovery = Recovery(lost: lost, retryIn: retryIn, lastIssued: lost ?? pending.failedAttempts)
        }
        self.recovery = recovery
        let closeDeadline = pending.options.scheduleToClose.map {
            pending.scheduledAt.addingTimeInterval(Double($0.milliseconds) / 1000)
        }
        self.closeDeadline = closeDeadline
        self.machine = Mutex(Machine(
            retry: pending.options.retry, closeDeadline: closeDeadline,
            lastAttempt: recovery?.lastIssued ?? pending.failedAttempts, cancelRequested: pending.cancelRequested,
            lastHeartbeat: pending.lastHeartbeat))
    }

    var seq: Int { pending.seq }
    private var options: ActivityOptions { pending.options }

    // MARK: - Start

    /// Starts the first attempt; for an activity found unfinished after a restart, first records the
    /// attempt the previous worker issued and never reported on (``WorkerLost``).
    /// - Parameter inline: the first attempt may start on this thread (see the type's discussion).
    func begin(inline: Bool) {
        guard let recovery else {
            armCloseTimer()
            startAttempt(1, inline: inline)
            return
        }
        if pending.cancelRequested {  // the workflow cancelled it before the restart: nothing more runs
            let failure = recovery.lost.map { FailureInfo(WorkerLost(attempt: $0), retryable: false) } ?? cancelledFailure
            carryOut(machine.withLock { $0.endCancelledBeforeRestart() }) { _ in (encode(failure), nil) }
            return
        }
        if let closeDeadline, closeDeadline <= engine.clock.now() {
            // Its time ran out while no worker drove it: no attempt starts after the deadline.
            carryOut(machine.withLock { $0.closeDeadlinePassed() })
            return
        }
        armCloseTimer()
        if let lost = recovery.lost {
            attemptFailed(lost, WorkerLost(attempt: lost), details: AttemptDetails())
        } else if let retryIn = recovery.retryIn {
            carryOut(machine.withLock { $0.retryPending(pending.failedAttempts, after: retryIn) })
        }
    }

    private func armCloseTimer() {
        guard let closeDeadline else { return }
        let timer = engine.timeouts.schedule(at: closeDeadline) { self.carryOut(self.machine.withLock { $0.closeDeadlinePassed() }) }
        carryOut(machine.withLock { $0.closeTimerArmed(timer) })
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
        let attempt = AttemptRun(
            execution: self, registration: registration, number: number, configuration: configuration,
            span: attemptSpan(number))
        let action = machine.withLock { $0.issue(attempt, number: number) }
        guard case .start = action else {  // ended, or cancelled meanwhile
            attempt.span?.span.end()
            return carryOut(action)
        }
        request(attempt, inline: inline)
    }

    /// The `durable.activity` span of attempt `number`, under the run's trace context (none without a tracer).
    private func attemptSpan(_ number: Int) -> SpanBox? {
        guard engine.traces else { return nil }
        let span = engine.tracer.startSpan(DurableSpan.activity, context: driver.traceContext, ofKind: .consumer)
        if span.isRecording {
            span.updateAttributes { attributes in
                attributes["durable.activity_type"] = pending.activityType
                attributes["durable.attempt"] = number
                attributes["durable.seq"] = seq
                attributes["durable.run_id"] = driver.runID
                attributes["durable.workflow_type"] = driver.instance.workflowType
            }
        }
        return SpanBox(span)
    }

    /// The attempt asks for its slot.
    private func request(_ attempt: AttemptRun, inline: Bool) {
        engine.clock.beginWork()  // until the attempt's settlement is carried out
        let ticket = attempt.registration.pool.newTicket()
        perform(attempt) { $0.requestSlot(ticket: ticket, inline: inline) }
    }

    // MARK: - Carrying out the activity's actions

    /// Carries out an action of the activity's machine.
    /// - Parameter record: the data and details of the activity's end, if the action ends it; by
    ///   default those of an end between attempts (a cancellation, the schedule-to-close deadline).
    private func carryOut(
        _ action: consuming Machine.Action,
        record: (Machine.Finish) -> (data: Data?, details: AttemptDetails?) = { _ in (nil, nil) }
    ) {
        switch consume action {
        case .none:
            break
        case .start(let attempt):
            request(attempt, inline: false)
        case .cancelAttempt(let attempt):
            // An attempt that waits ends now; running code is asked to stop.
            let now = Self.now()
            perform(attempt) { $0.cancelRequested(now: now) }
        case .timeOutAttempt(let attempt, let number):
            // An attempt that has not ended is settled by the timeout (and not retried); if it ended by
            // itself, the deadline ends the activity unless the attempt's end got there first.
            let now = Self.now()
            let settled = attempt.handle { $0.timedOut(.scheduleToClose, now: now) }
            if case .settle = settled { return carryOut(settled, for: attempt) }
            carryOut(machine.withLock { $0.closeDeadlinePassedAfterAttempt(number) })
        case .recordFailure:
            break  // only attemptFailed(_:_:details:stderr:) gets it, and handles it
        case .armRetryTimer(let next, let delay):
            let timer = engine.timeouts.schedule(after: delay) { self.startAttempt(next) }
            carryOut(machine.withLock { $0.retryTimerArmed(timer) })
        case .cancelTimer(let timer):
            engine.timeouts.cancel(timer)
        case .finish(let finish):
            let (recorded, details) = record(finish)
            let data = recorded ?? {
                switch finish.outcome {
                case .cancelled: encode(cancelledFailure)
                case .timedOut: encode(FailureInfo(timeoutError(.scheduleToClose, attempt: finish.attempt), retryable: false))
                case .completed, .failed: nil
                }
            }()
            self.finish(finish, data: data, details: details)
        case .stop(let stop):
            if let timer = stop.timers.close { engine.timeouts.cancel(timer) }
            if let timer = stop.timers.retry { engine.timeouts.cancel(timer) }
            let now = Self.now()
            if let attempt = stop.attempt { perform(attempt) { $0.workerStopping(now: now) } }
        }
    }

    /// Ends the activity with an input event for the workflow.
    private func finish(_ finish: Machine.Finish, data: Data?, details: AttemptDetails?) {
        if let timer = finish.timers.close { engine.timeouts.cancel(timer) }
        if let timer = finish.timers.retry { engine.timeouts.cancel(timer) }
        driver.untrack(self)
        let kind: EventKind = switch finish.outcome {
        case .completed: .activityCompleted
        case .failed, .timedOut: .activityFailed
        case .cancelled: .activityCancelled
        }
        let event = HistoryEvent(
            index: 0, kind: kind, time: engine.clock.now(), seq: seq, attempt: finish.attempt, data: data,
            meta: details.flatMap { $0 == AttemptDetails() ? nil : $0.json })
        driver.post(.input(event, newRun: nil, alreadyRecorded: false, committed: nil))
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
            let claim = attempt.registration.rateClaim?(pending.input)
            attempt.registration.pool.acquire(ticket: ticket, claim: claim) { grant in self.granted(attempt, grant) }
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
        attempt.registration.pool.metrics.attempts.started(after: run.startedAt &- attempt.issuedAt)
        let lease = run.lease
        let context = ActivityContext(
            runID: driver.runID, workflowID: driver.workflowID, activityType: pending.activityType, sequence: seq,
            attempt: attempt.number, startedAt: engine.clock.now(), slot: lease.name,
            lastHeartbeatData: machine.withLock { $0.lastHeartbeat }, heartbeats: attempt)
        if let limit = run.startToClose {
            let timer = engine.timeouts.schedule(after: limit) { self.timedOut(attempt, .startToClose) }
            perform(attempt) { $0.timerArmed(.startToClose, id: timer) }
        }
        if let limit = run.heartbeatTimeout { armHeartbeatCheck(attempt, after: limit) }
        let invoke = attempt.registration.invoke
        let input = pending.input
        let driver = driver
        let traceContext = attempt.span?.span.context
        let body: @Sendable () async -> Void = {
            let result: Result<Data, any Error>
            do {
                let output: Data
                if let traceContext {
                    // The attempt's span is the current one in the activity's code (its spans nest under it).
                    output = try await ServiceContext.$current.withValue(traceContext) {
                        try await invoke(lease.resource, context, input)
                    }
                } else {
                    output = try await invoke(lease.resource, context, input)
                }
                if output.count > DurableLimits.maximumPayloadBytes {
                    // Recording it would be refused; a retry would most likely return as much again.
                    throw ApplicationError(
                        DurableError(.payloadTooLarge(what: "the result of activity \(context.activityType)", bytes: output.count))
                            .description,
                        type: "PayloadTooLarge", nonRetryable: true)
                }
                result = .success(output)
            } catch {
                result = .failure(error)
            }
            ActivityChain.recording(for: driver) { self.finished(attempt, lease, result) }
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
        journalInformation(.activityHeartbeat, attempt: attempt.number, data: details)
    }

    /// An attempt's partial output, journaled as `ActivityOutput` events (see ``PartialOutput``).
    func makeOutput(attempt number: Int) -> PartialOutput {
        PartialOutput(
            interval: engine.workerOptions.partialOutputInterval,
            journal: { [self] data in journalInformation(.activityOutput, attempt: number, data: data) },
            schedule: { [engine] delay, callback in _ = engine.timeouts.schedule(after: delay, callback) })
    }

    /// Journals an informational event of an attempt, without waiting for its commit. It takes its
    /// place in the run's mailbox at once (in the order of the calls); unless `now`, the mailbox is
    /// processed on another thread if nobody processes it.
    private func journalInformation(_ kind: EventKind, attempt: Int, data: Data, now: Bool = false) {
        let event = HistoryEvent(index: 0, kind: kind, time: engine.clock.now(), seq: seq, attempt: attempt, data: data)
        driver.post(.record(event, committed: nil), inline: now)
    }

    // MARK: - Ending attempts

    /// Carries out an attempt's settlement (once per attempt: the machine returns it once): lets go
    /// of what it held and reports how it ended.
    private func settle(_ attempt: AttemptRun, _ settlement: consuming AttemptRun.Machine.Settlement) {
        // Before the attempt's end, in the run's mailbox: what the attempt published last.
        if let rest = attempt.closeOutput() { journalInformation(.activityOutput, attempt: attempt.number, data: rest, now: true) }
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
        if settlement.codeRan, attempt.registration.recordsLineage {
            recordLineage(&details, attempt.registration, process: process, ending: settlement.ending)
        }
        if settlement.countsAsFailure { pool.metrics.failures.increment() }
        pool.metrics.attempts.ended(settlement.ending, runNanos: settlement.runNanos)
        endSpan(attempt, settlement.ending)
        ended(attempt.number, settlement.ending, details, isShared: pool.isShared, stderr: stderr)
        engine.clock.endWork()
    }

    /// Adds the model that served the attempt, and the SHA-256 of its input and output as journaled,
    /// to its details: the model its process reported in its ready line (completed by the declared
    /// one), else the declared one; nothing when there is neither.
    private func recordLineage(
        _ details: inout AttemptDetails, _ registration: ActivityRegistration, process: WorkerProcess?,
        ending: AttemptRun.Machine.Ending
    ) {
        if let reported = process?.model {
            details.record(model: reported.combined(withDeclared: registration.model))
        } else if let declared = registration.modelDetails {
            details.model = declared.model
            details.modelVersion = declared.modelVersion
            details.weightsSHA256 = declared.weightsSHA256
            details.modelMetadata = declared.modelMetadata
        } else {
            return
        }
        details.inputSHA256 = ModelIdentity.sha256(of: pending.input)
        if case .completed(let output) = ending { details.outputSHA256 = ModelIdentity.sha256(of: output) }
    }

    /// Ends the attempt's span with its outcome, and the error of a failed or timed-out attempt.
    private func endSpan(_ attempt: AttemptRun, _ ending: AttemptRun.Machine.Ending) {
        guard let span = attempt.span?.span else { return }
        if span.isRecording {
            span.attributes["durable.outcome"] = ActivityMetrics.outcome(ending)
            if case .failed(let failure) = ending { span.recordFailure(error(of: failure, attempt: attempt.number)) }
        }
        span.end()
    }

    /// - Parameter stderr: the stderr tail of a process whose attempt timed out, for the failure.
    private func ended(
        _ number: Int, _ ending: AttemptRun.Machine.Ending, _ details: AttemptDetails, isShared: Bool, stderr: String?
    ) {
        guard !engine.isStopping else { return }
        if let beat = details.heartbeat { machine.withLock { $0.heartbeatRecorded(Data(beat.utf8)) } }
        switch ending {
        case .stopped:
            break  // nothing is recorded: the run is driven elsewhere now, or later
        case .completed(let output):
            // An activity without a pool records details only when it fails: a success's duration is
            // in the event times, and the details would cost a sequential step several per cent.
            // An attempt served by a model records its lineage all the same.
            let recorded = isShared && details.model == nil ? nil : details
            carryOut(machine.withLock { $0.attemptCompleted(number) }) { _ in (output, recorded) }
        case .cancelled(let failure):
            let data = encode(failure.map { cancellation(after: error(of: $0, attempt: number), stderr: stderr) } ?? cancelledFailure)
            carryOut(machine.withLock { $0.attemptCancelled(number) }) { _ in (data, details) }
        case .failed(let failure):
            attemptFailed(number, error(of: failure, attempt: number), details: details, stderr: stderr)
        }
    }

    private func error(of failure: AttemptRun.Machine.Failure, attempt: Int) -> any Error {
        switch failure {
        case .threw(let error): error
        case .timedOut(let kind): timeoutError(kind, attempt: attempt)
        }
    }

    /// What a cancelled activity records when its cancelled attempt ended otherwise: stopped by the
    /// cancellation, it threw `CancellationError`; or it threw another error, or timed out.
    private func cancellation(after error: any Error, stderr: String?) -> FailureInfo {
        error is CancellationError ? cancelledFailure : FailureInfo(error, retryable: false, stderr: stderr)
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

    /// Records a failed attempt and, once that is journaled, schedules the next; or ends the activity
    /// when no retry is due (or the workflow cancelled it).
    private func attemptFailed(_ number: Int, _ error: any Error, details: AttemptDetails, stderr: String? = nil) {
        var failure = FailureInfo(error, stderr: stderr)
        let retryable = failure.retryable != false && !options.retry.nonRetryableErrorTypes.contains(failure.type)
        let now = engine.clock.now()
        // A lost attempt is retried at once: nothing suggests the activity itself needs a pause.
        let action = machine.withLock {
            $0.attemptFailed(number, retryable: retryable, immediately: error is WorkerLost, now: now)
        }
        guard case .recordFailure(_, let delay) = action else {
            engine.logger.notice("activity failed: \(failure)", metadata: logMetadata(attempt: number))
            return carryOut(action) { finish in
                if finish.outcome == .cancelled { return (encode(cancellation(after: error, stderr: stderr)), details) }
                failure.retryable = false
                return (encode(failure), details)
            }
        }
        failure.retryable = true
        failure.nextRetryDelayMs = Int(delay.milliseconds)
        engine.logger.info("activity attempt failed, retrying in \(delay): \(failure)", metadata: logMetadata(attempt: number))
        let event = HistoryEvent(
            index: 0, kind: .activityAttemptFailed, time: now, seq: seq, attempt: number, data: encode(failure),
            meta: details.json)
        // The next attempt is issued only once this failure is journaled: after a crash, recovery
        // then knows which attempt numbers were used.
        driver.post(.record(event, committed: { result in
            if case .success = result { self.carryOut(self.machine.withLock { $0.failureRecorded(number) }) }
        }))
    }

    /// What a log entry about an attempt carries: the run's keys, the activity and the attempt.
    private func logMetadata(attempt: Int) -> Logger.Metadata {
        var metadata = engine.runMetadata(driver)
        metadata["durable.activity"] = "\(pending.activityType)"
        metadata["durable.seq"] = "\(seq)"
        metadata["durable.attempt"] = "\(attempt)"
        return metadata
    }

    // MARK: - Cancellation and timeouts from outside

    /// The workflow cancelled the activity: a waiting attempt ends now, a running one is cancelled and
    /// reports when it stops, a retry delay is cut short.
    func requestCancel() {
        carryOut(machine.withLock { $0.cancel() })
    }

    /// The run stopped here (the worker is stopping, or the run ended or is held): cancel whatever
    /// runs; nothing more is recorded.
    func stop() {
        carryOut(machine.withLock { $0.stop() })
    }

    private var cancelledFailure: FailureInfo {
        FailureInfo(type: "Cancelled", message: "the workflow cancelled the activity", retryable: false)
    }

    private func encode<T: Encodable>(_ value: T) -> Data? { try? JSONEncoder.payload().encode(value) }
}

/// The run whose activity attempt result the current thread is recording, if any: a commit of that
/// run's batch on this thread, inside the recording, may start the run's next activity on it
/// (``DurableWorker/afterCommit(_:commands:result:)``). A thread's own value, not a task-local one: the
/// recording is synchronous, and a task-local value costs a push, a pop and a copy into every task
/// started inside (Docs/benchmarks.md, "CPU per step").
enum ActivityChain {
    /// Holds the driver (unretained: it outlives the recording, which its execution holds) or `nil`.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let code = pthread_key_create(&key, nil)
        precondition(code == 0, "pthread_key_create failed (\(code)): no thread-specific key left")
        return key
    }()

    /// Runs `body` with `driver` as the thread's recording run; restores the previous one after.
    static func recording(for driver: RunDriver, _ body: () -> Void) {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, Unmanaged.passUnretained(driver).toOpaque())
        defer { pthread_setspecific(key, previous) }
        body()
    }

    /// Whether the thread is recording an activity result of `driver`'s run.
    static func isRecording(for driver: RunDriver) -> Bool {
        pthread_getspecific(key) == UnsafeMutableRawPointer(Unmanaged.passUnretained(driver).toOpaque())
    }
}
