public import Foundation
import DurableJournal
import Synchronization

extension Engine {
    /// Sends a signal to an open run, by run ID or workflow ID, from this or any other process.
    ///
    /// The signal is queued in the journal at once (it survives crashes) and delivered by the worker
    /// driving the run, exactly once, as a `SignalReceived` event; workflow code receives it with
    /// ``WorkflowContext/waitForSignal(_:named:timeout:)``. Signals sent before the workflow waits
    /// are kept for it, in order.
    ///
    /// ```swift
    /// try await engine.signal("claim-1042", name: "review", Review(approved: true, by: "j.weber"))
    /// ```
    /// - Returns: the run ID.
    /// - Throws: ``JournalError`` when no run has the ID or the run has ended; ``DurableError``
    ///   when the value cannot be encoded.
    @discardableResult
    public func signal<Value: Encodable>(_ id: String, name: String, _ value: Value) async throws -> String {
        let data: Data
        do {
            data = try JSONEncoder.payload().encode(value)
        } catch {
            throw DurableError(.badInput(type: "signal '\(name)' (\(Value.self))", reason: "\(error)"))
        }
        return try await signal(id, name: name, json: data)
    }

    /// Sends a signal whose value is JSON already (what `durable signal --input` sends).
    @discardableResult
    public func signal(_ id: String, name: String, json: Data) async throws -> String {
        guard !name.hasPrefix("durable.") else {
            throw DurableError(.badInput(type: "signal name '\(name)'", reason: "names starting with 'durable.' are reserved"))
        }
        do {
            _ = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
        } catch {
            throw DurableError(.badInput(type: "signal '\(name)' value", reason: "not valid JSON"))
        }
        if registry.withLock({ $0.workflows.values.contains(where: \.declaresSignals) }),
            let run = try await journal.findRun(id), let registration = workflowRegistration(run.workflowType)
        {
            try registration.validateSignal(run.runID, name, json)
        }
        let run = try await journal.sendSignal(toRun: id, name: name, data: json)
        if drivers.withLock({ $0[run.runID] != nil }) { await deliverSignals() }
        return run.runID
    }

    /// Asks a run to stop: workflow code sees Swift task cancellation (activities are cancelled,
    /// sleeps and signal waits throw `CancellationError`), may clean up
    /// (``WorkflowContext/withoutCancellation(_:)``), and the run ends as cancelled when the workflow
    /// then throws. The request is queued in the journal like a signal (from any process) and
    /// delivered by the worker driving the run.
    /// - Returns: the run ID.
    @discardableResult
    public func cancel(_ id: String, reason: String = "cancelled") async throws -> String {
        let run = try await journal.sendSignal(
            toRun: id, name: Self.cancelSignal, data: Data(reason.utf8), operation: "cancellation requests")
        if drivers.withLock({ $0[run.runID] != nil }) { await deliverSignals() }
        return run.runID
    }

    /// Ends a run at once, recorded as `WorkflowTerminated` with the reason; no workflow code runs.
    /// The worker driving the run stops it (its activities are cancelled); a run no live worker
    /// drives (pending, held, or its worker gone) is terminated in the journal directly.
    /// - Returns: the run ID.
    @discardableResult
    public func terminate(_ id: String, reason: String) async throws -> String {
        let run = try await journal.sendSignal(
            toRun: id, name: Self.terminateSignal, data: Data(reason.utf8), operation: "terminations")
        if drivers.withLock({ $0[run.runID] != nil }) {
            await deliverSignals()
        } else if leaseIsFree(run) {
            // Nobody writes this run's events now (and nobody will: the lease is compared first).
            try await terminateUndriven(run, reason: reason)
        }  // else the worker holding the lease delivers it
        return run.runID
    }

    static let cancelSignal = "durable.cancel"
    static let terminateSignal = "durable.terminate"
    static let childSignal = "durable.child"

    /// Terminates a run no worker drives, in the journal directly, telling its parent if it is a child.
    /// - Returns: whether it was terminated here (its lease was still as `run` says).
    @discardableResult
    func terminateUndriven(_ run: RunRecord, reason: String) async throws -> Bool {
        let notice = try await journal.history(run, from: 0).first?.meta
            .flatMap { try? JSONDecoder().decode(ParentLink.self, from: $0) }
            .flatMap { link in Self.parentNotice(link, ChildOutcome(
                seq: 0, childRunID: run.runID, status: RunStatus.terminated.rawValue,
                failure: FailureInfo(type: "Terminated", message: reason))) }
        return try await journal.terminateRun(run.runID, reason: reason, expected: RunLease(of: run), notice: notice)
    }

    /// What a child that ended queues for its parent: its outcome, as a `durable.child` signal.
    static func parentNotice(_ parent: ParentLink, _ outcome: ChildOutcome) -> RunNotice? {
        var outcome = outcome
        outcome.seq = parent.parentSeq
        return (try? JSONEncoder().encode(outcome)).map { RunNotice(runID: parent.parentRunID, name: childSignal, payload: $0) }
    }

    /// Hands the queued signals of runs driven here to their runs, each once: a run's mailbox takes
    /// a signal only if it is newer than the last it took (a signal whose delivery failed is taken
    /// again by the run's next driver). Runs no live worker drives (held ones) are terminated here
    /// directly.
    func deliverSignals() async {
        let driven = drivers.withLock { drivers in
            Dictionary(drivers.values.map { ($0.runID, $0) }) { first, _ in first }
        }
        let terminate = Self.terminateSignal
        guard let queued = try? await journal.queuedSignals(including: { runID, name in
            driven[runID] != nil || name == terminate
        }), !queued.isEmpty else { return }
        var terminatedHere = false
        for signal in queued {
            let driver = driven[signal.runID]
            if driver == nil, signal.name == Self.terminateSignal,
                let run = try? await journal.findRun(signal.runID), run.status.isOpen, leaseIsFree(run)
            {
                let reason = signal.data.map { String(decoding: $0, as: UTF8.self) } ?? ""
                if (try? await terminateUndriven(run, reason: reason)) == true { terminatedHere = true }
                continue
            }
            guard let driver else { continue }
            switch signal.name {
            case Self.terminateSignal:
                driver.post(.terminate(signal.data.map { String(decoding: $0, as: UTF8.self) } ?? "", queued: signal.id))
            case Self.childSignal:
                let seq = signal.data.flatMap { try? JSONDecoder().decode(ChildOutcome.self, from: $0) }?.seq ?? 0
                let event = HistoryEvent(index: 0, kind: .childClosed, time: clock.now(), seq: seq, data: signal.data)
                driver.post(.signal(event, queued: signal.id))
            case Self.cancelSignal:
                let event = HistoryEvent(index: 0, kind: .workflowCancelRequested, time: clock.now(), data: signal.data)
                driver.post(.signal(event, queued: signal.id))
            default:
                let event = HistoryEvent(index: 0, kind: .signalReceived, time: clock.now(), name: signal.name, data: signal.data)
                driver.post(.signal(event, queued: signal.id))
            }
        }
        if terminatedHere { await deliverSignals() }  // a terminated child's parent has news
    }
}
