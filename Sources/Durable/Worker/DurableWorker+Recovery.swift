import DurableJournal
import Logging
import Synchronization
import Foundation

/// What ``Engine/recover()`` found.
public struct RecoveryReport: Sendable, Equatable {
    /// Runs replayed and continued.
    public var resumed: [String] = []
    /// Pending runs (submitted, never started) picked up.
    public var claimed: [String] = []
    /// Runs held, with the reason (non-determinism, corrupt history).
    public var held: [String: String] = [:]
    /// Open runs of workflow types this engine has not registered, left alone.
    public var skipped: [String] = []
    /// Open runs another live worker drives (it holds their leases), left to it.
    public var drivenElsewhere: [String] = []
}

/// The result of re-running a run's code against its recorded history.
public struct ReplayReport: Sendable {
    public var runID: String
    public var workflowType: String
    public var eventCount: Int
    /// `nil` when the code reproduced every recorded decision.
    public var mismatch: DurableError?
    /// Every decision the code made during the replay, in order, with a digest of its payload:
    /// `ActivityScheduled(seq 2, Classify) input#1a2b3c4d`. Identical histories give identical lists.
    public var decisions: [String] = []
}

extension DurableWorker {
    /// Continues every open run of a registered workflow type that no live worker drives (its lease
    /// is free, expired, or held by a process that is gone): takes its lease, replays its history
    /// through the current code and dispatches the activities still owed a result. Runs whose
    /// replay does not match are held, not failed.
    ///
    /// The engine does this by itself before its first ``start(_:input:id:)``; call it to recover
    /// without starting anything, or again later to retry held runs (after registering fixed code).
    @discardableResult
    public func recover() async throws -> RecoveryReport {
        if let first = try await recoverOnce() { return first }
        return try await recoveryPass()
    }

    /// Runs the first recovery pass, once, whoever asks first; concurrent callers wait for it.
    /// - Returns: the pass's report to the caller that started it, `nil` to the others.
    func recoverOnce() async throws -> RecoveryReport? {
        let (task, started) = firstRecovery.withLock { task in
            if let task { return (task, false) }
            let pass = Task { try await self.recoveryPass() }
            task = pass
            return (pass, true)
        }
        do {
            let report = try await task.value
            hasRecovered.store(true, ordering: .releasing)
            return started ? report : nil
        } catch {
            firstRecovery.withLock { $0 = nil }  // let a later call try again
            throw error
        }
    }

    private func recoveryPass() async throws -> RecoveryReport {
        try await registerWorkflowTypes()
        startLeaseRenewals()  // before the first lease is taken
        var report = RecoveryReport()
        // Lazy: only the runs that need a driver now (work in flight, held). A run the due-time index
        // records as waiting stays in the journal until it is due or something comes for it.
        for run in try await journal.runsToResume() {
            guard drivers.withLock({ $0[run.runID] == nil }) else { continue }
            guard let registration = workflowRegistration(run.workflowType) else {
                report.skipped.append(run.runID)
                continue
            }
            guard leaseIsFree(run), try await journal.acquireLease(runID: run.runID, expected: RunLease(of: run)) else {
                report.drivenElsewhere.append(run.runID)
                continue
            }
            if let reason = await resume(run, registration) {
                report.held[run.runID] = reason
            } else {
                report.resumed.append(run.runID)
            }
        }
        report.claimed = try await claimPendingRuns()
        await deliverSignals()  // sent while no worker ran (waiting runs with signals wake)
        // Waiting runs left by earlier workers: the due timer looks at the index, and signals sent to
        // them from this process reach them without a worker loop. (Not otherwise: a watch reads the
        // change feed, which an engine without a loop does not poll.)
        if (try? await journal.hasWaitingRuns()) == true {
            noteDue(clock.now())
            watchWaitingRuns()
        }
        return report
    }

