import Dispatch
import DurableJournal
import Logging
import Foundation
import Synchronization

extension DurableWorker {
    /// Called on the journal writer's thread once an activation's batch is committed (or failed).
    func afterCommit(_ driver: RunDriver, commands: [WorkflowCommand], result: Result<Void, any Error>) {
        if case .failure(let error) = result {
            journalWriteFailed(runID: driver.runID, error)
            return
        }
        if writesFailing.load(ordering: .relaxed) { writesFailing.store(false, ordering: .relaxed) }
        // Recording this run's previous result scheduled exactly one activity: it may start on this
        // thread (see ActivityExecution). Several would run one after another on it, so they do not.
        let inline = ActivityChain.isRecording(for: driver)
            && commands.count { if case .scheduleActivity = $0 { true } else { false } } == 1
        var newRuns: [String] = []  // children or a continuation of registered types, written pending with this batch
        var unregisteredChildren: [(seq: Int, type: String)] = []
        for command in commands {
            switch command {
            case .scheduleActivity(let seq, let type, let input, let options):
                dispatch(driver, PendingActivity(
                    seq: seq, activityType: type, input: input, options: options, scheduledAt: clock.now()), inline: inline)
            case .cancelActivity(let seq):
                driver.cancelActivity(seq)
            case .startTimer(let seq, let due):
                driver.startTimer(seq, due: due)
            case .cancelTimer(let seq):
                driver.cancelTimer(seq)
            case .markPatch, .rejectSignal:
                break
            case .startChild(let seq, let type, _, let childRunID, _):
                if workflowRegistration(type) == nil {
                    unregisteredChildren.append((seq, type))
                } else {
                    newRuns.append(childRunID)
                }
            case .cancelChild(_, let childRunID, let abandon):
                if !abandon { Task { _ = try? await client.cancel(childRunID, reason: "its parent was cancelled") } }
            case .completeWorkflow(let result):
                closed(driver, outcome: .completed(result))
            case .failWorkflow(let failure):
                closed(driver, outcome: .failed(failure))
            case .cancelWorkflow(let reason):
                closed(driver, outcome: .cancelled(reason))
            case .continueAsNew(_, let newRunID):
                closed(driver, outcome: .continuedAsNew(newRunID))
                newRuns.append(newRunID)
            }
        }
        if !newRuns.isEmpty { claimNewRuns(newRuns) }
        if !unregisteredChildren.isEmpty { holdForUnregisteredChildren(driver, unregisteredChildren) }
    }

    /// Claims the runs an activation just wrote pending (children, a continuation), so that they start
    /// at once, with or without a worker loop. A claim skips a run whose row another transaction holds
    /// (PostgreSQL's `SKIP LOCKED`: a signal being queued for it, say); such a run is claimed again a
    /// little later, until it is no longer pending here (started, or taken by another worker), for up
    /// to 5 s (a worker loop, if one runs, claims it after that).
    private func claimNewRuns(_ runIDs: [String]) {
        clock.beginWork()
        Task {
            defer { clock.endWork() }
            for attempt in 0..<250 {
                if attempt > 0 { try? await Task.sleep(for: .milliseconds(20)) }
                guard !isStopping else { return }
                _ = try? await claimPendingRuns()
                var pending = false
                for runID in runIDs where drivers.withLock({ $0[runID] == nil }) {
                    if (try? await journal.findRun(runID))?.status == .pending { pending = true }
                }
                if !pending { return }
            }
        }
    }

    /// Holds a run that started a child of a workflow type no worker has registered (the child would
    /// stay pending, and the parent wait, for ever), as a missing activity type holds its run. The
    /// child stays pending: a worker that registers its type picks it up once the parent is recovered.
    private func holdForUnregisteredChildren(_ driver: RunDriver, _ children: [(seq: Int, type: String)]) {
        clock.beginWork()
        Task {
            defer { clock.endWork() }
            guard let known = try? await journal.knownWorkflowTypes() else { return }  // cannot tell: wait
            guard let child = children.first(where: { !known.contains($0.type) }) else { return }
            let reason = DurableError(.unknownWorkflowType(child.type, known: known)).description
                + " (child workflow, seq \(child.seq)); no worker has registered it: register it and restart the worker"
            driver.post(.hold(reason))
        }
    }

    /// Called once a run's termination is committed (or failed to be).
    func afterTermination(_ driver: RunDriver, reason: String, result: Result<Void, any Error>) {
        if case .failure(let error) = result {
            journalWriteFailed(runID: driver.runID, error)
        } else {
            closed(driver, outcome: .terminated(reason))
        }
    }

