public import DurableJournal
public import Foundation

extension DurableClient {
    // MARK: - Signals, cancellation, termination

    /// Sends a signal to an open run, by run ID or workflow ID.
    ///
    /// The signal is queued in the journal at once (it survives crashes) and delivered by the worker
    /// driving the run, exactly once, as a `SignalReceived` event; workflow code receives it with
    /// ``WorkflowContext/waitForSignal(_:named:timeout:)``. Signals sent before the workflow waits
    /// are kept for it, in order.
    ///
    /// ```swift
    /// try await client.signal("claim-1042", name: "review", Review(approved: true, by: "j.weber"))
    /// ```
    /// - Returns: the run ID.
    /// - Throws: ``JournalError`` `runNotFound` or `runClosed`; ``DurableError`` `badInput` when the
    ///   value cannot be encoded, `badSignalInput` when the run's workflow is registered in this
    ///   process and names another type for the signal (``Workflow/signals``), `invalidIdentifier`
    ///   when the name is empty or longer than ``DurableLimits/maximumIdentifierBytes``.
    @discardableResult
    public func signal<Value: Encodable>(_ id: String, name: String, _ value: Value) async throws -> String {
        let data = try DurableError.encode(value, as: "signal '\(name)' (\(Value.self))")
        return try await signal(id, name: name, json: data)
    }

    /// Sends a signal whose value is JSON already (what `durable signal --input` sends).
    @discardableResult
    public func signal(_ id: String, name: String, json: Data) async throws -> String {
        try await checkSignal(id, name: name, json: json)
        let run = try await journal.sendSignal(toRun: id, name: name, data: json)
        await deliverIfDrivenHere(run.runID)
        return run.runID
    }

    /// Sends a signal as ``signal(_:name:json:)`` does and records the audit entry `record` makes
    /// for the run, with the target `target`, in one transaction, unless the audit log holds an entry
    /// for `target` whose action starts with `actionPrefix` already: then nothing is sent. This is how
    /// `POST /v1/events` carries an event ID out once, however many servers it is posted to at once
    /// and whether or not a server died between the signal and its record.
    package func signal(
        _ id: String, name: String, json: Data, target: String, unlessRecordedAs actionPrefix: String,
        recording record: @escaping @Sendable (RunRecord) -> AuditDraft
    ) async throws -> SignalOnce {
        try await checkSignal(id, name: name, json: json)
        let done = try await journal.sendSignal(
            toRun: id, name: name, data: json, target: target, unlessRecordedAs: actionPrefix, recording: record)
        if case .sent(let run, _) = done { await deliverIfDrivenHere(run.runID) }
        return done
    }

    /// Refuses a signal name or value ``signal(_:name:json:)`` may not send.
    private func checkSignal(_ id: String, name: String, json: Data) async throws {
        try Self.checkIdentifier(name, "signal name")
        try DurableError.checkPayload(json, "the input of signal '\(name)'")
        guard !name.hasPrefix("durable.") else {
            throw DurableError(.badInput(type: "signal name '\(name)'", reason: "names starting with 'durable.' are reserved"))
        }
        do {
            _ = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
        } catch {
            throw DurableError(.badInput(type: "signal '\(name)' value", reason: "not valid JSON"))
        }
        if let local = localRuns, local.checksSignalTypes, let run = try await journal.findRun(id) {
            try local.checkSignal(run, name: name, json: json)
        }
    }

    /// Asks a run to stop: workflow code sees Swift task cancellation (activities are cancelled,
    /// sleeps and signal waits throw `CancellationError`), may clean up
    /// (``WorkflowContext/withoutCancellation(_:)``), and the run ends as cancelled when the workflow
    /// then throws. The request is queued in the journal like a signal and delivered by the worker
    /// driving the run.
    /// - Returns: the run ID.
    @discardableResult
    public func cancel(_ id: String, reason: String = "cancelled") async throws -> String {
        let run = try await journal.sendSignal(
            toRun: id, name: SystemSignal.cancel, data: Data(reason.utf8), operation: "cancellation requests")
        await deliverIfDrivenHere(run.runID)
        return run.runID
    }

    /// Ends a run at once, recorded as `WorkflowTerminated` with the reason; no workflow code runs.
    /// The worker driving the run stops it (its activities are cancelled); a run no live worker
    /// drives (pending, held, or its worker gone) is terminated in the journal directly.
    /// - Returns: the run ID.
    @discardableResult
    public func terminate(_ id: String, reason: String) async throws -> String {
        let run = try await journal.sendSignal(
            toRun: id, name: SystemSignal.terminate, data: Data(reason.utf8), operation: "terminations")
        if let local = localRuns, local.drives(run.runID) {
            await local.deliverSignals()
        } else if leaseIsFree(run) {
            // Nobody writes this run's events now (and nobody will: the lease is compared first).
            try await terminateUndriven(run, reason: reason)
        }  // else the worker holding the lease delivers it
        return run.runID
    }

