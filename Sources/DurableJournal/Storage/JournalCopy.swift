/// What ``copyJournal(from:to:progress:)`` did.
package struct JournalCopyReport: Sendable, Equatable {
    /// Runs written to the destination.
    package var copiedRuns = 0
    package var copiedEvents = 0
    package var copiedSignals = 0
    /// Runs the destination held already (same run ID), left as they were: a copy can be run again
    /// after an interruption.
    package var skippedRuns = 0

    package init() {}
}

/// Copies every run of `source` (its record, whole history and queued signals) and the registered
/// workflow types into `destination`, run by run, oldest first, each run in one transaction of the
/// destination. Histories arrive exactly as `history export` shows them (packed ones unpacked).
///
/// Refuses to start while a worker holds a lease in `source`: a run still being driven would go on
/// there and diverge from its copy.
/// - Parameter progress: called with (runs done, runs in all) after each run.
/// - Throws: ``JournalError`` naming the run whose history cannot be read (nothing more is copied).
package func copyJournal(
    from source: any Journal, to destination: any Journal, progress: @Sendable (Int, Int) -> Void = { _, _ in }
) async throws -> JournalCopyReport {
    let leased = try await source.leaseOwners()
    if !leased.isEmpty {
        let runs = leased.values.reduce(0, +)
        throw JournalError(.storage(reason: """
            \(source.location): \(leased.count) worker(s) drive \(runs) run(s) (\(leased.keys.sorted().joined(separator: ", "))); \
            stop them before copying
            """))
    }
    try await destination.registerWorkflowTypes(try await source.knownWorkflowTypes())
    let runs = try await source.runs(RunFilter(oldestFirst: true))
    var signals: [String: [QueuedSignal]] = [:]
    for signal in try await source.queuedSignals() { signals[signal.runID, default: []].append(signal) }
    var report = JournalCopyReport()
    for (done, run) in runs.enumerated() {
        if try await destination.findRun(run.runID)?.runID == run.runID {
            report.skippedRuns += 1
        } else {
            let events = try await source.history(run, from: 0)
            let queued = signals[run.runID] ?? []
            var copied = run
            copied.leaseOwner = nil
            copied.leaseExpiresAt = nil
            try await destination.importRun(copied, events: events, signals: queued)
            report.copiedRuns += 1
            report.copiedEvents += events.count
            report.copiedSignals += queued.count
        }
        progress(done + 1, runs.count)
    }
    return report
}