    /// Replays one open run and continues it; returns why it is held, or `nil`.
    func resume(_ run: RunRecord, _ registration: WorkflowRegistration) async -> String? {
        let instance = WorkflowInstance(run: run, body: registration.body)
        let ref = RunRef(runID: run.runID)
        let events: [HistoryEvent]
        let pending: ReplayResult
        // Only the start recorded (a run claimed, or held at its first activation, before that
        // activation was committed): nothing is decided yet, so the start is activated afresh, as
        // for a new claim, instead of replayed.
        let fresh: HistoryEvent?
        do {
            events = try await journal.history(run)
            fresh = events.count == 1 && events[0].kind == .workflowStarted ? events[0] : nil
            pending = fresh == nil ? try instance.replay(events) : ReplayResult()
        } catch {
            instance.tearDown()
            let reason = "\(error)"
            if run.status != .held || run.error != reason {
                let held = JournalBatch(run: ref, statusChange: .init(status: .held, error: reason))
                if (try? await journal.append(held)) != nil { registration.metrics.countHold() }
            }
            return reason
        }
        // What the run's row says it waits for is not known here: the next activation writes it.
        let driver = RunDriver(
            engine: self, ref: ref, instance: instance, nextEventIndex: events.count, metrics: registration.metrics,
            traceContext: runTraceContext(events.first), writtenWake: nil)
        guard adopt(driver) else {  // another recovery pass got there first
            instance.tearDown()
            return nil
        }
        if run.status == .held {
            do {
                try await journal.append(JournalBatch(run: ref, statusChange: .init(status: .running)))
            } catch {  // ended meanwhile (terminated): not ours to drive
                _ = drivers.withLock { $0.removeValue(forKey: run.runID) }
                driver.terminate()
                return "\(error)"
            }
        }
        if let fresh {
            driver.post(.input(fresh, newRun: nil, alreadyRecorded: true, committed: nil))
            return nil
        }
        for activity in pending.activities { dispatch(driver, activity) }
        // Late timers fire now, in due order; the others when they are due.
        for timer in pending.timers { driver.startTimer(timer.seq, due: timer.due) }
        return nil
    }

    /// Takes over running runs whose worker is gone (its process ended, or its leases expired),
    /// as a worker does every ``takeoverInterval``. - Returns: the runs taken over.
    @discardableResult
    func takeOverRuns() async throws -> [String] {
        try journal.checkFiles()  // every takeover pass: a quarter of a second
        startLeaseRenewals()
        try await releaseDroppedRuns()
        let dead = try await journal.leaseOwners().keys.filter { $0 != workerID && WorkerIdentity.isAlive($0) == false }
        // A worker found gone may have left waiting runs with timers this worker has not heard of.
        if knownDeadOwners.withLock({ known in
            defer { known.formUnion(dead) }
            return !Set(dead).isSubset(of: known)
        }) {
            noteDue(clock.now())
        }
        var taken: [String] = []
        for run in try await journal.runsToTakeOver(deadOwners: Array(dead)) {
            guard !isStopping, drivers.withLock({ $0[run.runID] == nil }),
                let registration = workflowRegistration(run.workflowType),
                try await takingLeases({ try await journal.acquireLease(runID: run.runID, expected: RunLease(of: run)) })
            else { continue }
            _ = await resume(run, registration)
            taken.append(run.runID)
        }
        if !taken.isEmpty { await deliverSignals() }
        return taken
    }

    /// Starts driving a run unless this engine drives it already.
    private func adopt(_ driver: RunDriver) -> Bool {
        let adopted = drivers.withLock { drivers in
            guard drivers[driver.runID] == nil else { return false }
            drivers[driver.runID] = driver
            return true
        }
        return adopted
    }

