public import Foundation

/// Which runs to list or count.
public struct RunFilter: Sendable, Equatable {
    public var statuses: [RunStatus]?
    public var workflowType: String?
    public var workflowIDPrefix: String?
    /// Runs created at or after this time.
    public var startedAfter: Date?
    /// Runs created before this time.
    public var startedBefore: Date?
    public var oldestFirst: Bool
    public var limit: Int?
    /// Only runs after this run in the order asked for (a page's last run: keyset paging).
    public var afterRunID: String?

    public init(
        statuses: [RunStatus]? = nil, workflowType: String? = nil, workflowIDPrefix: String? = nil,
        startedAfter: Date? = nil, startedBefore: Date? = nil, oldestFirst: Bool = false, limit: Int? = nil,
        afterRunID: String? = nil
    ) {
        self.afterRunID = afterRunID
        self.statuses = statuses
        self.workflowType = workflowType
        self.workflowIDPrefix = workflowIDPrefix
        self.startedAfter = startedAfter
        self.startedBefore = startedBefore
        self.oldestFirst = oldestFirst
        self.limit = limit
    }
}

/// What `durable journal stats` reports.
public struct JournalStats: Sendable {
    public var formatVersion: Int
    /// Bytes the journal occupies: the SQLite file; PostgreSQL's tables and indexes of the journal.
    public var fileBytes: Int64
    /// Bytes of SQLite's write-ahead log (0 for PostgreSQL, whose WAL is the server's).
    public var walBytes: Int64
    public var runsByStatus: [RunStatus: Int]
    public var events: Int
    /// Payload bytes as stored (LZ4 frames with their headers) and as the workflows wrote them.
    public var storedPayloadBytes: Int
    public var rawPayloadBytes: Int
    public var queuedSignals: Int
    /// Closed runs whose histories `journal compact` packed into one block each.
    public var packedRuns: Int
    /// Payloads stored out of line (each stored once, however many events refer to it), and their
    /// stored bytes (counted in ``storedPayloadBytes`` too).
    public var outOfLinePayloads = 0
    public var outOfLineBytes = 0

    public var runs: Int { runsByStatus.values.reduce(0, +) }

    package init(
        formatVersion: Int, fileBytes: Int64, walBytes: Int64, runsByStatus: [RunStatus: Int], events: Int,
        storedPayloadBytes: Int, rawPayloadBytes: Int, queuedSignals: Int, packedRuns: Int
    ) {
        self.formatVersion = formatVersion
        self.fileBytes = fileBytes
        self.walBytes = walBytes
        self.runsByStatus = runsByStatus
        self.events = events
        self.storedPayloadBytes = storedPayloadBytes
        self.rawPayloadBytes = rawPayloadBytes
        self.queuedSignals = queuedSignals
        self.packedRuns = packedRuns
    }
}

/// What `durable journal compact` did.
public struct CompactionReport: Sendable {
    public var packedRuns = 0
    /// Closed runs left unpacked because their history could not be read (`journal check` names them).
    public var skippedRuns = 0
    /// The file's size before and after, WAL included.
    public var bytesBefore: Int64
    public var bytesAfter: Int64 = 0

    package init(bytesBefore: Int64) { self.bytesBefore = bytesBefore }
}

/// What `durable journal check` found.
public struct JournalCheckReport: Sendable {
    public var formatVersion: Int
    /// The storage's own check: `["ok"]` when sound (SQLite: `PRAGMA integrity_check`; PostgreSQL:
    /// the schema's tables and version), else one line per problem.
    public var integrity: [String]
    public var runsChecked = 0
    public var eventsChecked = 0
    /// Entries of the audit log checked: their hash chain, numbering and (SQLite) row checksums.
    public var auditEntriesChecked = 0
    /// Payloads stored out of line checked against their SHA-256 addresses.
    public var outOfLinePayloadsChecked = 0
    /// Problems found in runs, events, signals and the audit log, each naming what and where.
    public var problems: [String] = []
    /// Encrypted payloads whose key this process does not hold, by key ID: only their frames'
    /// headers were checked (not a problem; check again with the keys to verify them).
    public var unverifiedPayloads: [String: Int] = [:]

    public var isHealthy: Bool { integrity == ["ok"] && problems.isEmpty }

    package init(formatVersion: Int, integrity: [String]) {
        self.formatVersion = formatVersion
        self.integrity = integrity
    }

    /// Counts a payload that could not be verified for want of key `keyID` (nothing when `nil`: it was).
    package mutating func countUnverified(keyID: String?) {
        if let keyID { unverifiedPayloads[keyID, default: 0] += 1 }
    }

    /// Counts the events' payloads left encrypted for want of their key.
    package mutating func countUnverified(_ events: [HistoryEvent]) {
        for event in events { countUnverified(keyID: event.encryptedData?.keyID) }
    }
}
