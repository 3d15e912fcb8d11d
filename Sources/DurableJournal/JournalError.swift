/// An error from the journal, with the context a person needs to act on it.
///
/// Match on ``code`` (a struct over a private enum, so that new codes do not break callers):
///
/// ```swift
/// do {
///     try await client.signal("claim-1042", name: "review", input: decision)
/// } catch let error as JournalError where error.code == .runNotFound {
///     // no such run
/// }
/// ```
///
/// The description names what failed and where; it gives no advice about command-line options (the
/// CLI adds that).
public struct JournalError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of journal error this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case missing, notADatabase, notAJournal, newerFormat, corruptEvent, corruptRun, workflowIDInUse,
                runNotFound, runClosed, conflict, storage, badHistoryFile, filesChanged, missingPayloadKey,
                wrongPayloadKey, badPayloadKeys, damaged, invalidSetting
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// No journal at the path given (a read-only command never creates one).
        public static let missing = Code(.missing)
        /// The file is not a SQLite database that can be read.
        public static let notADatabase = Code(.notADatabase)
        /// The file or database holds something other than a Durable journal.
        public static let notAJournal = Code(.notAJournal)
        /// The journal was written by a newer Durable; it was not modified.
        public static let newerFormat = Code(.newerFormat)
        /// An event cannot be decoded.
        public static let corruptEvent = Code(.corruptEvent)
        /// A run's record or history is inconsistent.
        public static let corruptRun = Code(.corruptRun)
        /// An open run already has the workflow ID.
        public static let workflowIDInUse = Code(.workflowIDInUse)
        /// No run has the run ID or workflow ID.
        public static let runNotFound = Code(.runNotFound)
        /// The operation needs an open run and the run has ended.
        public static let runClosed = Code(.runClosed)
        /// Another worker or request changed the run first (a lost lease, a concurrent change).
        public static let conflict = Code(.conflict)
        /// The storage failed: a disk, a connection, a server.
        public static let storage = Code(.storage)
        /// A history file that cannot be read or replayed.
        public static let badHistoryFile = Code(.badHistoryFile)
        /// A SQLite journal's files are not the ones this process opened (its `-wal` or `-shm` file
        /// deleted or replaced, the file replaced), or the file has a second name (a hard link): a
        /// worker stops rather than write where commits could be lost.
        public static let filesChanged = Code(.filesChanged)
        /// A payload is encrypted with a key this process does not hold (its ID is in the message).
        public static let missingPayloadKey = Code(.missingPayloadKey)
        /// A payload does not decrypt with the key of its ID: another key under the same ID, or damage.
        public static let wrongPayloadKey = Code(.wrongPayloadKey)
        /// The payload keys given (a key file, `DURABLE_PAYLOAD_KEY`, code) cannot be used.
        public static let badPayloadKeys = Code(.badPayloadKeys)
        /// A stored row no longer matches its checksum: the storage changed it (a disk fault, a
        /// tool writing to the file), not the workflow's code.
        public static let damaged = Code(.damaged)
        /// A journal setting (``JournalConfiguration``, or the environment variable standing for it) is
        /// out of its range.
        public static let invalidSetting = Code(.invalidSetting)

        public var description: String { base.rawValue }
    }

    package enum Detail: Sendable, Equatable {
        case missing(path: String)
        case notADatabase(path: String, reason: String)
        case notAJournal(path: String)
        /// A file of zero bytes where an existing journal was expected.
        case emptyFile(path: String)
        /// The path names something other than a regular file (`what`: "a directory", ...).
        case notAFile(path: String, what: String)
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
        case filesChanged(path: String, reason: String)
        /// `what` names the payload: "run R, event 3 (ActivityCompleted)", "queued signal 7".
        case missingPayloadKey(what: String, keyID: String, runID: String?)
        case wrongPayloadKey(what: String, keyID: String, runID: String?)
        /// `source` names where the keys came from: a file, an environment variable.
        case badPayloadKeys(source: String, reason: String)
        /// `name` (a configuration field or an environment variable) is `value`, outside `expected`.
        case invalidSetting(name: String, value: String, expected: String)
        /// A stored row whose checksum does not match: `row` says which ("event 4", "queued signal
        /// 12 'review'", "run record").
        case damaged(runID: String, row: String, reason: String)
        /// An audit log entry that cannot be read or does not match its row checksum.
        case damagedAudit(seq: String, reason: String)
    }

    package let detail: Detail

    package init(_ detail: Detail) { self.detail = detail }

    /// What kind of error this is.
    public var code: Code {
        switch detail {
        case .missing: .missing
        case .notADatabase: .notADatabase
        case .notAJournal, .emptyFile, .notAFile: .notAJournal
        case .newerFormat: .newerFormat
        case .corruptEvent: .corruptEvent
        case .corruptRun: .corruptRun
        case .workflowIDInUse: .workflowIDInUse
        case .runNotFound: .runNotFound
        case .runClosed: .runClosed
        case .conflict: .conflict
        case .storage: .storage
        case .badHistoryFile: .badHistoryFile
        case .filesChanged: .filesChanged
        case .missingPayloadKey: .missingPayloadKey
        case .wrongPayloadKey: .wrongPayloadKey
        case .badPayloadKeys: .badPayloadKeys
        case .damaged, .damagedAudit: .damaged
        case .invalidSetting: .invalidSetting
        }
    }

    /// The run the error is about, when it is about one.
    public var runID: String? {
        switch detail {
        case .corruptEvent(let runID, _, _), .corruptRun(let runID, _), .workflowIDInUse(_, let runID),
            .runClosed(let runID, _, _), .conflict(let runID, _), .damaged(let runID, _, _):
            runID
        case .missingPayloadKey(_, _, let runID), .wrongPayloadKey(_, _, let runID):
            runID
        default: nil
        }
    }

    /// The run ID of an open run that already uses the workflow ID, for ``Code/workflowIDInUse``.
    package var existingRunID: String? {
        if case .workflowIDInUse(_, let runID) = detail { return runID }
        return nil
    }

    /// The workflow ID and the open run using it, for ``Code/workflowIDInUse``.
    package var workflowIDInUse: (workflowID: String, runID: String)? {
        if case .workflowIDInUse(let workflowID, let runID) = detail { return (workflowID, runID) }
        return nil
    }

    /// The operation needs an open run and the run has ended.
    public var isRunClosed: Bool { code == .runClosed }

    public var isNewerFormat: Bool { code == .newerFormat }

    /// The journal holds something that cannot be decoded or is inconsistent.
    public var isCorruption: Bool {
        switch detail {
        case .corruptEvent, .corruptRun, .notADatabase, .damaged, .damagedAudit: true
        default: false
        }
    }

    /// A worker lost a run to another worker (it stalled past its lease): `holder` names who has it.
    package static func leaseLost(runID: String, to holder: String) -> JournalError {
        JournalError(.conflict(runID: runID, reason: "run is driven by \(holder) now (this worker's lease on it ended)"))
    }

    public var description: String {
        switch detail {
        case .missing(let path):
            "no journal at \(path)"
        case .notADatabase(let path, let reason):
            "\(path) is not a readable SQLite database: \(reason)"
        case .notAJournal(let path):
            "\(path) is a SQLite database but not a Durable journal"
        case .emptyFile(let path):
            "\(path) is empty (0 bytes), not a journal"
        case .notAFile(let path, let what):
            "\(path) is \(what), not a journal file"
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
        case .filesChanged(_, let reason):
            "journal files changed: \(reason)"
        case .missingPayloadKey(let what, let keyID, _):
            "\(what): payload is encrypted with key '\(keyID)', which is not among this process's payload keys"
        case .wrongPayloadKey(let what, let keyID, _):
            "\(what): cannot decrypt the payload with key '\(keyID)': wrong key or damaged"
        case .badPayloadKeys(let source, let reason):
            "payload keys from \(source): \(reason)"
        case .damaged(let runID, let row, let reason):
            "damaged journal: run \(runID), \(row): \(reason) (the stored bytes changed after they were written: "
                + "a disk or storage fault, not the workflow's code)"
        case .damagedAudit(let seq, let reason):
            "damaged journal: audit entry \(seq): \(reason)"
        case .invalidSetting(let name, let value, let expected):
            "\(name) is '\(value.prefix(40))': expected \(expected)"
        }
    }
}