    private func deliverIfDrivenHere(_ runID: String) async {
        if let local = localRuns, local.drives(runID) { await local.deliverSignals() }
    }

    /// Terminates a run no worker drives, in the journal directly, telling its parent if it is a child.
    /// - Returns: whether it was terminated here (its lease was still as `run` says).
    @discardableResult
    func terminateUndriven(_ run: RunRecord, reason: String) async throws -> Bool {
        try await journal.terminateRun(
            run.runID, reason: reason, expected: RunLease(of: run), notice: try await terminationNotice(run, reason: reason))
    }

    /// What a child run's parent is told when the child is terminated (`nil` for a run that is no child).
    func terminationNotice(_ run: RunRecord, reason: String) async throws -> RunNotice? {
        try await journal.history(run, from: 0).first?.meta
            .flatMap { try? JSONDecoder().decode(ParentLink.self, from: $0) }
            .flatMap { link in SystemSignal.parentNotice(link, ChildOutcome(
                seq: 0, childRunID: run.runID, status: RunStatus.terminated.rawValue,
                failure: FailureInfo(type: "Terminated", message: reason))) }
    }

    // MARK: - Outcomes

    /// Waits until the run ends and returns how. Runs driven by the engine of this process resume
    /// the caller at commit; others are watched through the journal's change feed. A cancelled
    /// caller gets `CancellationError` at once (the run goes on).
    /// - Throws: ``DurableError`` `runHeld` when the run is or becomes held; ``JournalError``
    ///   `runNotFound`.
    public func outcome(of runID: String) async throws -> RunOutcome {
        try await clock.awaitingOutcome {
            if let local = localRuns, let outcome = try await local.localOutcome(of: runID) { return outcome }
            return try await watchOutcome(of: runID)
        }
    }

