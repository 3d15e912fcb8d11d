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
    /// is kept with the input that caused it. The source is terminated first if it is open. Signals
    /// and child outcomes recorded after the reset point are queued again for the new run; activities
    /// whose results are cut off run again (as attempts after a `WorkerLost` record).
    /// - Throws: ``DurableError`` `badResetPoint` for an index that is not a boundary (naming the
    ///   nearest ones); ``JournalError`` for an unknown run.
    @discardableResult
    public func reset(_ id: String, toEvent index: Int, reason: String = "reset") async throws -> ResetReport {
        guard let source = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        let events = try await journal.history(source, from: 0)
        let boundaries = events.filter { $0.kind.isInput && $0.kind != .workflowStarted }.map(\.index)
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
        let newRunID = UUID().uuidString.lowercased()
        if source.status.isOpen {
            try await client.terminate(source.runID, reason: "\(reason): reset to event \(index) as run \(newRunID)")
            let deadline = ContinuousClock.now + .seconds(30)
            while try await journal.findRun(source.runID)?.status.isOpen == true {
                guard ContinuousClock.now < deadline else {
                    throw DurableError(.badResetPoint(
                        runID: source.runID, index: index, reason: "the run did not end within 30 s of its termination"))
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let kept = Array(events.prefix(index))
        let batch = JournalBatch(
            run: RunRef(runID: newRunID),
            newRun: .init(workflowID: source.workflowID, workflowType: source.workflowType, seed: source.seed,
                          status: .running, createdAt: clock.now()),
            events: kept.map(EventDraft.init))
        try await journal.append(batch)
        var requeued = 0
        for event in events.dropFirst(index) {
            switch event.kind {
            case .signalReceived:
                try await journal.sendSignal(toRun: newRunID, name: event.name ?? "", data: event.data)
            case .childClosed:
                try await journal.sendSignal(toRun: newRunID, name: SystemSignal.child, data: event.data)
            default: continue
            }
            requeued += 1
        }
        // Written with this engine's lease (a run written as running is leased to its writer): give it
        // up so that a worker takes the run over now.
        try await journal.releaseLease(runID: newRunID)
        return ResetReport(
            sourceRunID: source.runID, newRunID: newRunID, workflowID: source.workflowID, eventsKept: kept.count,
            requeued: requeued)
    }
}