    /// Stops tracking a run driven here; returns its driver and the callers waiting for its outcome.
    /// Both maps change under the drivers lock, so ``outcome(of:)`` sees either the driver or the end.
    private func forget(_ runID: String) -> (RunDriver?, [OutcomeWaiter]) {
        drivers.withLock { drivers in
            (drivers.removeValue(forKey: runID), outcomeWaiters.withLock { $0.removeValue(forKey: runID) } ?? [])
        }
    }

    /// Forgets a run whose activation could not be written and gives up its lease, so that a worker
    /// (this one's next takeover pass, or another) replays what was committed and drives it on.
    /// A write refused because the run is no longer this engine's (lease lost, run ended) is no news;
    /// any other failure (the disk full, the database gone) is reported once per outage.
    func journalWriteFailed(runID: String, _ error: any Error) {
        let (driver, waiters) = forget(runID)
        driver?.terminate()
        for waiter in waiters { waiter.continuation.resume(throwing: error) }
        guard let driver, journal.lease != nil else { return }
        if let error = error as? JournalError, error.code == .conflict {
            logger.notice("stopped driving the run: \(error)", metadata: runMetadata(driver))
        } else {
            writesFailing.store(true, ordering: .relaxed)
            reportWorkerError(error)
        }
        droppedRuns.withLock { _ = $0.insert(runID) }
        Task { try? await releaseDroppedRuns() }
    }

    /// Releases the leases of the runs in ``droppedRuns``; a run whose release fails stays listed for
    /// the next takeover pass.
    func releaseDroppedRuns() async throws {
        for runID in droppedRuns.withLock({ $0 }) {
            if drivers.withLock({ $0[runID] == nil }) { try await journal.releaseLease(runID: runID) }
            droppedRuns.withLock { _ = $0.remove(runID) }
        }
    }

    private func closed(_ driver: RunDriver, outcome: RunOutcome) {
        switch outcome {
        case .failed(let failure): logger.info("run failed: \(failure)", metadata: runMetadata(driver))
        case .terminated(let reason): logger.info("run terminated: \(reason)", metadata: runMetadata(driver))
        default: logger.debug("run closed: \(outcome)", metadata: runMetadata(driver))
        }
        driver.metrics.countClose(outcome)
        driver.terminate()
        let (_, waiters) = forget(driver.runID)
        for waiter in waiters { waiter.continuation.resume(returning: outcome) }
        for observer in closeObservers.withLock({ $0 }) { observer(driver.runID, outcome) }
        if driver.instance.parent != nil { Task { await deliverSignals() } }  // the parent's ChildClosed is queued
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
        logger.error("run held: \(reason)", metadata: runMetadata(driver))
        append(batch) { [metrics = driver.metrics] result in
            if case .success = result { metrics.countHold() }
            committed?(result)
            for waiter in waiters { waiter.continuation.resume(throwing: error) }
        }
        driver.instance.tearDown()
    }

    /// What a log entry about a run carries.
    func runMetadata(_ driver: RunDriver) -> Logger.Metadata {
        ["durable.run": "\(driver.runID)", "durable.workflow-id": "\(driver.instance.workflowID)",
         "durable.workflow-type": "\(driver.instance.workflowType)"]
    }

    /// Hands a batch to the journal's writer; `done` runs on the writer's thread once the batch is
    /// committed (or failed), after its commit time and size are recorded. A skipping clock counts the
    /// batch as work in progress until then.
    func append(_ batch: JournalBatch, done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        let metrics = journalMetrics
        let events = batch.events.count
        let skipping = clock.skipping
        if skipping { clock.beginWork() }
        let handedOver = DispatchTime.now().uptimeNanoseconds
        journal.append(batch) { [clock] result in
            if case .success = result {
                metrics.committed(after: DispatchTime.now().uptimeNanoseconds &- handedOver, events: events)
            }
            done(result)
            if skipping { clock.endWork() }
        }
    }

    // MARK: - Activities

    /// Starts running an activity (see ``ActivityExecution``), or holds the run when this worker
    /// does not have the activity registered.
    func dispatch(_ driver: RunDriver, _ activity: PendingActivity, inline: Bool = false) {
        guard let registration = activityRegistration(activity.activityType) else {
            // Not the activity's fault: hold the run until a worker with the activity registered takes it.
            let reason = DurableError(.unknownActivityType(activity.activityType)).description
                + " (seq \(activity.seq)); register it and restart the worker"
            driver.post(.hold(reason))
            return
        }
        let execution = ActivityExecution(engine: self, driver: driver, pending: activity, registration: registration)
        guard let cancelled = driver.track(execution) else { return }
        execution.begin(inline: inline && !cancelled)
        if cancelled { execution.requestCancel() }
    }
}
