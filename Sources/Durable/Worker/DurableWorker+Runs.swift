import DurableJournal
public import Foundation
import Synchronization
import Tracing

extension DurableWorker {
    // MARK: - Starting runs

    /// Starts a run in this process, or returns the open run that already has the workflow ID.
    ///
    /// The run's first activation is committed together with its `WorkflowStarted` event before this
    /// returns, so a started run survives a crash.
    /// - Parameters:
    ///   - id: the workflow ID (a business key); a UUID when `nil`.
    ///   - idReuse: what to do when a run with the workflow ID has ended already; see
    ///     ``WorkflowIDReusePolicy``. By default a completed run's ID is not run again.
    /// - Throws: ``DurableError`` `workflowIDReused` when the policy refuses a new run;
    ///   `unknownWorkflowType`, `badInput`, `shuttingDown`; ``JournalError`` when the journal fails.
    public func start<W: Workflow>(
        _ workflow: W.Type, input: W.Input, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> WorkflowHandle<W> {
        let data = try DurableClient.encodeInput(input, of: W.self)
        let runID = try await start(workflowType: W.name, input: data, id: id, idReuse: idReuse)
        return WorkflowHandle(runID: runID, workflowID: id ?? runID, client: client)
    }

    /// Starts a run of a registered workflow type from JSON input; returns its run ID (or the run ID
    /// of the open run that already has the workflow ID). See ``start(_:input:id:idReuse:)``.
    ///
    /// It runs in a `durable.start_run` span, a child of the caller's current span; the run's
    /// activations and activity attempts are traced under it.
    public func start(
        workflowType: String, input: Data, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> String {
        try await tracer.startingRun(workflowType: workflowType) { span in
            let (runID, existing) = try await start(
                workflowType: workflowType, input: input, id: id, idReuse: idReuse, span: span)
            span.startedRun(runID, workflowID: id ?? runID, existing: existing)
            return runID
        }
    }

    /// ``start(workflowType:input:id:idReuse:)`` in its span. - Returns: the run ID, and whether it is
    /// an open run that had the workflow ID already.
    private func start(
        workflowType: String, input: Data, id: String?, idReuse: WorkflowIDReusePolicy, span: any Span
    ) async throws -> (String, Bool) {
        guard let registration = workflowRegistration(workflowType) else {
            throw DurableError(.unknownWorkflowType(workflowType, known: workflowTypes))
        }
        if isStopping { throw DurableError(.shuttingDown) }
        if !hasRecovered.load(ordering: .acquiring) {
            _ = try await recoverOnce()  // open runs left by a previous process continue first
        }
        let runID = RunRecord.newRunID()
        let workflowID = id ?? runID
        if id != nil, let existing = try await client.admitStart(workflowID: workflowID, policy: idReuse) {  // a generated ID is unused
            return (existing.runID, true)
        }
        let seed = UInt64.random(in: .min ... .max)
        let now = clock.now()
        let instance = WorkflowInstance(
            runID: runID, workflowID: workflowID, workflowType: workflowType, seed: seed, body: registration.body)
        let driver = RunDriver(
            engine: self, ref: RunRef(runID: runID), instance: instance, nextEventIndex: 0,
            metrics: registration.metrics, traceContext: span.context)
        let existing = drivers.withLock { drivers -> String? in
            if let existing = drivers.runID(forWorkflowID: workflowID) { return existing }
            drivers[runID] = driver
            return nil
        }
        if let existing { return (existing, true) }
        startLeaseRenewals()
        let started = HistoryEvent(
            index: 0, kind: .workflowStarted, time: now, name: workflowType, data: input,
            meta: StartedMeta.encode(parent: nil, trace: tracer.carrier(span.context)))
        let newRun = JournalBatch.NewRun(
            workflowID: workflowID, workflowType: workflowType, seed: seed, status: .running, createdAt: now)
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                driver.post(.input(started, newRun: newRun, alreadyRecorded: false) { result in
                    continuation.resume(with: result)
                })
            }
        } catch let error as JournalError {
            if let existing = error.existingRunID { return (existing, true) }
            throw error
        }
        return (runID, false)
    }

    /// The trace context a run's `WorkflowStarted` event records, for its driver.
    func runTraceContext(_ started: HistoryEvent?) -> ServiceContext {
        traces ? tracer.runContext(started) : .topLevel
    }

    // MARK: - Outcomes

    /// Waits for a run driven here to end: `nil` when it is not driven here, or ended meanwhile.
    /// A cancelled caller stops waiting at once; the run goes on.
    package func localOutcome(of runID: String) async throws -> RunOutcome? {
        // Driven here: wait to be resumed at its end (nil: not driven here, or it ended meanwhile).
        // A cancelled caller stops waiting at once; the run goes on.
        let token = outcomeWaiterTokens.add(1, ordering: .relaxed).newValue
        let driven = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RunOutcome?, any Error>) in
                enum Registration { case waiting, notDriven, cancelled }
                let registration = drivers.withLock { drivers -> Registration in
                    guard drivers[runID] != nil else { return .notDriven }
                    return outcomeWaiters.withLock { waiters in
                        // Checked under the lock the cancellation handler takes: it ran already, or it
                        // will find this waiter.
                        if Task.isCancelled { return .cancelled }
                        waiters[runID, default: []].append(OutcomeWaiter(token: token, continuation: continuation))
                        return .waiting
                    }
                }
                switch registration {
                case .waiting: break
                case .notDriven: continuation.resume(returning: nil)
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let waiter = outcomeWaiters.withLock { waiters -> OutcomeWaiter? in
                guard let index = waiters[runID]?.firstIndex(where: { $0.token == token }) else { return nil }
                return waiters[runID]?.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
        return driven
    }

    // MARK: - Inspection

    /// The signal names an open run's workflow waits for, from a replay of its history here.
    package func awaitedSignals(_ run: RunRecord, _ events: [HistoryEvent]) -> [String]? {
        guard let registration = workflowRegistration(run.workflowType) else { return nil }
        let instance = WorkflowInstance(run: run, body: registration.body)
        defer { instance.tearDown() }
        guard (try? instance.replay(events, openEnded: true)) != nil else { return nil }
        return instance.awaitedSignalNames
    }
}
