import DurableJournal
import Logging
import PostgresNIO

/// The journal's tables in their schema, created and versioned by the backend.
enum PostgresSchema {
    /// The format this build writes (the `meta` table's `format_version`). Bump it with a step in
    /// ``migrate(_:from:schema:logger:)``.
    static let formatVersion = 5

    static func create(_ s: String) -> [String] {
        [
            "CREATE SCHEMA IF NOT EXISTS \(s)",
            "CREATE TABLE \(s).meta (key text PRIMARY KEY, value text NOT NULL)",
            """
            CREATE TABLE \(s).runs (
                run_id           text PRIMARY KEY,
                seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                workflow_id      text NOT NULL,
                workflow_type    text NOT NULL,
                status           text NOT NULL,
                created_at       bigint NOT NULL,
                updated_at       bigint NOT NULL,
                closed_at        bigint,
                seed             bigint NOT NULL,
                error            text,
                lease_owner      text,
                lease_expires_at bigint,
                lease_epoch      bigint NOT NULL DEFAULT 0,
                next_idx         integer NOT NULL DEFAULT 0
            )
            """,
            "CREATE UNIQUE INDEX runs_open_workflow_id ON \(s).runs (workflow_id) WHERE status IN ('pending','running','held')",
            "CREATE INDEX runs_workflow_id ON \(s).runs (workflow_id, seq)",
            "CREATE INDEX runs_status ON \(s).runs (status, seq)",
            "CREATE INDEX runs_lease_owner ON \(s).runs (lease_owner) WHERE lease_owner IS NOT NULL",
        ] + takeoverIndexes(s) + [
            """
            CREATE TABLE \(s).events (
                run_id  text NOT NULL,
                idx     integer NOT NULL,
                kind    smallint NOT NULL,
                time    bigint NOT NULL,
                seq     integer NOT NULL DEFAULT 0,
                attempt integer NOT NULL DEFAULT 0,
                name    text,
                data    bytea,
                meta    bytea,
                PRIMARY KEY (run_id, idx)
            )
            """,
            """
            CREATE TABLE \(s).signals (
                id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                run_id  text NOT NULL,
                name    text NOT NULL,
                data    bytea,
                sent_at bigint NOT NULL
            )
            """,
            "CREATE INDEX signals_run ON \(s).signals (run_id, id)",
            """
            CREATE TABLE \(s).packed_histories (
                run_id        text PRIMARY KEY,
                events        integer NOT NULL,
                payload_bytes bigint NOT NULL,
                data          bytea NOT NULL
            )
            """,
            "CREATE TABLE \(s).workflow_types (name text PRIMARY KEY, registered_at bigint NOT NULL)",
        ] + auditTable(s) + wakeIndex(s) + outOfLineTables(s) + [
            "INSERT INTO \(s).meta (key, value) VALUES ('format_version', '\(formatVersion)')",
        ]
    }

    /// The indexes a takeover pass reads (format 2): running runs by lease expiry (a free lease counts as
    /// expired long ago) and by lease owner, so that finding the few runs to take over among very many
    /// running ones reads those few, not all of them.
    static func takeoverIndexes(_ s: String) -> [String] {
        [
            "CREATE INDEX IF NOT EXISTS runs_running_expiry ON \(s).runs ((coalesce(lease_expires_at, 0))) WHERE status = 'running'",
            "CREATE INDEX IF NOT EXISTS runs_running_owner ON \(s).runs (lease_owner) WHERE status = 'running'",
        ]
    }

    /// The due-time index (format 4): `wake_at` on `runs` is what a running run waits for once its last
    /// batch is committed (``JournalBatch/Wake``): NULL while work is in flight, else its earliest
    /// timer's due time in milliseconds (`9223372036854775807` without a timer). Due runs and the next
    /// due time are one index range (`runs_waiting`); the runs that need a driver (resumed at start,
    /// taken over) another (`runs_busy_expiry`), however many runs wait.
    static func wakeIndex(_ s: String) -> [String] {
        [
            "ALTER TABLE \(s).runs ADD COLUMN IF NOT EXISTS wake_at bigint",
            "CREATE INDEX IF NOT EXISTS runs_waiting ON \(s).runs (wake_at) WHERE status = 'running' AND wake_at IS NOT NULL",
            """
            CREATE INDEX IF NOT EXISTS runs_busy_expiry ON \(s).runs ((coalesce(lease_expires_at, 0)))
                WHERE status = 'running' AND wake_at IS NULL
            """,
        ]
    }

