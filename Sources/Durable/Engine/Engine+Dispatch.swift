import Dispatch
import DurableJournal
import Foundation
import Synchronization

extension Engine {
    /// Called on the journal writer's thread once an activation's batch is committed (or failed).
    func afterCommit(_ driver: RunDriver, commands: [WorkflowCommand], result: Result<Void, any Error>) {
        if case .failure(let error) = result {
            journalWriteFailed(runID: driver.runID, error)
            return
        }
        for command in commands {
            switch command {
            case .scheduleActivity(let seq, let type, let input, let options):
                dispatch(driver, PendingActivity(seq: seq, activityType: type, input: input, options: options, attempt: 1))
            case .completeWorkflow(let result):
                closed(driver, outcome: .completed(result))
            case .failWorkflow(let failure):
                closed(driver, outcome: .failed(failure))
            }
        }
    }

    /// Stops tracking a run driven here; returns its driver and the callers waiting for its outcome.
    /// Both maps change under the drivers lock, so ``outcome(of:)`` sees either the driver or the end.
    private func forget(_ runID: String) -> (RunDriver?, [CheckedContinuation<RunOutcome?, any Error>]) {
        drivers.withLock { drivers in
            (drivers.removeValue(forKey: runID), outcomeWaiters.withLock { $0.removeValue(forKey: runID) } ?? [])
        }
    }

