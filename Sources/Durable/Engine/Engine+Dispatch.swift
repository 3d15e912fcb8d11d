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

    /// Forgets a run whose activation could not be written; a later recovery replays what was committed.
    func journalWriteFailed(runID: String, _ error: any Error) {
        let (driver, waiters) = drivers.withLock { drivers in
            (drivers.removeValue(forKey: runID), outcomeWaiters.withLock { $0.removeValue(forKey: runID) } ?? [])
        }
        driver?.terminate()
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    private func closed(_ driver: RunDriver, outcome: RunOutcome) {
        driver.terminate()
        let waiters = drivers.withLock { drivers in
            drivers[driver.runID] = nil
            return outcomeWaiters.withLock { $0.removeValue(forKey: driver.runID) } ?? []
        }
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
        let waiters = drivers.withLock { drivers in
            drivers[driver.runID] = nil
            return outcomeWaiters.withLock { $0.removeValue(forKey: driver.runID) } ?? []
        }
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

    func dispatch(_ driver: RunDriver, _ activity: PendingActivity) {
        guard !isStopping, !driver.isClosed else { return }
        let id = nextTaskID.wrappingAdd(1, ordering: .relaxed).newValue
        let task = Task {
            await self.runActivity(driver, activity)
            _ = self.activityTasks.withLock { $0.removeValue(forKey: id) }
        }
        activityTasks.withLock { $0[id] = task }
    }

    /// Runs attempts until one succeeds, the retry policy gives up, or the worker stops; posts the
    /// result to the run's mailbox.
    private func runActivity(_ driver: RunDriver, _ activity: PendingActivity) async {
        let seq = activity.seq
        let policy = activity.options.retry
        guard let registration = activityRegistration(activity.activityType) else {
            // Not the activity's fault: hold the run until a worker with the activity registered takes it.
            let reason = DurableError(.unknownActivityType(activity.activityType)).description
                + " (seq \(seq)); register it and restart the worker"
            driver.post(.hold(reason))
            return
        }
        var attempt = activity.attempt
        while !Task.isCancelled && !isStopping {
            let context = ActivityContext(
                runID: driver.runID, workflowID: driver.workflowID, activityType: activity.activityType,
                sequence: seq, attempt: attempt, startedAt: Date())
            let result = await Self.attempt(registration, context, activity.input, timeout: activity.options.startToClose)
            if Task.isCancelled || isStopping { return }
            switch result {
            case .success(let output):
                driver.post(resultItem(.activityCompleted, seq: seq, attempt: attempt, data: output))
                return
            case .failure(let error):
                var failure = FailureInfo(error)
                let retryable = failure.retryable != false && !policy.nonRetryableErrorTypes.contains(failure.type)
                if retryable && policy.allowsAttempt(after: attempt) {
                    let delay = policy.delay(afterAttempt: attempt)
                    failure.retryable = true
                    failure.nextRetryDelayMs = Int(delay.milliseconds)
                    driver.post(.record(HistoryEvent(
                        index: 0, kind: .activityAttemptFailed, time: Date(), seq: seq, attempt: attempt,
                        data: encode(failure))))
                    try? await Task.sleep(for: delay)
                    attempt += 1
                } else {
                    failure.retryable = false
                    driver.post(resultItem(.activityFailed, seq: seq, attempt: attempt, data: encode(failure)))
                    return
                }
            }
        }
    }

    private func resultItem(_ kind: EventKind, seq: Int, attempt: Int, data: Data?) -> RunDriver.Item {
        .input(HistoryEvent(index: 0, kind: kind, time: Date(), seq: seq, attempt: attempt, data: data),
               newRun: nil, claim: false, alreadyRecorded: false, committed: nil)
    }

    private func encode(_ failure: FailureInfo) -> Data? { try? JSONEncoder.payload().encode(failure) }

    /// One attempt, bounded by the start-to-close timeout. On timeout the attempt's task is cancelled
    /// and abandoned: an activity that ignores cancellation cannot hold up the run.
    private static func attempt(
        _ registration: ActivityRegistration, _ context: ActivityContext, _ input: Data, timeout: Duration?
    ) async -> Result<Data, any Error> {
        guard let timeout else {
            do { return .success(try await registration.invoke(context, input)) } catch { return .failure(error) }
        }
        let gate = FirstResult()
        let work = Task {
            do { gate.offer(.success(try await registration.invoke(context, input))) } catch { gate.offer(.failure(error)) }
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled, gate.offer(.failure(StartToCloseTimeout(limit: timeout))) { work.cancel() }
        }
        let result = await gate.value()
        timer.cancel()
        return result
    }
}

/// Keeps the first of several offered results and hands it to one waiter.
private final class FirstResult: Sendable {
    private struct State {
        var result: Result<Data, any Error>?
        var waiter: CheckedContinuation<Result<Data, any Error>, Never>?
    }

    private let state = Mutex(State())

    /// Returns `true` if this offer was the first.
    @discardableResult
    func offer(_ result: Result<Data, any Error>) -> Bool {
        let (first, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Result<Data, any Error>, Never>?) in
            guard state.result == nil else { return (false, nil) }
            state.result = result
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume(returning: result)
        return first
    }

    func value() async -> Result<Data, any Error> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<Data, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
