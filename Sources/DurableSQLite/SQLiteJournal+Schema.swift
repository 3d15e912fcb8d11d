import DurableJournal
import GRDB

extension SQLiteJournal {
    /// The journal format this build writes. Bump it with a migration in ``migrate(_:from:)``.
    package static let formatVersion = 11
    /// `PRAGMA application_id` of a Durable journal: "DurJ".
    package static let applicationID: Int32 = 0x4475_724A

    static let schemaV1 = """
        CREATE TABLE runs (
            id            INTEGER PRIMARY KEY,
            run_id        TEXT NOT NULL UNIQUE,
            workflow_id   TEXT NOT NULL,
            workflow_type TEXT NOT NULL,
            status        TEXT NOT NULL,
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL,
            closed_at     INTEGER,
            seed          INTEGER NOT NULL,
            error         TEXT
        );
        CREATE UNIQUE INDEX runs_open_workflow_id ON runs(workflow_id)
            WHERE status IN ('pending','running','held');
        CREATE INDEX runs_workflow_id ON runs(workflow_id, id);
        CREATE INDEX runs_status ON runs(status, id);
        CREATE TABLE events (
            run     INTEGER NOT NULL,
            idx     INTEGER NOT NULL,
            kind    INTEGER NOT NULL,
            time    INTEGER NOT NULL,
            seq     INTEGER NOT NULL DEFAULT 0,
            attempt INTEGER NOT NULL DEFAULT 0,
            name    TEXT,
            data    BLOB,
            meta    BLOB,
            PRIMARY KEY (run, idx)
        ) WITHOUT ROWID;
        CREATE TABLE workflow_types (
            name          TEXT PRIMARY KEY,
            registered_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        """

    /// Signals sent to open runs and not yet delivered (format 4). Delivery deletes the row in the
    /// transaction that records the run's `SignalReceived` event, so a signal is delivered once.
    static let signalsTable = """
        CREATE TABLE signals (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            run     INTEGER NOT NULL,
            name    TEXT NOT NULL,
            data    BLOB,
            sent_at INTEGER NOT NULL
        );
        CREATE INDEX signals_run ON signals(run, id);
        """

    /// Who drives each open run (format 6): the worker holding its lease, and when the lease ends
    /// unless renewed. Another worker takes a run over once its lease has expired or its holder's
    /// process is gone.
    static let leaseColumns = """
        ALTER TABLE runs ADD COLUMN lease_owner TEXT;
        ALTER TABLE runs ADD COLUMN lease_expires_at INTEGER;
        """

    /// Closed runs' histories packed into one compressed block each by `journal compact` (format 7;
    /// see ``HistoryPack``). A packed run has no rows in `events`.
    static let packedHistoriesTable = """
        CREATE TABLE packed_histories (
            run           INTEGER PRIMARY KEY,
            events        INTEGER NOT NULL,
            payload_bytes INTEGER NOT NULL,
            data          BLOB NOT NULL
        );
        """

    /// Row checksums (format 8, see ``RowChecksum``): a `sum` column on `events`, `signals` and `runs`.
    static let sumColumns = """
        ALTER TABLE events ADD COLUMN sum INTEGER;
        ALTER TABLE signals ADD COLUMN sum INTEGER;
        ALTER TABLE runs ADD COLUMN sum INTEGER;
        """

    /// The append-only audit log (format 9, see ``AuditEntry``): one row per entry, numbered from 1,
    /// each with its chain hash (``AuditChain``) and row checksum. The triggers refuse every `UPDATE`
    /// and `DELETE` (a `REPLACE` could delete only with recursive triggers on, which Durable never
    /// turns on, and Durable never writes one here).
    static let auditTable = """
        CREATE TABLE audit (
            seq     INTEGER PRIMARY KEY,
            time    INTEGER NOT NULL,
            actor   TEXT NOT NULL,
            source  TEXT NOT NULL,
            action  TEXT NOT NULL,
            target  TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail  TEXT,
            hash    TEXT NOT NULL,
            sum     INTEGER NOT NULL
        );
        CREATE INDEX audit_by_target ON audit (target, seq);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: its entries cannot be changed'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: its entries cannot be deleted'); END;
        """

    /// The due-time index (format 10): `wake_at` on `runs` is what a running run waits for once its
    /// last batch is committed (``JournalBatch/Wake``): NULL while work is in flight, else the
    /// earliest timer's due time in milliseconds (`9223372036854775807` when it has no timer). A worker
    /// finds due runs and the next due time with one index range; the runs that need a driver at start
    /// (and takeover candidates) with another, however many runs wait. The partial index on
    /// `lease_owner` serves lease renewals and the takeover pass's list of owners.
    static let wakeColumn = "ALTER TABLE runs ADD COLUMN wake_at INTEGER"
    static let wakeIndexes = """
        CREATE INDEX IF NOT EXISTS runs_waiting ON runs(wake_at) WHERE status = 'running' AND wake_at IS NOT NULL;
        CREATE INDEX IF NOT EXISTS runs_busy ON runs(id) WHERE status = 'running' AND wake_at IS NULL;
        CREATE INDEX IF NOT EXISTS runs_leased ON runs(lease_owner) WHERE lease_owner IS NOT NULL;
        """

