/// An error from the journal, with the context a person needs to act on it.
///
/// A struct around a private code, so that new cases do not break callers.
public struct JournalError: Error, CustomStringConvertible, Sendable, Equatable {
    package enum Code: Sendable, Equatable {
        case missing(path: String)
        case notADatabase(path: String, reason: String)
        case notAJournal(path: String)
        case newerFormat(path: String, found: Int, supported: Int)
        case corruptEvent(runID: String, index: Int, reason: String)
        case corruptRun(runID: String, reason: String)
        case workflowIDInUse(workflowID: String, runID: String)
        case runNotFound(String)
        case runClosed(runID: String, status: String, operation: String)
        case conflict(runID: String, reason: String)
        case storage(reason: String)
        /// A history file (`durable history export`) that cannot be read or replayed.
        case badHistoryFile(path: String, reason: String)
    }

    package let code: Code

    package init(_ code: Code) { self.code = code }

    /// The run ID of an open run that already uses the workflow ID, for ``Code/workflowIDInUse``.
    package var existingRunID: String? {
        if case .workflowIDInUse(_, let runID) = code { return runID }
        return nil
    }

    /// The workflow ID and the open run using it, for ``Code/workflowIDInUse``.
    package var workflowIDInUse: (workflowID: String, runID: String)? {
        if case .workflowIDInUse(let workflowID, let runID) = code { return (workflowID, runID) }
        return nil
    }

    /// The operation needs an open run and the run has ended.
    public var isRunClosed: Bool {
        if case .runClosed = code { return true }
        return false
    }

    public var isNewerFormat: Bool {
        if case .newerFormat = code { return true }
        return false
    }

    public var isCorruption: Bool {
        switch code {
        case .corruptEvent, .corruptRun, .notADatabase: true
        default: false
        }
    }

    /// A worker lost a run to another worker (it stalled past its lease): `holder` names who has it.
    package static func leaseLost(runID: String, to holder: String) -> JournalError {
        JournalError(.conflict(runID: runID, reason: "run is driven by \(holder) now (this worker's lease on it ended)"))
    }

    public var description: String {
        switch code {
        case .missing(let path):
            "no journal at \(path) (pass --journal PATH or set DURABLE_JOURNAL)"
        case .notADatabase(let path, let reason):
            "\(path) is not a readable SQLite database: \(reason)"
        case .notAJournal(let path):
            "\(path) is a SQLite database but not a Durable journal"
        case .newerFormat(let path, let found, let supported):
            "journal \(path) uses format version \(found), newer than this build of Durable supports "
                + "(\(supported)); upgrade Durable to open it (the journal was not modified)"
        case .corruptEvent(let runID, let index, let reason):
            "corrupt journal: run \(runID), event \(index): \(reason)"
        case .corruptRun(let runID, let reason):
            "corrupt journal: run \(runID): \(reason)"
        case .runClosed(let runID, let status, let operation):
            "run \(runID) is \(status); \(operation) go to open runs only"
        case .workflowIDInUse(let workflowID, let runID):
            "workflow ID \(workflowID) is in use by open run \(runID)"
        case .runNotFound(let id):
            "no run with run ID or workflow ID '\(id)'"
        case .conflict(let runID, let reason):
            "run \(runID): \(reason)"
        case .storage(let reason):
            "journal storage error: \(reason)"
        case .badHistoryFile(let path, let reason):
            "history file \(path) \(reason)"
        }
    }
}
