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
        do {
            _ = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
        } catch {
            throw DurableError(.badInput(type: "signal '\(name)' value", reason: "not valid JSON"))
        }
        let (run, _) = try journal.sendSignal(toRun: id, name: name, data: json)
        if drivers.withLock({ $0[run.runID] != nil }) { deliverSignals() }
        return run.runID
    }

    /// Hands the queued signals of runs driven here to their runs, each once: a signal posted to a
    /// run is skipped by later passes until its delivery commits (the row is then gone) or fails.
    func deliverSignals() {
        guard let queued = try? journal.queuedSignals(), !queued.isEmpty else { return }
        let present = Set(queued.map(\.id))
        for signal in queued {
            guard let driver = drivers.withLock({ drivers in drivers.values.first { $0.ref.key == signal.runKey } }),
                signalsInFlight.withLock({ inFlight in
                    inFlight.formIntersection(present)  // delivered signals have left the queue
                    return inFlight.insert(signal.id).inserted
                })
            else { continue }
            let event = HistoryEvent(index: 0, kind: .signalReceived, time: Date(), name: signal.name, data: signal.data)
            driver.post(.signal(event, queued: signal.id) { [self] result in
                if case .failure = result { _ = signalsInFlight.withLock { $0.remove(signal.id) } }
            })
        }
    }
}