    /// Forgets a run whose activation could not be written; a later recovery replays what was committed.
    func journalWriteFailed(runID: String, _ error: any Error) {
        let (driver, waiters) = forget(runID)
        driver?.terminate()
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    private func closed(_ driver: RunDriver, outcome: RunOutcome) {
        driver.terminate()
        let (_, waiters) = forget(driver.runID)
        for waiter in waiters { waiter.resume(returning: outcome) }
        for observer in closeObservers.withLock({ $0 }) { observer(driver.runID, outcome) }
    }

    /// Holds a run whose activation failed (non-determinism, context misuse, a stray await): records
    /// the reason, stops driving it, and leaves it for a worker with fixed code. Nothing of the failed
    /// activation is recorded, except a new run's row and `WorkflowStarted` event, so its input is kept.
    /// Called only by the run's mailbox processor (``RunDriver/Item/hold(_:)`` from elsewhere).
    func hold(_ driver: RunDriver, reason: String, newRun: JournalBatch.NewRun?, started: HistoryEvent?,
              committed: (@Sendable (Result<Void, any Error>) -> Void)?) {
        driver.close()
        let (_, waiters) = forget(driver.runID)
        var batch = JournalBatch(run: driver.ref, statusChange: .init(status: .held, error: reason))
        if var newRun, let started {
            newRun.status = .held
            batch.newRun = newRun
            batch.events = [EventDraft(started)]
        }
        let error = DurableError(.runHeld(runID: driver.runID, reason: reason))
        journal.append(batch) { result in
            committed?(result)
            for waiter in waiters { waiter.resume(throwing: error) }
        }
        driver.instance.tearDown()
    }

    // MARK: - Activities

    /// Starts an activity's attempts. Each attempt is one task; its start-to-close timeout is a timer
    /// that, if it fires first, fails the attempt and cancels (and abandons) the task, so an activity
    /// that ignores cancellation cannot hold up the run. The result is posted to the run's mailbox.
    func dispatch(_ driver: RunDriver, _ activity: PendingActivity) {
        guard let registration = activityRegistration(activity.activityType) else {
            // Not the activity's fault: hold the run until a worker with the activity registered takes it.
            let reason = DurableError(.unknownActivityType(activity.activityType)).description
                + " (seq \(activity.seq)); register it and restart the worker"
            driver.post(.hold(reason))
            return
        }
        startAttempt(driver, activity, registration, attempt: activity.attempt)
    }

    private func startAttempt(
        _ driver: RunDriver, _ activity: PendingActivity, _ registration: ActivityRegistration, attempt: Int
    ) {
        guard !isStopping, !driver.isClosed else { return }
        let context = ActivityContext(
            runID: driver.runID, workflowID: driver.workflowID, activityType: activity.activityType,
            sequence: activity.seq, attempt: attempt, startedAt: Date())
        let gate = AttemptGate()
        let id = nextTaskID.wrappingAdd(1, ordering: .relaxed).newValue
        activityTasks.withLock { $0[id] = .some(nil) }  // registered before it can finish
        if let limit = activity.options.startToClose {
            gate.arm(timeouts.schedule(after: limit) {
                guard gate.settle() != nil else { return }
                gate.task?.cancel()
                self.finishAttempt(driver, activity, registration, attempt: attempt, .failure(StartToCloseTimeout(limit: limit)))
            })
        }
        let body: @Sendable () async -> Void = {
            let result: Result<Data, any Error>
            do {
                result = .success(try await registration.invoke(context, activity.input))
            } catch {
                result = .failure(error)
            }
            _ = self.activityTasks.withLock { $0.removeValue(forKey: id) }
            guard let timer = gate.settle() else { return }
            if timer != 0 { self.timeouts.cancel(timer) }
            ActivityChain.$runID.withValue(driver.runID) {
                self.finishAttempt(driver, activity, registration, attempt: attempt, result)
            }
        }
        // Dispatched while this run's previous attempt result is being recorded (a sequential
        // workflow's next step): start on this thread at once, without a hop to another thread.
        // Anything else (other runs, a start, a recovery, the writer thread) gets an ordinary task.
        let task = ActivityChain.runID == driver.runID ? Task.immediate(operation: body) : Task(operation: body)
        gate.task = task
        activityTasks.withLock { tasks in
            if tasks[id] != nil { tasks[id] = task }
        }
    }

    /// Posts the attempt's result, or records the failure and schedules the next attempt.
    private func finishAttempt(
        _ driver: RunDriver, _ activity: PendingActivity, _ registration: ActivityRegistration, attempt: Int,
        _ result: Result<Data, any Error>
    ) {
        guard !isStopping else { return }
        let seq = activity.seq
        switch result {
        case .success(let output):
            driver.post(resultItem(.activityCompleted, seq: seq, attempt: attempt, data: output))
        case .failure(let error):
            let policy = activity.options.retry
            var failure = FailureInfo(error)
            let retryable = failure.retryable != false && !policy.nonRetryableErrorTypes.contains(failure.type)
            guard retryable && policy.allowsAttempt(after: attempt) else {
                failure.retryable = false
                driver.post(resultItem(.activityFailed, seq: seq, attempt: attempt, data: encode(failure)))
                return
            }
            let delay = policy.delay(afterAttempt: attempt)
            failure.retryable = true
            failure.nextRetryDelayMs = Int(delay.milliseconds)
            driver.post(.record(HistoryEvent(
                index: 0, kind: .activityAttemptFailed, time: Date(), seq: seq, attempt: attempt, data: encode(failure))))
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(delay.milliseconds))) {
                self.startAttempt(driver, activity, registration, attempt: attempt + 1)
            }
        }
    }

    private func resultItem(_ kind: EventKind, seq: Int, attempt: Int, data: Data?) -> RunDriver.Item {
        .input(HistoryEvent(index: 0, kind: kind, time: Date(), seq: seq, attempt: attempt, data: data),
               newRun: nil, claim: false, alreadyRecorded: false, committed: nil)
    }

    private func encode(_ failure: FailureInfo) -> Data? { try? JSONEncoder.payload().encode(failure) }
}

/// The run whose activity attempt result the current task is recording, if any.
private enum ActivityChain {
    @TaskLocal static var runID: String?
}

/// Settles an attempt once: by its task finishing or by its timeout firing, whichever comes first.
private final class AttemptGate: Sendable {
    private struct State {
        var settled = false
        var timer = 0
        var task: Task<Void, Never>?
    }

    private let state = Mutex(State())

    /// Records the attempt's timeout registration (before the attempt starts).
    func arm(_ timer: Int) { state.withLock { $0.timer = timer } }

    /// The attempt's task, for the timeout to cancel.
    var task: Task<Void, Never>? {
        get { state.withLock { $0.task } }
        set { state.withLock { $0.task = newValue } }
    }

    /// For the first caller only: the timeout registration to cancel (0 if none yet); `nil` after.
    func settle() -> Int? {
        state.withLock { state in
            guard !state.settled else { return nil }
            state.settled = true
            return state.timer
        }
    }
}
