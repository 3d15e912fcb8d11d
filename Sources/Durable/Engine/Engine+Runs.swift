public import DurableJournal
public import Foundation
import Synchronization

/// A started run of a known workflow type.
public struct WorkflowHandle<W: Workflow>: Sendable {
    public let runID: String
    public let workflowID: String
    let engine: Engine

    /// Waits for the run to end and returns its output; a run that continued as new is followed to
    /// the run that ends the chain.
    /// - Throws: ``WorkflowFailure`` when the run failed; ``DurableError`` when it is held.
    public func result() async throws -> W.Output {
        var outcome = try await engine.outcome(of: runID)
        var current = runID
        while case .continuedAsNew(let next) = outcome {
            current = next
            outcome = try await engine.outcome(of: next)
        }
        let runID = current
        switch outcome {
        case .completed(let data):
            do {
                return try JSONDecoder.payload().decode(W.Output.self, from: data)
            } catch {
                throw DurableError(.badOutput(type: String(describing: W.Output.self), reason: describeDecoding(error)))
            }
        case .failed(let failure):
            throw WorkflowFailure(runID: runID, cause: failure)
        case .cancelled(let reason):
            throw WorkflowFailure(runID: runID, cause: FailureInfo(type: "Cancelled", message: reason))
        case .terminated(let reason):
            throw WorkflowFailure(runID: runID, cause: FailureInfo(type: "Terminated", message: reason))
        case .continuedAsNew:
            preconditionFailure("followed above")
        }
    }
}

/// A summary of a run for `runs show` and ``Engine/describe(_:)``.
public struct RunDescription: Sendable {
    public var run: RunRecord
    public var eventCount: Int
    /// The workflow input as JSON.
    public var input: Data?
    /// The outcome, when the run is closed.
    public var outcome: RunOutcome?
    /// Every activity the run scheduled, in sequence order, with its attempts so far.
    public var activities: [ActivitySummary]
    /// Every durable timer the run started, in sequence order.
    public var timers: [TimerSummary] = []
    /// The run that started this one as a child, if any.
    public var parent: ParentLink?
    /// The child runs this run started, in sequence order.
    public var children: [ChildSummary] = []
    /// Why the history could not be read (a corrupt event), if it could not.
    public var historyError: JournalError?
    /// Signals sent and not yet delivered, by name, oldest first.
    public var queuedSignals: [String] = []
    /// The signal names a running run's workflow waits for now (from a replay of its history); `nil`
    /// when the run is not running or this engine has not registered the workflow type (the
    /// code-less `durable` CLI).
    public var awaitedSignals: [String]?
    /// Signals the workflow rejected because their input did not decode (``EventKind/signalRejected``).
    public var rejectedSignals: [RejectedSignal] = []

    /// The activities scheduled and not yet finished.
    public var pendingActivities: [ActivitySummary] { activities.filter { $0.state == .pending } }
}

/// A signal the workflow rejected: its input did not decode as the type the workflow waits for.
public struct RejectedSignal: Sendable, Equatable {
    public var name: String
    /// When the workflow rejected it (the time of its delivery).
    public var time: Date
    public var reason: String

    public static func from(_ events: [HistoryEvent]) -> [RejectedSignal] {
        events.filter { $0.kind == .signalRejected }.map {
            RejectedSignal(
                name: $0.name ?? "", time: $0.time, reason: $0.data.map { String(decoding: $0, as: UTF8.self) } ?? "")
        }
    }
}

/// One child run of a run (``WorkflowContext/executeChild(_:_:id:cancellation:)``).
public struct ChildSummary: Sendable, Equatable {
    public var seq: Int
    public var workflowType: String
    public var workflowID: String
    public var runID: String
    /// `running` until the parent has its outcome; then completed, failed, cancelled or terminated.
    public var state: String