    private func watchOutcome(of runID: String) async throws -> RunOutcome {
        // Look again whenever the journal changes (the feed yields once at once).
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
    package func closedOutcome(_ run: RunRecord) async throws -> RunOutcome? {
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

    /// The run with this run ID, or the newest run with this workflow ID: status, input, outcome,
    /// activities with their attempts and last failure, timers, children, and queued and rejected
    /// signals. The signals an open run waits for need its workflow's code: they are filled in when
    /// the engine of this process has the workflow type registered.
    /// A run whose history cannot be read (damaged, or encrypted with a key this process lacks) is
    /// described from its record, with ``RunDescription/historyError`` saying why.
    /// - Throws: ``JournalError`` `runNotFound`.
    public func describe(_ id: String) async throws -> RunDescription {
        try await describeWithHistory(id).description
    }

    /// ``describe(_:)`` and the history it was made from (read once; empty when the history cannot
    /// be read, as ``RunDescription/historyError`` says).
    package func describeWithHistory(_ id: String) async throws -> (description: RunDescription, events: [HistoryEvent]) {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        let events: [HistoryEvent]
        do {
            events = try await journal.history(run, from: 0)
        } catch let error as JournalError
            where error.isCorruption || error.code == .missingPayloadKey || error.code == .wrongPayloadKey
        {
            // What the run record says, and why its history cannot be shown.
            let description = RunDescription(
                run: run, eventCount: try await journal.eventCount(run), input: nil, outcome: nil, activities: [],
                historyError: error)
            return (description, [])
        }
        var description = RunDescription(
            run: run, eventCount: events.count, input: events.first?.data, outcome: try await closedOutcome(run),
            activities: ActivitySummary.from(events), timers: TimerSummary.from(events),
            parent: events.first?.meta.flatMap { try? JSONDecoder().decode(ParentLink.self, from: $0) },
            children: ChildSummary.from(events), historyError: nil)
        description.rejectedSignals = RejectedSignal.from(events)
        description.historyPayloadBytes = events.reduce(0) { $0 + ($1.data?.count ?? 0) }
        if run.status.isOpen {
            description.queuedSignals = try await journal.queuedSignalNames(runID: run.runID)
            // A pending run has not run yet; a held one does not replay.
            if run.status == .running { description.awaitedSignals = localRuns?.awaitedSignals(run, events) }
        }
        return (description, events)
    }

    /// Runs, newest first.
    public func runs(status: RunStatus? = nil, limit: Int? = nil) async throws -> [RunRecord] {
        try await journal.runs(statuses: status.map { [$0] }, limit: limit)
    }

    /// Runs matching `filter`.
    public func runs(_ filter: RunFilter) async throws -> [RunRecord] { try await journal.runs(filter) }

    /// How many runs match `filter`, by status.
    public func countRuns(_ filter: RunFilter) async throws -> [RunStatus: Int] { try await journal.countRuns(filter) }

    /// A run (by run ID, or the newest with this workflow ID) and every event it recorded, in order,
    /// with payloads decoded from their frames (`data` holds the JSON bytes that were recorded).
    /// - Throws: ``JournalError`` `runNotFound`, or a corruption error for an event that does not decode.
    public func history(_ id: String) async throws -> (RunRecord, [HistoryEvent]) {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        return (run, try await journal.history(run, from: 0))
    }

    // MARK: - Queries

    /// Asks a run a query registered with ``WorkflowContext/setQueryHandler(_:_:)`` and returns the
    /// answer as JSON: the bytes the handler's return value encodes to. Answering takes the workflow's
    /// code: a worker's client (``DurableWorker/client``, ``Engine/client``) answers with the worker's
    /// registered code, from the live run when the worker drives it (between activations), else from
    /// a replay of its history; nothing is recorded. A client with no worker uses
    /// ``query(_:name:workflow:as:)`` with the workflow type.
    /// - Throws: ``JournalError`` `runNotFound`; ``DurableError`` `unknownWorkflowType` when no worker
    ///   of this process has the workflow's code, `nonDeterminism` when the code no longer replays the
    ///   history, `unknownQuery` for a query the run does not answer.
    public func query(_ id: String, name: String) async throws -> Data {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        guard let local = localRuns else {
            throw DurableError(.unknownWorkflowType(run.workflowType, known: []))
        }
        return try await local.query(run, name: name)
    }

    /// Asks a run a query (see ``query(_:name:)``) and decodes the answer as `Value`, the type the
    /// query handler returns.
    ///
    /// ```swift
    /// let progress = try await engine.client.query("claim-1042", name: "progress", as: ClaimProgress.self)
    /// ```
    /// - Throws: what ``query(_:name:)`` throws; ``DurableError`` `badOutput` when the answer is not a
    ///   valid `Value`.
    public func query<Value: Decodable>(_ id: String, name: String, as type: Value.Type) async throws -> Value {
        try Self.decodeAnswer(try await query(id, name: name), name: name, as: Value.self)
    }

    /// Asks a run of `W` a query, answered from a replay of its history through `W`'s code in this
    /// process (no worker needed, nothing recorded), and decodes the answer as `Value`.
    ///
    /// ```swift
    /// let stage = try await client.query("claim-1042", name: "stage", workflow: ClaimIntake.self, as: String.self)
    /// ```
    /// - Throws: ``JournalError`` `runNotFound`; ``DurableError`` `unknownWorkflowType` when the run is
    ///   of another type, `nonDeterminism` when the code no longer replays its history, `unknownQuery`,
    ///   `badOutput` when the answer is not a valid `Value`.
    public func query<W: Workflow, Value: Decodable>(
        _ id: String, name: String, workflow: W.Type, as type: Value.Type
    ) async throws -> Value {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        guard run.workflowType == W.name else {
            throw DurableError(.unknownWorkflowType(run.workflowType, known: [W.name]))
        }
        let instance = WorkflowInstance(run: run, body: WorkflowRegistration(W.self).body)
        defer { instance.tearDown() }
        _ = try instance.replay(try await journal.history(run, from: 0), openEnded: true)
        return try Self.decodeAnswer(try instance.answer(query: name), name: name, as: Value.self)
    }

    static func decodeAnswer<Value: Decodable>(_ answer: Data, name: String, as type: Value.Type) throws -> Value {
        do {
            return try JSONDecoder.payload().decode(Value.self, from: answer)
        } catch {
            throw DurableError(.badOutput(type: "answer to query '\(name)' (\(Value.self))", reason: describeDecoding(error)))
        }
    }
}

/// The signals the engine sends itself through the signal queue.
enum SystemSignal {
    static let cancel = "durable.cancel"
    static let terminate = "durable.terminate"
    static let child = "durable.child"

    /// What a child that ended queues for its parent: its outcome, as a `durable.child` signal.
    static func parentNotice(_ parent: ParentLink, _ outcome: ChildOutcome) -> RunNotice? {
        var outcome = outcome
        outcome.seq = parent.parentSeq
        return (try? JSONEncoder().encode(outcome)).map { RunNotice(runID: parent.parentRunID, name: child, payload: $0) }
    }
}
