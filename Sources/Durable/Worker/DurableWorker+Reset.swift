import Foundation
import DurableJournal

/// What ``Engine/reset(_:toEvent:reason:)`` did.
public struct ResetReport: Sendable, Equatable {
    /// The run reset (terminated first if it was open).
    public var sourceRunID: String
    /// The new run, driven by whichever worker takes it.
    public var newRunID: String
    public var workflowID: String
    /// Events copied from the source run (its history before the reset point).
    public var eventsKept: Int
    /// Signals and child outcomes recorded after the reset point, queued again for the new run.
    public var requeued: Int
}

extension DurableWorker {
    /// Starts a new run of a run's workflow ID that replays the source's history up to, not
    /// including, event `index`, and continues from there with the current code: for recovering
    /// runs that a bad deployment sent down a wrong path.
    ///
    /// `index` must be an activation boundary: the index of an event that starts an activation (an
    /// activity's result, a timer firing, a signal, a child's outcome), so that every decision kept
    /// is kept with the input that caused it. Signals and child outcomes recorded after the reset
    /// point are queued again for the new run; activities whose results are cut off run again (as
    /// attempts after a `WorkerLost` record).
    ///
    /// An open source is terminated. When no live worker drives it, its end and the new run (with its
    /// queued signals) are one transaction (``Journal/replaceRun(_:with:events:signals:)``): a crash
    /// leaves both or neither. When a live worker drives it, that worker records the end first and the
    /// new run follows; cut off in between, the source is left terminated, and the same reset again
    /// (of the closed run) finishes it.
    /// - Throws: ``DurableError`` `badResetPoint` for an index that is not a boundary (naming the
    ///   nearest ones); ``JournalError`` for an unknown run.
    @discardableResult
    public func reset(_ id: String, toEvent index: Int, reason: String = "reset") async throws -> ResetReport {
        guard let source = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        let events = try await journal.history(source, from: 0)
        let boundaries = events.resetPoints.map(\.index)
        guard boundaries.contains(index) else {
            let below = boundaries.last { $0 < index }.map(String.init) ?? "none"
            let above = boundaries.first { $0 > index }.map(String.init) ?? "none"
            throw DurableError(.badResetPoint(
                runID: source.runID, index: index,
                reason: boundaries.isEmpty
                    ? "the run has no activation to reset to (only its start)"
                    : "it is not the start of an activation (an activity result, timer, signal or child outcome); "
                        + "the nearest ones are \(below) and \(above)"))
        }
        let newRunID = RunRecord.newRunID()
        let kept = Array(events.prefix(index))
        var requeued: [QueuedSignal] = []
        for event in events.dropFirst(index) {
            let name: String
            switch event.kind {
            case .signalReceived: name = event.name ?? ""
            case .childClosed: name = SystemSignal.child
            default: continue
            }
            requeued.append(QueuedSignal(id: 0, runID: newRunID, name: name, data: event.data, sentAt: event.time))
        }
        let now = clock.now()
        // Without a lease: the next worker that looks takes it over.
        let newRun = RunRecord(
            runID: newRunID, workflowID: source.workflowID, workflowType: source.workflowType, status: .running,
            createdAt: now, updatedAt: now, closedAt: nil, seed: source.seed, error: nil)
        var replaced = false
        if source.status.isOpen && leaseIsFree(source) && !drives(source.runID) {
            // No worker drives it: end it and record the new run in one transaction.
            let termination = RunTermination(
                runID: source.runID, reason: "\(reason): reset to event \(index) as run \(newRunID)",
                expected: RunLease(of: source), notice: try await client.terminationNotice(source, reason: reason))
            replaced = try await journal.replaceRun(termination, with: newRun, events: kept, signals: requeued)
        }
        if !replaced {
            if try await journal.findRun(source.runID)?.status.isOpen == true {
                // A worker drives it: its driver records the end, then the new run is recorded. (A reset
                // cut off in between leaves the source terminated; the same reset again finishes it.)
                try await client.terminate(
                    source.runID, reason: "\(reason): reset to event \(index); the new run is recorded once this one has ended")
                let deadline = ContinuousClock.now + .seconds(30)
                while try await journal.findRun(source.runID)?.status.isOpen == true {
                    guard ContinuousClock.now < deadline else {
                        throw DurableError(.badResetPoint(
                            runID: source.runID, index: index, reason: "the run did not end within 30 s of its termination"))
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            try await journal.importRun(newRun, events: kept, signals: requeued)
        }
        return ResetReport(
            sourceRunID: source.runID, newRunID: newRunID, workflowID: source.workflowID, eventsKept: kept.count,
            requeued: requeued.count)
    }
}
