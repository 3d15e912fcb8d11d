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
    /// try engine.signal("claim-1042", name: "review", Review(approved: true, by: "j.weber"))
    /// ```
    /// - Returns: the run ID.
    /// - Throws: ``JournalError`` when no run has the ID or the run has ended; ``DurableError``
    ///   when the value cannot be encoded.
    @discardableResult
    public func signal<Value: Encodable>(_ id: String, name: String, _ value: Value) throws -> String {
        let data: Data
        do {
            data = try JSONEncoder.payload().encode(value)
        } catch {
            throw DurableError(.badInput(type: "signal '\(name)' (\(Value.self))", reason: "\(error)"))
        }
        return try signal(id, name: name, json: data)
    }

    /// Sends a signal whose value is JSON already (what `durable signal --input` sends).
    @discardableResult
    public func signal(_ id: String, name: String, json: Data) throws -> String {
        guard !name.hasPrefix("durable.") else {
            throw DurableError(.badInput(type: "signal name '\(name)'", reason: "names starting with 'durable.' are reserved"))
        }
        do {
            _ = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
        } catch {
            throw DurableError(.badInput(type: "signal '\(name)' value", reason: "not valid JSON"))
        }
        let (run, _) = try journal.sendSignal(toRun: id, name: name, data: json)
        if drivers.withLock({ $0[run.runID] != nil }) { deliverSignals() }
        return run.runID
    }

    /// Asks a run to stop: workflow code sees Swift task cancellation (activities are cancelled,
    /// sleeps and signal waits throw `CancellationError`), may clean up
    /// (``WorkflowContext/withoutCancellation(_:)``), and the run ends as cancelled when the workflow
    /// then throws. The request is queued in the journal like a signal (from any process) and
    /// delivered by the worker driving the run.
    /// - Returns: the run ID.
    @discardableResult
    public func cancel(_ id: String, reason: String = "cancelled") throws -> String {
        let (run, _) = try journal.sendSignal(
            toRun: id, name: Self.cancelSignal, data: Data(reason.utf8), operation: "cancellation requests")
        if drivers.withLock({ $0[run.runID] != nil }) { deliverSignals() }
        return run.runID
    }

    /// Ends a run at once, recorded as `WorkflowTerminated` with the reason; no workflow code runs.
    /// The worker driving the run stops it (its activities are cancelled); a run no live worker
    /// drives (pending, held, or its worker gone) is terminated in the journal directly.
    /// - Returns: the run ID.
    @discardableResult
    public func terminate(_ id: String, reason: String) throws -> String {
        let (run, _) = try journal.sendSignal(
            toRun: id, name: Self.terminateSignal, data: Data(reason.utf8), operation: "terminations")
        if drivers.withLock({ $0[run.runID] != nil }) {
            deliverSignals()
        } else if leaseIsFree(run) {
            // Nobody writes this run's events now (and nobody will: the lease is compared first).
            try journal.terminateRun(key: run.key, runID: run.runID, reason: reason, lease: RunLease(of: run))
        }  // else the worker holding the lease delivers it
        return run.runID
    }

    static let cancelSignal = "durable.cancel"
    static let terminateSignal = "durable.terminate"
    static let childSignal = "durable.child"

    /// Hands the queued signals of runs driven here to their runs, each once: a run's mailbox takes
    /// a signal only if it is newer than the last it took (a signal whose delivery failed is taken
    /// again by the run's next driver). Runs no live worker drives (held ones) are terminated here
    /// directly.
    func deliverSignals() {
        let driven = drivers.withLock { drivers in
            Dictionary(drivers.values.compactMap { driver in driver.ref.key.map { ($0, driver) } }) { first, _ in first }
        }
        guard let queued = try? journal.queuedSignals(including: { key, name in
            driven[key] != nil || name == Self.terminateSignal
        }), !queued.isEmpty else { return }
        var terminatedHere = false
        defer { if terminatedHere { deliverSignals() } }  // a terminated child's parent has news
        for signal in queued {
            let driver = driven[signal.runKey]
            if driver == nil, signal.name == Self.terminateSignal,
                let run = try? journal.run(key: signal.runKey), run.status.isOpen, leaseIsFree(run)
            {
                let reason = signal.data.map { String(decoding: $0, as: UTF8.self) } ?? ""
                let lease = RunLease(of: run)
                if (try? journal.terminateRun(key: run.key, runID: run.runID, reason: reason, lease: lease)) == true {
                    terminatedHere = true
                }
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
    }
}