    /// Adds the due-time index (``wakeColumn``, ``wakeIndexes``) unless the runs table has it already.
    static func addWakeIndex(_ db: Database) throws {
        let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(runs)").map { $0["name"] as String? }
        if !columns.contains("wake_at") { try db.execute(sql: wakeColumn) }
        try db.execute(sql: wakeIndexes)
    }

    /// Creates the schema in an empty database (when `create` allows), checks the format of an
    /// existing one, and migrates an older format. Refuses databases that are not journals and
    /// journals from a newer format.
    static func prepareSchema(_ db: Database, path: String, create: Bool) throws {
        let appID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        let tableCount = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") ?? 0
        if appID == 0 && version == 0 && tableCount == 0 {
            guard create else { throw JournalError(.notAJournal(path: path)) }
            try db.execute(sql: schemaV1)
            try db.execute(sql: signalsTable)
            try db.execute(sql: leaseColumns)
            try db.execute(sql: packedHistoriesTable)
            try db.execute(sql: sumColumns)
            try db.execute(sql: auditTable)
            try addWakeIndex(db)
            try db.execute(sql: outOfLineTables)
            try db.execute(sql: "PRAGMA application_id = \(applicationID)")
            try db.execute(sql: "PRAGMA user_version = \(formatVersion)")
            return
        }
        guard appID == applicationID else { throw JournalError(.notAJournal(path: path)) }
        if version > formatVersion {
            throw JournalError(.newerFormat(path: path, found: version, supported: formatVersion))
        }
        if version < formatVersion {
            try migrate(db, from: version)
        }
    }

    /// Checks an existing file through a read-only connection before anything opens it for writing,
    /// so that a journal from a newer format, or a database that is not a journal, is refused without
    /// a single byte changed (opening it for writing would switch it to WAL mode). An empty database
    /// passes only when `create` allows making it a journal.
    static func preflight(_ path: String, create: Bool) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(30)  // as the journal's own connections: another process may be writing
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        let (appID, version, tables) = try queue.read { db in
            (try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0, try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") ?? 0)
        }
        if appID == applicationID && version > formatVersion {
            throw JournalError(.newerFormat(path: path, found: version, supported: formatVersion))
        }
        if appID != applicationID && !(create && appID == 0 && version == 0 && tables == 0) {
            throw JournalError(.notAJournal(path: path))
        }
    }

    /// Brings an older journal up to ``formatVersion``, step by step, in the caller's transaction.
    ///
    /// - Format 2 adds event kinds (activity cancellation and heartbeats) and attempt details in
    ///   `meta`; format 3 adds timer events; format 4 adds signal events, patch markers, workflow
    ///   cancellation and termination (events and run statuses) and the `signals` table; format 5 adds
    ///   child workflow events; format 6 adds the lease columns of `runs`; format 7 the
    ///   `packed_histories` table; format 8 the row checksums (``RowChecksum``), computed here for
    ///   every existing row (one pass over `runs`, `events` and `signals`; payloads are not read
    ///   beyond their frame headers); format 9 the `audit` table and its triggers; format 10 the
    ///   due-time index (``addWakeIndex(_:)``): existing running runs get NULL (resumed by the next worker
    ///   that starts, as before, and indexed as they are driven again); format 11 the tables of payloads
    ///   stored out of line (``outOfLineTables``), empty.
    ///   Besides those, an upgrade only records the new version, so that an older build refuses the
    ///   file instead of misreading the new events.
    static func migrate(_ db: Database, from version: Int) throws {
        guard version >= 1 else {
            throw JournalError(.storage(reason: "journal format \(version) is unknown (expected 1 to \(formatVersion))"))
        }
        if version < 4 { try db.execute(sql: signalsTable) }
        if version < 6 { try db.execute(sql: leaseColumns) }
        if version < 7 { try db.execute(sql: packedHistoriesTable) }
        if version < 8 {
            try db.execute(sql: sumColumns)
            try db.execute(sql: """
                UPDATE events SET sum = durable_event_sum(run, idx, kind, time, seq, attempt, name, data, meta);
                UPDATE signals SET sum = durable_signal_sum(run, name, sent_at, data);
                UPDATE runs SET sum = durable_run_sum(run_id, workflow_id, workflow_type, created_at, seed, error);
                """)
        }
        if version < 9 { try db.execute(sql: auditTable) }
        if version < 10 { try addWakeIndex(db) }
        if version < 11 { try db.execute(sql: outOfLineTables) }
        try db.execute(sql: "PRAGMA user_version = \(formatVersion)")
    }
}