    /// The append-only audit log (format 3, see ``AuditEntry``): one row per entry, numbered from 1,
    /// with its chain hash (``AuditChain``). A trigger refuses every `UPDATE`, `DELETE` and `TRUNCATE`
    /// of the table, whoever sends it.
    static func auditTable(_ s: String) -> [String] {
        [
            """
            CREATE TABLE \(s).audit (
                seq     bigint PRIMARY KEY,
                time    bigint NOT NULL,
                actor   text NOT NULL,
                source  text NOT NULL,
                action  text NOT NULL,
                target  text NOT NULL,
                outcome text NOT NULL,
                detail  text,
                hash    text NOT NULL
            )
            """,
            "CREATE INDEX audit_by_target ON \(s).audit (target, seq)",
            """
            CREATE FUNCTION \(s).audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP;
            END
            $$
            """,
            """
            CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON \(s).audit
            FOR EACH STATEMENT EXECUTE FUNCTION \(s).audit_append_only()
            """,
        ]
    }

    /// The tables a journal has, for ``PostgresJournal/stats()`` and `check`.
    static let tables = ["runs", "events", "signals", "packed_histories", "workflow_types", "audit", "meta", "blobs", "blob_refs"]

    /// The schema's format version, or `nil` when it holds no journal.
    static func version(_ connection: PostgresConnection, schema: String, logger: Logger) async throws -> Int? {
        // A scan of the catalog with the statement's snapshot (not to_regclass, whose cache may not
        // have seen a table another session created while this one waited for the lock).
        let exists = try await connection.query(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = \(schema) AND tablename = 'meta'", logger: logger
        ).collect()
        guard try exists.first?.decode(Int64.self) == 1 else { return nil }
        let rows = try await connection.query(
            "SELECT value FROM \(unescaped: schema).meta WHERE key = 'format_version'", logger: logger).collect()
        guard let text = try rows.first?.decode(String.self), let version = Int(text) else { return 0 }
        return version
    }

    /// Checks the schema's format, creates the tables of a new journal (when `mayCreate` allows), or
    /// upgrades an older format (whatever `mayCreate` says, as SQLite's journal does: a command that
    /// only reads still sees an older journal, not a missing one); refuses a newer one without
    /// changing anything. Several workers starting at once take turns (an advisory lock held by the
    /// transaction).
    static func prepare(
        _ connection: PostgresConnection, place: PostgresLocation, create mayCreate: Bool, location: String, logger: Logger
    ) async throws {
        let s = place.schema
        let found = try await version(connection, schema: s, logger: logger)
        if let found, found >= formatVersion {
            if found > formatVersion {
                throw JournalError(.newerFormat(path: location, found: found, supported: formatVersion))
            }
            return
        }
        guard mayCreate || found != nil else { throw JournalError(.missing(path: location)) }
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\("durable:" + s)))", logger: logger)
            switch try await version(connection, schema: s, logger: logger) {
            case nil:
                guard mayCreate else { throw JournalError(.missing(path: location)) }
                for statement in create(s) { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
            case let found? where found > formatVersion:
                throw JournalError(.newerFormat(path: location, found: found, supported: formatVersion))
            case let found?:
                try await migrate(connection, from: found, schema: s, location: location, logger: logger)
            }
            try await connection.query("COMMIT", logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// Brings an older format up to ``formatVersion`` step by step, in the caller's transaction (so an
    /// upgrade that fails leaves the older format as it was).
    /// - Format 1 → 2: the takeover indexes (``takeoverIndexes(_:)``). Building them locks the runs
    ///   table against writes while they are built (1.4 s for a million runs, measured here).
    /// - Format 2 → 3: the audit log (``auditTable(_:)``).
    /// - Format 3 → 4: the due-time index (``wakeIndex(_:)``); existing running runs get NULL (resumed by
    ///   the next worker that starts, as before).
    /// - Format 4 → 5: the tables of payloads stored out of line (``outOfLineTables(_:)``), empty.
    static func migrate(
        _ connection: PostgresConnection, from version: Int, schema: String, location: String, logger: Logger
    ) async throws {
        guard version >= 1 else {
            throw JournalError(.storage(reason: "\(location): journal format \(version) is unknown (expected 1 to \(formatVersion))"))
        }
        // Each format's statements, applied in order to a schema older than it.
        let steps = [(2, takeoverIndexes(schema)), (3, auditTable(schema)), (4, wakeIndex(schema)), (5, outOfLineTables(schema))]
        for (format, statements) in steps where version < format {
            for statement in statements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
        }
        try await connection.query(
            "UPDATE \(unescaped: schema).meta SET value = \(String(formatVersion)) WHERE key = 'format_version'", logger: logger)
    }
}