    /// Reads child summaries from a parent's history.
    public static func from(_ events: [HistoryEvent]) -> [ChildSummary] {
        var children: [Int: ChildSummary] = [:]
        for event in events {
            switch event.kind {
            case .childStarted:
                let ids = event.meta.flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:]
                children[event.seq] = ChildSummary(
                    seq: event.seq, workflowType: event.name ?? "?", workflowID: ids["workflowID"] ?? "?",
                    runID: ids["runID"] ?? "?", state: "running")
            case .childClosed:
                if let outcome = event.data.flatMap({ try? JSONDecoder().decode(ChildOutcome.self, from: $0) }) {
                    children[event.seq]?.state = outcome.status
                }
            default: break
            }
        }
        return children.keys.sorted().compactMap { children[$0] }
    }
}

/// One durable timer of a run (``WorkflowContext/sleep(for:)``).
public struct TimerSummary: Sendable, Equatable {
    public enum State: String, Sendable {
        case waiting, fired, cancelled
    }

    public var seq: Int
    public var due: Date
    public var state: State

    /// Reads timer summaries from a history.
    public static func from(_ events: [HistoryEvent]) -> [TimerSummary] {
        var timers: [Int: TimerSummary] = [:]
        for event in events {
            switch event.kind {
            case .timerStarted:
                if let due = event.timerDue { timers[event.seq] = TimerSummary(seq: event.seq, due: due, state: .waiting) }
            case .timerFired where timers[event.seq]?.state == .waiting: timers[event.seq]?.state = .fired
            case .timerCancelled: timers[event.seq]?.state = .cancelled
            default: break
            }
        }
        return timers.keys.sorted().compactMap { timers[$0] }
    }
}

/// One activity of a run as its history tells it: where it stands, how many attempts it took, how
/// the last one ran and why the last failure happened.
public struct ActivitySummary: Sendable, Equatable {
    public enum State: String, Sendable {
        case pending, completed, failed, cancelled
    }

    public var seq: Int
    public var activityType: String
    public var state: State
    /// The highest attempt number recorded (0 while the first attempt has not reported).
    public var attempts: Int
    /// The workflow asked for the activity to be cancelled.
    public var cancelRequested: Bool
    /// The most recent failure recorded (an attempt's or the activity's).
    public var lastFailure: FailureInfo?
    /// How the last reported attempt ran: slot, cold or warm, durations.
    public var lastAttempt: AttemptDetails?
    /// The last heartbeat details recorded (JSON).
    public var lastHeartbeat: String?

    /// Reads activity summaries from a history.
    public static func from(_ events: [HistoryEvent]) -> [ActivitySummary] {
        var summaries: [Int: ActivitySummary] = [:]
        for event in events {
            if event.kind == .activityScheduled {
                summaries[event.seq] = ActivitySummary(
                    seq: event.seq, activityType: event.name ?? "?", state: .pending, attempts: 0, cancelRequested: false)
                continue
            }
            guard var summary = summaries[event.seq] else { continue }
            summary.attempts = max(summary.attempts, event.attempt)
            switch event.kind {
            case .activityCompleted: summary.state = .completed
            case .activityFailed: summary.state = .failed
            case .activityCancelled: summary.state = .cancelled
            case .activityCancelRequested: summary.cancelRequested = true
            case .activityHeartbeat: summary.lastHeartbeat = event.data.map { String(decoding: $0, as: UTF8.self) }
            default: break
            }
            if let failure = event.failure { summary.lastFailure = failure }
            if let details = event.attemptDetails {
                summary.lastAttempt = details
                if let beat = details.heartbeat { summary.lastHeartbeat = beat }
            }
            summaries[event.seq] = summary
        }
        return summaries.keys.sorted().compactMap { summaries[$0] }
    }
}

