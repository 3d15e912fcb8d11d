public import Durable
public import Foundation

/// Replays a history file (written by `durable history export`) through the current code of
/// workflow `W`, and fails unless the code makes every recorded decision: check a code change
/// against real histories before it reaches runs in flight.
///
/// ```swift
/// @Test func claimIntakeStillReplaysProductionHistories() throws {
///     try assertReplays(history: "Tests/Histories/claim-1042.json", workflow: ClaimIntake.self)
/// }
/// ```
///
/// - Returns: the replay's report (its decisions, for further checks).
/// - Throws: ``ReplayMismatch`` naming the file and the first event where the code and the history
///   part; `JournalError` `badHistoryFile` when the file cannot be read, is from a newer format, or is
///   a history of another workflow type.
@discardableResult
public func assertReplays<W: Workflow>(history path: String, workflow: W.Type) throws -> ReplayReport {
    let report = try DurableWorker.replay(history: try HistoryExport.read(from: path), path: path, as: W.self)
    if let mismatch = report.mismatch { throw ReplayMismatch(path: path, report: report, mismatch: mismatch) }
    return report
}

/// ``assertReplays(history:workflow:)`` with a file URL (such as `Bundle.module.url(forResource:…)`).
@discardableResult
public func assertReplays<W: Workflow>(history url: URL, workflow: W.Type) throws -> ReplayReport {
    try assertReplays(history: url.path, workflow: W.self)
}

/// A history that the current code does not replay.
public struct ReplayMismatch: Error, CustomStringConvertible {
    public var path: String
    public var report: ReplayReport
    /// The first mismatch: the event index, what history recorded and what the code did.
    public var mismatch: DurableError

    public var description: String {
        "history file \(path) (run \(report.runID), \(report.workflowType)) does not replay through the current code: \(mismatch)"
    }
}
