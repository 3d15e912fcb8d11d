/// What ``copyJournal(from:to:progress:)`` did.
package struct JournalCopyReport: Sendable, Equatable {
    /// Runs written to the destination.
    package var copiedRuns = 0
    package var copiedEvents = 0
    package var copiedSignals = 0
    /// Runs the destination held already (same run ID), left as they were: a copy can be run again
    /// after an interruption.
    package var skippedRuns = 0
    /// Audit entries appended to the destination's log.
    package var copiedAuditEntries = 0
    /// Why the source's audit entries (some of them) were not copied; `nil` when all are there.
    package var auditNotCopied: String?

    package init() {}
}

/// Copies the audit log, every run of `source` (its record, whole history and queued signals) and the
/// registered workflow types into `destination`: first the audit entries the destination does not
/// have (``copyAudit(from:to:)``), then the runs, one by one, oldest first, each run in one
/// transaction of the destination. Histories arrive exactly as `history export` shows them (packed
/// ones unpacked).
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
    var report = JournalCopyReport()
    (report.copiedAuditEntries, report.auditNotCopied) = try await copyAudit(from: source, to: destination)
    try await destination.registerWorkflowTypes(try await source.knownWorkflowTypes())
    let runs = try await source.runs(RunFilter(oldestFirst: true))
    var signals: [String: [QueuedSignal]] = [:]
    for signal in try await source.queuedSignals() { signals[signal.runID, default: []].append(signal) }
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

/// Appends to the destination's audit log the source's entries it does not have, as they are (same
/// numbers, times and hashes, so the copy verifies as the source does), a page of 1,000 per
/// transaction. The destination's log must be the source's first entries, or empty: a copy run
/// again after an interruption goes on where it stopped. Entries cannot be appended after entries
/// of the destination's own (their hashes chain from the source's): then none is copied, and the
/// second value says why.
/// - Returns: the entries copied, and why the source's other entries were not.
package func copyAudit(from source: any Journal, to destination: any Journal) async throws -> (Int, String?) {
    let page = 1_000
    // The entries both logs have: the same, one by one, from the first.
    var common: Int64 = 0
    var destinationGoesOn = false
    compare: while true {
        let mine = try await destination.auditEntries(after: common, limit: page, newestFirst: false)
        if mine.isEmpty { break }
        let theirs = try await source.auditEntries(after: common, limit: page, newestFirst: false)
        for (index, entry) in mine.enumerated() {
            guard index < theirs.count, theirs[index] == entry else {
                destinationGoesOn = true
                break compare
            }
            common = entry.seq
        }
    }
    if destinationGoesOn {
        guard try await !source.auditEntries(after: common, limit: 1, newestFirst: false).isEmpty else { return (0, nil) }
        return (0, """
            the audit log of \(destination.location) goes on after entry \(common) with entries the source does not have, \
            so the source's entries from \(common + 1) on cannot be appended (their hashes chain from the source's own); \
            they stay in \(source.location) (`durable audit list --after \(common) --json`)
            """)
    }
    var copied = 0
    while true {
        let entries = try await source.auditEntries(after: common, limit: page, newestFirst: false)
        guard let last = entries.last else { break }
        try await destination.importAudit(entries)
        copied += entries.count
        common = last.seq
    }
    return (copied, nil)
}