extension Engine {
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
        let data: Data
        do {
            data = try JSONEncoder.payload().encode(input)
        } catch {
            throw DurableError(.badInput(type: String(describing: W.Input.self), reason: "\(error)"))
        }
        let runID = try await start(workflowType: W.name, input: data, id: id, idReuse: idReuse)
        return WorkflowHandle(runID: runID, workflowID: id ?? runID, engine: self)
    }

    /// Starts a run of a registered workflow type from JSON input; returns its run ID (or the run ID
    /// of the open run that already has the workflow ID). See ``start(_:input:id:idReuse:)``.
    public func start(
        workflowType: String, input: Data, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> String {
        guard let registration = workflowRegistration(workflowType) else {
            throw DurableError(.unknownWorkflowType(workflowType, known: workflowTypes))
        }
        if isStopping { throw DurableError(.shuttingDown) }
        if !hasRecovered.load(ordering: .acquiring) {
            _ = try await recoverOnce()  // open runs left by a previous process continue first
        }
        let runID = UUID().uuidString.lowercased()
        let workflowID = id ?? runID
        if id != nil, let existing = try await admitStart(workflowID: workflowID, policy: idReuse) {  // a generated ID is unused
            return existing.runID
        }
        let seed = UInt64.random(in: .min ... .max)
        let now = clock.now()
        let instance = WorkflowInstance(
            runID: runID, workflowID: workflowID, workflowType: workflowType, seed: seed, body: registration.body)
        let driver = RunDriver(engine: self, ref: RunRef(runID: runID), instance: instance, nextEventIndex: 0)
        let existing = drivers.withLock { drivers -> String? in
            if let existing = drivers.runID(forWorkflowID: workflowID) { return existing }
            drivers[runID] = driver
            return nil
        }
        if let existing { return existing }
        startLeaseRenewals()
        let started = HistoryEvent(index: 0, kind: .workflowStarted, time: now, name: workflowType, data: input)
        let newRun = JournalBatch.NewRun(
            workflowID: workflowID, workflowType: workflowType, seed: seed, status: .running, createdAt: now)
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                driver.post(.input(started, newRun: newRun, alreadyRecorded: false) { result in
                    continuation.resume(with: result)
                })
            }
        } catch let error as JournalError {
            if let existing = error.existingRunID { return existing }
            throw error
        }
        return runID
    }

    /// Records a new run for a worker to pick up, without running any workflow code (what
    /// `durable submit` does). Returns the run ID and whether the workflow ID was already open.
    /// - Throws: ``DurableError`` `workflowIDReused` when `idReuse` refuses a new run (see
    ///   ``WorkflowIDReusePolicy``); ``JournalError`` when the journal fails.
    public func submit(
        workflowType: String, input: Data, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> (runID: String, existing: Bool) {
        let runID = UUID().uuidString.lowercased()
        let workflowID = id ?? runID
        if id != nil, let existing = try await admitStart(workflowID: workflowID, policy: idReuse) {
            return (existing.runID, true)
        }
        let now = clock.now()
        let started = HistoryEvent(index: 0, kind: .workflowStarted, time: now, name: workflowType, data: input)
        let batch = JournalBatch(
            run: RunRef(runID: runID),
            newRun: .init(workflowID: workflowID, workflowType: workflowType,
                          seed: UInt64.random(in: .min ... .max), status: .pending, createdAt: now),
            events: [EventDraft(started)])
        do {
            try await journal.append(batch)
        } catch let error as JournalError {
            if let existing = error.existingRunID { return (existing, true) }
            throw error
        }
        return (runID, false)
    }

    // MARK: - Outcomes

    /// Waits until the run ends. Runs driven by this engine resume the caller at commit; runs driven
    /// by another process are watched through the journal.
    /// - Throws: ``DurableError`` `runHeld` when the run is or becomes held.
    public func outcome(of runID: String) async throws -> RunOutcome {
        try await clock.awaitingOutcome { try await awaitOutcome(of: runID) }
    }

    private func awaitOutcome(of runID: String) async throws -> RunOutcome {
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
        if let driven { return driven }
        // Driven elsewhere: look again whenever the journal changes (the feed yields once at once).
        for await _ in journal.changes() {
            try Task.checkCancellation()
            guard let run = try await journal.findRun(runID) else { throw JournalError(.runNotFound(runID)) }
            if let outcome = try await closedOutcome(run) { return outcome }
            if run.status == .held { throw DurableError(.runHeld(runID: run.runID, reason: run.error ?? "")) }
        }
        try Task.checkCancellation()
        throw DurableError(.shuttingDown)  // the journal was closed
    }

    /// The outcome recorded in a closed run's last event, or `nil` while the run is open.
    func closedOutcome(_ run: RunRecord) async throws -> RunOutcome? {
        guard !run.status.isOpen else { return nil }
        let count = try await journal.eventCount(run)
        guard let last = try await journal.history(run, from: max(0, count - 1)).last else {
            throw JournalError(.corruptRun(runID: run.runID, reason: "closed run has no events"))
        }
        switch last.kind {
        case .workflowCompleted: return .completed(last.data ?? Data())
        case .workflowFailed:
            return .failed(last.failure ?? FailureInfo(type: "Unknown", message: run.error ?? ""))
        case .workflowCancelled:
            return .cancelled(last.data.map { String(decoding: $0, as: UTF8.self) } ?? "")
        case .workflowTerminated:
            return .terminated(last.data.map { String(decoding: $0, as: UTF8.self) } ?? "")
        case .workflowContinuedAsNew:
            return .continuedAsNew(last.name ?? "")
        default:
            throw JournalError(.corruptRun(runID: run.runID, reason: "closed run ends with \(last.kind.name)"))
        }
    }

    // MARK: - Inspection

    /// The run with this run ID, or the newest run with this workflow ID.
    public func describe(_ id: String) async throws -> RunDescription {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        let events: [HistoryEvent]
        do {
            events = try await journal.history(run, from: 0)
        } catch let error as JournalError where error.isCorruption {
            return RunDescription(
                run: run, eventCount: try await journal.eventCount(run), input: nil, outcome: nil, activities: [],
                historyError: error)
        }
        var description = RunDescription(
            run: run, eventCount: events.count, input: events.first?.data, outcome: try await closedOutcome(run),
            activities: ActivitySummary.from(events), timers: TimerSummary.from(events),
            parent: events.first?.meta.flatMap { try? JSONDecoder().decode(ParentLink.self, from: $0) },
            children: ChildSummary.from(events), historyError: nil)
        description.rejectedSignals = RejectedSignal.from(events)
        if run.status.isOpen {
            description.queuedSignals = try await journal.queuedSignalNames(runID: run.runID)
            // A pending run has not run yet; a held one does not replay.
            if run.status == .running { description.awaitedSignals = awaitedSignals(run, events) }
        }
        return description
    }

    /// The signal names an open run's workflow waits for, from a replay of its history here.
    private func awaitedSignals(_ run: RunRecord, _ events: [HistoryEvent]) -> [String]? {
        guard let registration = workflowRegistration(run.workflowType) else { return nil }
        let instance = WorkflowInstance(run: run, body: registration.body)
        defer { instance.tearDown() }
        guard (try? instance.replay(events, openEnded: true)) != nil else { return nil }
        return instance.awaitedSignalNames
    }

    /// Runs, newest first.
    public func runs(status: RunStatus? = nil, limit: Int? = nil) async throws -> [RunRecord] {
        try await journal.runs(statuses: status.map { [$0] }, limit: limit)
    }

    /// Runs matching `filter`.
    public func runs(_ filter: RunFilter) async throws -> [RunRecord] { try await journal.runs(filter) }

    /// How many runs match `filter`, by status.
    public func countRuns(_ filter: RunFilter) async throws -> [RunStatus: Int] { try await journal.countRuns(filter) }

    /// A run's recorded events.
    public func history(_ id: String) async throws -> (RunRecord, [HistoryEvent]) {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        return (run, try await journal.history(run, from: 0))
    }
}