    /// Claims runs submitted by other processes (status `pending`) and starts them here, a few at a
    /// time: a claim is one statement that takes several runs at once, so workers claiming together
    /// each start different runs instead of all activating the same ones and all but one failing to
    /// commit.
    @discardableResult
    func claimPendingRuns() async throws -> [String] {
        startLeaseRenewals()
        let types = registry.withLock { $0.workflowNames }
        if leasesUncertain.load(ordering: .relaxed) {
            let driven = drivers.withLock { Set($0.values.map(\.runID)) }
            let strays = try await journal.runsLeasedHere().filter { !driven.contains($0) }
            droppedRuns.withLock { $0.formUnion(strays) }
            try await releaseDroppedRuns()
            leasesUncertain.store(false, ordering: .relaxed)
        }
        var claimed: [String] = []
        while !isStopping {
            let runs = try await takingLeases {
                try await journal.claimPendingRuns(workflowTypes: types, limit: Self.claimBatch)
            }
            for run in runs {
                guard let registration = workflowRegistration(run.workflowType) else {  // claimed by its type: not expected
                    droppedRuns.withLock { _ = $0.insert(run.runID) }
                    continue
                }
                let started: HistoryEvent
                do {
                    guard let first = try await journal.history(run, from: 0).first, first.kind == .workflowStarted else {
                        throw JournalError(.corruptRun(runID: run.runID, reason: "pending run has no WorkflowStarted event"))
                    }
                    started = first
                } catch {
                    // Held with the reason; if even that cannot be written, the lease is given up so
                    // that a takeover starts the run later (see `droppedRuns`).
                    do {
                        try await journal.append(JournalBatch(
                            run: RunRef(runID: run.runID), statusChange: .init(status: .held, error: "\(error)")))
                    } catch {
                        droppedRuns.withLock { _ = $0.insert(run.runID) }
                    }
                    continue
                }
                let instance = WorkflowInstance(run: run, body: registration.body)
                let driver = RunDriver(
                    engine: self, ref: RunRef(runID: run.runID), instance: instance, nextEventIndex: 1,
                    metrics: registration.metrics, traceContext: runTraceContext(started))
                guard adopt(driver) else { continue }
                driver.post(.input(started, newRun: nil, alreadyRecorded: true, committed: nil))
                claimed.append(run.runID)
            }
            if runs.count < Self.claimBatch { break }
        }
        if !claimed.isEmpty { await deliverSignals() }  // a continued run's signals came with it
        return claimed
    }

    /// How many pending runs a worker claims in one statement.
    static let claimBatch = 32

    /// Whether the leases held here are to be checked at the next claim pass (see ``leasesUncertain``);
    /// setting it does what a failed claim does.
    package var leasesAreUncertain: Bool {
        get { leasesUncertain.load(ordering: .relaxed) }
        set { leasesUncertain.store(newValue, ordering: .relaxed) }
    }

    /// Runs a statement that takes leases; if it fails, it may have committed all the same (the
    /// answer was lost), so the leases held here are checked at the next claim pass.
    private func takingLeases<T>(_ statement: () async throws -> T) async throws -> T {
        do {
            return try await statement()
        } catch {
            leasesUncertain.store(true, ordering: .relaxed)
            throw error
        }
    }

    /// Warms the pools (``warmUp()``), recovers open runs (unless this engine has done so already),
    /// then keeps picking up runs submitted by other processes, and taking over runs of workers
    /// that are gone, until ``shutdown()`` is called or the task is cancelled. Any number of workers
    /// can share a journal.
    ///
    /// The worker waits on the journal's change feed (``Journal/changes()``): a submission, a signal
    /// or a cancellation from any process wakes it.
    /// - Parameter takeoverInterval: how often runs of gone workers are looked for.
    public func runWorker(takeoverInterval: Duration = .milliseconds(250)) async throws {
        try await work(takeoverInterval: takeoverInterval, ready: nil)
    }

    /// ``runWorker(takeoverInterval:)``, telling `ready` what start-up did before the loop takes work.
    func work(takeoverInterval: Duration, ready: ((WorkerStartup) -> Void)?) async throws {
        try await registerWorkflowTypes()  // the types the code-less CLI may submit
        let warming = ContinuousClock.now
        await warmUp()
        let warmUp = ContinuousClock.now - warming
        // Subscribed before recovering: what is committed meanwhile (a submission, a signal) wakes
        // the loop below, which then looks at what is there.
        let changes = journal.changes()
        // The first recovery pass, unless a start in this process ran it already (a second pass
        // beside that start's runs would only race it for the same leases).
        let recovery = try await recoverOnce() ?? RecoveryReport()
        ready?(WorkerStartup(warmUp: warmUp, recovery: recovery))
        workerLoops.add(1, ordering: .relaxed)
        defer { workerLoops.subtract(1, ordering: .relaxed) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !self.isStopping && !Task.isCancelled {
                    try? await Task.sleep(for: takeoverInterval)
                    do {
                        try await self.takeOverRuns()
                        self.reportWorkerRecovered()
                    } catch where !self.isStopping && !Task.isCancelled {
                        self.reportWorkerError(error)
                    } catch {}
                }
            }
            group.addTask {
                for await _ in changes {
                    if self.isStopping || Task.isCancelled { break }
                    // A pass that fails (the journal busy past its timeout, the database unreachable)
                    // is tried again on the next change; the worker goes on.
                    do {
                        try await self.claimPendingRuns()
                        await self.deliverSignals()
                        self.reportWorkerRecovered()
                    } catch where !self.isStopping && !Task.isCancelled {
                        self.reportWorkerError(error)
                    } catch {}
                }
            }
            // Stops both when the engine stops (the change feed would otherwise wait for the next change).
            let stopped = self.stopSignal()
            group.addTask { for await _ in stopped {} }
            await group.next()
            group.cancelAll()
        }
        if let error = stoppedBy.withLock({ $0 }) {
            await shutdown()
            throw error
        }
    }

    /// Logs that a worker pass failed and will be tried again, once per outage: while passes
    /// keep failing (the database restarting, the disk full) nothing more is said, until one succeeds
    /// (``reportWorkerRecovered()``).
    func reportWorkerError(_ error: any Error) {
        if let error = error as? JournalError, error.code == .filesChanged {
            // Writing on could lose commits: stop (graceful: what is recorded is committed, leases released).
            let first = stoppedBy.withLock { stopped -> Bool in
                guard stopped == nil else { return false }
                stopped = error
                return true
            }
            guard first else { return }
            logger.critical("stopping: \(error)")
            Task { await shutdown() }
            return
        }
        let text = "\(error)"
        let say = lastWorkerError.withLock { last -> Bool in
            defer { if last == nil { last = (text, .now) } }
            return last == nil
        }
        if say { logger.warning("journal pass failed: \(text); trying again") }
    }

    /// Ends the outage ``reportWorkerError(_:)`` reported, saying so once.
    private func reportWorkerRecovered() {
        guard !writesFailing.load(ordering: .relaxed) else { return }
        guard let since = lastWorkerError.withLock({ last in defer { last = nil }; return last?.at }) else { return }
        let seconds = (ContinuousClock.now - since).components.seconds
        logger.notice("the journal works again (after \(seconds) s)")
    }

    /// Re-runs a run's code against its recorded history without writing anything.
    public func replay(_ id: String) async throws -> ReplayReport {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        return Self.replay(run, try await journal.history(run, from: 0), with: try registration(run.workflowType))
    }

    /// Re-runs the registered code of a history file's workflow type against that history (a file
    /// `durable history export` wrote, from this journal or any other) without writing anything.
    /// - Parameter path: names the file in errors.
    /// - Throws: ``JournalError`` `badHistoryFile` when the history cannot be read,
    ///   ``DurableError`` `unknownWorkflowType` when its type is not registered here.
    public func replay(history: HistoryExport, path: String) throws -> ReplayReport {
        let (run, events) = try history.decoded(path: path)
        return Self.replay(run, events, with: try registration(run.workflowType))
    }

    /// Re-runs `W` against a history file, whatever the engine has registered (DurableTesting's
    /// `assertReplays`).
    /// - Throws: ``JournalError`` `badHistoryFile` when the file cannot be read or is a history of
    ///   another workflow type.
    package static func replay<W: Workflow>(history: HistoryExport, path: String, as workflow: W.Type) throws -> ReplayReport {
        let (run, events) = try history.decoded(path: path)
        guard run.workflowType == W.name else {
            throw JournalError(.badHistoryFile(
                path: path, reason: "is a history of workflow type \(run.workflowType), not \(W.name)"))
        }
        return replay(run, events, with: WorkflowRegistration(W.self))
    }

    private func registration(_ workflowType: String) throws -> WorkflowRegistration {
        guard let registration = workflowRegistration(workflowType) else {
            throw DurableError(.unknownWorkflowType(workflowType, known: workflowTypes))
        }
        return registration
    }

    private static func replay(_ run: RunRecord, _ events: [HistoryEvent], with registration: WorkflowRegistration) -> ReplayReport {
        let instance = WorkflowInstance(run: run, body: registration.body)
        defer { instance.tearDown() }
        var report = ReplayReport(runID: run.runID, workflowType: run.workflowType, eventCount: events.count)
        var decisions: [String] = []
        do {
            _ = try instance.replay(events) { decisions.append($0.traceLine) }
        } catch {
            report.mismatch = error
        }
        report.decisions = decisions
        return report
    }
}
