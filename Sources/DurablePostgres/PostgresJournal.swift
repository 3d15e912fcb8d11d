package import DurableJournal
package import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The journal in a PostgreSQL database: for workers on several hosts.
///
/// Its tables live in one schema (`?schema=`, default `durable`), so that a database can hold several
/// journals. Appends go through a group-commit writer (``PostgresWriter``): every batch that arrives
/// while a transaction is in flight goes into the next one, each batch fenced in its own statement
/// (`UPDATE runs … WHERE lease_owner = me AND next_idx = first index`), so a worker that lost a run's
/// lease writes nothing to it. Other processes' commits wake the change feed through
/// `LISTEN`/`NOTIFY` on a dedicated connection, with a slow poll behind it.
package final class PostgresJournal: Journal {
    package let location: String
    package let lease: LeaseSettings?
    /// The payload keys, and what reads do without one.
    let payloads: JournalPayloads
    let place: PostgresLocation
    let client: PostgresClient
    private let clientTask: Task<Void, Never>
    let writer: PostgresWriter
    let logger: Logger
    private let broadcaster: ChangeBroadcaster
    private let watcher: PostgresChangeWatcher
    /// The chain of lease renewals, as in the SQLite backend: a renewal that comes late breaks it.
    private let renewals = Mutex<(lastStart: Int64?, broken: Bool)>((nil, false))

    /// Tables and indexes as SQL with the schema spliced in (it was checked to be a plain name).
    var s: String { place.schema }
    /// The `NOTIFY` channel of this journal.
    var channel: String { "durable_" + place.schema }

    private init(
        configuration: JournalConfiguration, place: PostgresLocation, writerConnection: PostgresConnection.Configuration,
        lease: LeaseSettings?, logger: Logger
    ) {
        location = configuration.displayLocation
        self.lease = lease
        payloads = JournalPayloads(configuration)
        self.place = place
        self.logger = logger
        // The pool's own log says little a user can act on (outages are reported once by the change
        // watcher and by the commands whose queries fail); only its errors are kept.
        var poolLogger = logger
        poolLogger.logLevel = .error
        client = PostgresClient(configuration: place.clientConfiguration(durability: configuration.durability),
                                backgroundLogger: poolLogger)
        let client = self.client
        clientTask = Task { await client.run() }
        writer = PostgresWriter(client: client, connectionConfiguration: writerConnection, schema: place.schema, lease: lease,
                                location: configuration.displayLocation, logger: logger)
        let watcher = PostgresChangeWatcher(place: place, channel: "durable_" + place.schema, logger: logger)
        self.watcher = watcher
        broadcaster = ChangeBroadcaster { broadcaster, active in watcher.setActive(active, notifying: broadcaster) }
    }

    deinit {
        clientTask.cancel()
        watcher.stop()
        let writer = writer
        Task { await writer.close() }
    }

    /// Connects, checks (or creates, or upgrades) the schema, and starts the connection pool.
    /// - Throws: ``JournalError`` when the server cannot be reached within a few seconds, the URL is
    ///   wrong, the schema is missing (with `createIfMissing == false`) or from a newer format.
    package static func open(_ configuration: JournalConfiguration, lease: LeaseSettings?) async throws -> PostgresJournal {
        let place = try PostgresLocation(configuration.location)
        var logger = Logger(label: "durable.postgres")
        logger.logLevel = .warning
        // A connection of its own first: an unreachable server is a clear error now, not a hang later.
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: try place.connectionConfiguration(), id: 0, logger: logger)
        } catch {
            throw JournalError(.storage(reason: "cannot reach PostgreSQL at \(place.display): \(describe(error))"))
        }
        do {
            try await PostgresSchema.prepare(connection, place: place, create: configuration.createIfMissing,
                                             location: configuration.displayLocation, logger: logger)
        } catch {
            try? await connection.close()
            if let error = error as? JournalError { throw error }
            throw JournalError(.storage(reason: "\(configuration.displayLocation): \(describe(error))"))
        }
        try? await connection.close()
        return PostgresJournal(
            configuration: configuration, place: place,
            writerConnection: try place.connectionConfiguration(durability: configuration.durability), lease: lease,
            logger: logger)
    }

    package var commitCount: Int { writer.commits.load(ordering: .relaxed) }

    // MARK: - Errors

    /// One line for a PostgreSQL error: the server's message (and detail), or what the connection did.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                let state = error.serverInfo?[.sqlState].map { " [\($0)]" } ?? ""
                return message + (error.serverInfo?[.detail].map { ": \($0)" } ?? "") + state
            }
            let underlying = error.underlying.map { "\($0)" } ?? ""
            for (clue, text) in [("Connection refused", "connection refused"), ("timed out", "connection timed out"),
                                 ("Connection reset", "connection reset"), ("No route", "no route to host")]
            where underlying.contains(clue) {
                return text
            }
            return underlying.isEmpty ? "\(error.code)" : "\(error.code): \(underlying)"
        }
        if let error = error as? JournalError { return error.description }
        return "\(error)"
    }

    /// Runs `body` with a pooled connection, mapping errors to ``JournalError`` naming the journal.
    func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await client.withConnection { try await body($0) }
        } catch let error as JournalError {
            throw error
        } catch let error as CancellationError {
            throw error
        } catch {
            throw JournalError(.storage(reason: "\(location): \(Self.describe(error))"))
        }
    }

    /// Runs `body` in a transaction on a pooled connection.
    func inTransaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: logger)
                return value
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// The rows of a query, collected.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withConnection { connection in
            try await connection.query(query, logger: logger).collect()
        }
    }

    // MARK: - Writing

    package func append(_ batch: JournalBatch, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        do {
            writer.submit(try payloads.seal(batch), completion: completion)
        } catch {
            completion(.failure(error))
        }
    }

    package func registerWorkflowTypes(_ names: [String]) async throws {
        let now = Date().journalMillis
        _ = try await withConnection { connection in
            try await connection.query("""
                INSERT INTO \(unescaped: s).workflow_types (name, registered_at) SELECT unnest(\(names)::text[]), \(now)
                ON CONFLICT (name) DO NOTHING
                """, logger: logger)
        }
    }

    package func knownWorkflowTypes() async throws -> [String] {
        try await rows("SELECT name FROM \(unescaped: s).workflow_types ORDER BY name").map { try $0.decode(String.self) }
    }

    // MARK: - Reading

    static let runColumns =
        "run_id, workflow_id, workflow_type, status, created_at, updated_at, closed_at, seed, error, lease_owner, lease_expires_at"

    static func runRecord(_ row: PostgresRow) throws -> RunRecord {
        let (runID, workflowID, type, statusText, created, updated, closed, seed, error, owner, expires) = try row.decode(
            (String, String, String, String, Int64, Int64, Int64?, Int64, String?, String?, Int64?).self)
        guard let status = RunStatus(rawValue: statusText) else {
            throw JournalError(.corruptRun(runID: runID, reason: "unknown status '\(statusText.prefix(40))'"))
        }
        /// A stored time in range (years 1970 through 9999), so that date arithmetic downstream cannot trap.
        func time(_ millis: Int64, _ column: String) throws -> Date {
            guard let date = Date(checkedJournalMillis: millis) else {
                throw JournalError(.corruptRun(runID: runID, reason: "column \(column) holds \(millis), out of range"))
            }
            return date
        }
        return RunRecord(
            runID: runID, workflowID: workflowID, workflowType: type, status: status,
            createdAt: try time(created, "created_at"), updatedAt: try time(updated, "updated_at"),
            closedAt: try closed.map { try time($0, "closed_at") }, seed: UInt64(bitPattern: seed), error: error,
            leaseOwner: owner, leaseExpiresAt: try expires.map { try time($0, "lease_expires_at") })
    }

    package func findRun(_ id: String) async throws -> RunRecord? {
        try await rows("""
            SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs WHERE run_id = \(id)
            UNION ALL (SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs WHERE workflow_id = \(id)
                ORDER BY seq DESC LIMIT 1)
            LIMIT 1
            """).first.map(Self.runRecord)
    }

    package func openRun(workflowID: String) async throws -> RunRecord? {
        try await rows("""
            SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs
            WHERE workflow_id = \(workflowID) AND status IN ('pending','running','held')
            """).first.map(Self.runRecord)
    }

    /// The `WHERE` clause of a filter, with its binds appended to `binds`.
    func clause(_ filter: RunFilter, _ binds: inout PostgresBindings) -> String {
        var conditions: [String] = []
        func bind(_ value: some PostgresDynamicTypeEncodable) -> String {
            binds.append(value)
            return "$\(binds.count)"
        }
        if let statuses = filter.statuses { conditions.append("status = ANY(\(bind(statuses.map(\.rawValue))))") }
        if let type = filter.workflowType { conditions.append("workflow_type = \(bind(type))") }
        if let prefix = filter.workflowIDPrefix {
            conditions.append("left(workflow_id, length(\(bind(prefix)))) = $\(binds.count)")
        }
        if let after = filter.startedAfter { conditions.append("created_at >= \(bind(after.journalMillis))") }
        if let before = filter.startedBefore { conditions.append("created_at < \(bind(before.journalMillis))") }
        if let after = filter.afterRunID {
            conditions.append("seq \(filter.oldestFirst ? ">" : "<") (SELECT seq FROM \(s).runs WHERE run_id = \(bind(after)))")
        }
        return conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
    }

    package func runs(_ filter: RunFilter) async throws -> [RunRecord] {
        var binds = PostgresBindings()
        var sql = "SELECT \(Self.runColumns) FROM \(s).runs" + clause(filter, &binds)
            + (filter.oldestFirst ? " ORDER BY seq" : " ORDER BY seq DESC")
        if let limit = filter.limit { sql += " LIMIT \(max(0, limit))" }
        return try await rows(PostgresQuery(unsafeSQL: sql, binds: binds)).map(Self.runRecord)
    }

    package func countRuns(_ filter: RunFilter) async throws -> [RunStatus: Int] {
        var binds = PostgresBindings()
        let sql = "SELECT status, count(*) FROM \(s).runs" + clause(filter, &binds) + " GROUP BY status"
        var counts: [RunStatus: Int] = [:]
        for row in try await rows(PostgresQuery(unsafeSQL: sql, binds: binds)) {
            let (status, count) = try row.decode((String, Int64).self)
            if let status = RunStatus(rawValue: status) { counts[status] = Int(count) }
        }
        return counts
    }

    package func eventCount(_ run: RunRecord) async throws -> Int {
        let row = try await rows("""
            SELECT (SELECT count(*) FROM \(unescaped: s).events WHERE run_id = \(run.runID)),
                   (SELECT events::bigint FROM \(unescaped: s).packed_histories WHERE run_id = \(run.runID))
            """).first
        guard let (rows, packed) = try row?.decode((Int64, Int64?).self) else { return 0 }
        return Int(rows > 0 ? rows : packed ?? 0)
    }

    package func history(_ run: RunRecord, from index: Int) async throws -> [HistoryEvent] {
        try await withConnection { connection in try await self.history(run, from: index, connection) }
    }

    func history(
        _ run: RunRecord, from index: Int, _ connection: PostgresConnection, payloads: JournalPayloads? = nil
    ) async throws -> [HistoryEvent] {
        let payloads = payloads ?? self.payloads
        let rows = try await connection.query("""
            SELECT idx, kind, time, seq, attempt, name, data, meta FROM \(unescaped: s).events
            WHERE run_id = \(run.runID) AND idx >= \(index) ORDER BY idx
            """, logger: logger).collect()
        if rows.isEmpty {
            let packed = try await connection.query(
                "SELECT data FROM \(unescaped: s).packed_histories WHERE run_id = \(run.runID)", logger: logger
            ).collect()
            if let block = try packed.first?.decode(Data.self) {
                let stored = try await outOfLine(ofRun: run.runID, connection)
                return Array(try HistoryPack.decode(block, runID: run.runID, payloads: payloads, outOfLine: { stored[$0] })
                    .dropFirst(index))
            }
        }
        let decoded = try rows.map { try $0.decode((Int32, Int16, Int64, Int32, Int32, String?, Data?, Data?).self) }
        let stored = try await outOfLine(referencedBy: decoded.map(\.6), connection)
        var events: [HistoryEvent] = []
        events.reserveCapacity(rows.count)
        for (idx, kindValue, time, seq, attempt, name, blob, meta) in decoded {
            if Int(idx) != index + events.count {
                throw JournalError(.corruptEvent(
                    runID: run.runID, index: index + events.count, reason: "event is missing (next is \(idx))"))
            }
            guard let kind = EventKind(rawValue: Int(kindValue)) else {
                throw JournalError(.corruptEvent(runID: run.runID, index: Int(idx), reason: "unknown event kind \(kindValue)"))
            }
            guard let date = Date(checkedJournalMillis: time) else {
                throw JournalError(.corruptEvent(runID: run.runID, index: Int(idx), reason: "column time holds \(time), out of range"))
            }
            guard seq >= 0, attempt >= 0 else {
                throw JournalError(.corruptEvent(
                    runID: run.runID, index: Int(idx), reason: "negative sequence number \(seq) or attempt \(attempt)"))
            }
            let (data, encrypted) = try payloads.read(blob, runID: run.runID, index: Int(idx), kind: kind, outOfLine: { stored[$0] })
            var event = HistoryEvent(
                index: Int(idx), kind: kind, time: date, seq: Int(seq), attempt: Int(attempt), name: name, data: data, meta: meta)
            event.encryptedData = encrypted
            events.append(event)
        }
        return events
    }

    // MARK: - Signals

    package func sendSignal(toRun id: String, name: String, data: Data?, operation: String) async throws -> RunRecord {
        let framed = try data.map(payloads.encode)
        return try await inTransaction { connection in
            try await self.queueSignal(toRun: id, name: name, framed: framed, operation: operation, connection)
        }
    }

    package func sendSignal(
        toRun id: String, name: String, data: Data?, target: String, unlessRecordedAs actionPrefix: String,
        recording record: @escaping @Sendable (RunRecord) -> AuditDraft
    ) async throws -> SignalOnce {
        let framed = try data.map(payloads.encode)
        return try await inTransaction { connection in
            // The audit log's advisory lock, held to the commit, keeps other appends (from any
            // process), and so another call for the same target, out from the look-up on.
            let last = try await Self.lockAudit(schema: self.s, connection, logger: self.logger)
            let found = try await connection.query("""
                SELECT \(unescaped: Self.auditColumns) FROM \(unescaped: self.s).audit
                WHERE target = \(target) AND left(action, char_length(\(actionPrefix))) = \(actionPrefix)
                ORDER BY seq LIMIT 1
                """, logger: self.logger).collect()
            if let row = found.first { return .recordedBefore(try Self.auditEntry(row)) }
            let run = try await self.queueSignal(toRun: id, name: name, framed: framed, operation: "signals", connection)
            var draft = record(run)
            draft.target = target
            let entry = try await Self.insertAudit([draft], after: last, schema: self.s, connection, logger: self.logger)[0]
            return .sent(run: run, entry: entry)
        }
    }

    /// Queues a signal for the open run `id` names (a run ID, or a workflow ID's newest run) inside the
    /// caller's transaction, and notifies the journal's channel. - Returns: that run.
    private func queueSignal(
        toRun id: String, name: String, framed: Data?, operation: String, _ connection: PostgresConnection
    ) async throws -> RunRecord {
        let now = Date().journalMillis
        // The run's row is share-locked until the signal is committed: a run that ends (or
        // continues as new, taking its queued signals along) waits for it, or the signal waits
        // for the end and then goes to the workflow ID's newest run.
        for _ in 0..<3 {
            let found = try await connection.query("""
                SELECT \(unescaped: Self.runColumns) FROM \(unescaped: self.s).runs WHERE run_id = \(id)
                UNION ALL (SELECT \(unescaped: Self.runColumns) FROM \(unescaped: self.s).runs WHERE workflow_id = \(id)
                    ORDER BY seq DESC LIMIT 1)
                LIMIT 1
                """, logger: self.logger).collect()
            guard let row = found.first else { throw JournalError(.runNotFound(id)) }
            let run = try Self.runRecord(row)
            let locked = try await connection.query(
                "SELECT status FROM \(unescaped: self.s).runs WHERE run_id = \(run.runID) FOR SHARE", logger: self.logger
            ).collect()
            let status = try locked.first.map { RunStatus(rawValue: try $0.decode(String.self)) } ?? nil
            guard let status, status.isOpen else {
                if run.runID != id { continue }  // by workflow ID: its newest run may have changed
                throw JournalError(.runClosed(
                    runID: run.runID, status: (status ?? run.status).rawValue, operation: operation))
            }
            try await connection.query("""
                INSERT INTO \(unescaped: self.s).signals (run_id, name, data, sent_at)
                VALUES (\(run.runID), \(name), \(framed), \(now))
                """, logger: self.logger)
            try await connection.query("SELECT pg_notify(\(self.channel), '')", logger: self.logger)
            return run
        }
        let run = try await self.findRun(id)
        throw JournalError(.runClosed(runID: run?.runID ?? id, status: run?.status.rawValue ?? "closed", operation: operation))
    }

    package func queuedSignals(
        including include: @escaping @Sendable (_ runID: String, _ name: String) -> Bool
    ) async throws -> [QueuedSignal] {
        // Names first; payloads only of the signals wanted.
        let heads = try await rows("SELECT id, run_id, name FROM \(unescaped: s).signals ORDER BY id")
            .map { try $0.decode((Int64, String, String).self) }
            .filter { include($0.1, $0.2) }
        guard !heads.isEmpty else { return [] }
        var payloads: [Int64: (Data?, Int64)] = [:]
        for row in try await rows(
            "SELECT id, data, sent_at FROM \(unescaped: s).signals WHERE id = ANY(\(heads.map(\.0)))")
        {
            let (id, data, sentAt) = try row.decode((Int64, Data?, Int64).self)
            payloads[id] = (data, sentAt)
        }
        return heads.compactMap { id, runID, name in
            guard let (framed, sentAt) = payloads[id], let data = try? framed.map(self.payloads.decode),
                let sent = Date(checkedJournalMillis: sentAt)
            else { return nil }  // left queued; journal check names it
            return QueuedSignal(id: id, runID: runID, name: name, data: data, sentAt: sent)
        }
    }

    package func queuedSignalNames(runID: String) async throws -> [String] {
        try await rows("SELECT name FROM \(unescaped: s).signals WHERE run_id = \(runID) ORDER BY id")
            .map { try $0.decode(String.self) }
    }

    package func terminateRun(_ runID: String, reason: String, expected: RunLease, notice: RunNotice?) async throws -> Bool {
        let (termination, framed) = try payloads.seal(
            RunTermination(runID: runID, reason: reason, expected: expected, notice: notice))
        return try await inTransaction { connection in
            guard try await self.terminate(termination, framedReason: framed, connection) else { return false }
            try await connection.query("SELECT pg_notify(\(self.channel), '')", logger: self.logger)
            return true
        }
    }

    package func replaceRun(
        _ termination: RunTermination, with run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal]
    ) async throws -> Bool {
        let (termination, reason) = try payloads.seal(termination)
        let replacement = try payloads.frame(run.runID, events: events, signals: signals)
        return try await inTransaction { connection in
            guard try await self.terminate(termination, framedReason: reason, connection) else { return false }
            try await self.insert(run, replacement, connection)
            try await connection.query("SELECT pg_notify(\(self.channel), '')", logger: self.logger)
            return true
        }
    }

    /// Ends the open run as terminated, if its lease is still as expected. - Returns: whether it did.
    func terminate(_ termination: RunTermination, framedReason: Data, _ connection: PostgresConnection) async throws -> Bool {
        let (runID, reason, expected) = (termination.runID, termination.reason, termination.expected)
        let now = Date().journalMillis
        // The compare-and-set: the lease still as the caller saw it, the run still open.
        let taken = try await connection.query("""
            UPDATE \(unescaped: s).runs SET status = 'terminated', error = \(reason), updated_at = \(now),
                closed_at = \(now), lease_owner = NULL, lease_expires_at = NULL, next_idx = next_idx + 1
            WHERE run_id = \(runID) AND status IN ('pending','running','held')
                AND lease_owner IS NOT DISTINCT FROM \(expected.owner)
                AND lease_expires_at IS NOT DISTINCT FROM \(expected.expiresAtMillis)
            RETURNING next_idx - 1
            """, logger: logger).collect()
        guard let index = try taken.first?.decode(Int32.self) else { return false }
        try await connection.query("""
            INSERT INTO \(unescaped: s).events (run_id, idx, kind, time, seq, attempt, data)
            VALUES (\(runID), \(index), \(Int16(EventKind.workflowTerminated.rawValue)), \(now), 0, 0, \(framedReason))
            """, logger: logger)
        try await connection.query("DELETE FROM \(unescaped: s).signals WHERE run_id = \(runID)", logger: logger)
        if let notice = termination.notice { try await PostgresWriter.queue(notice, schema: s, now: now, connection, logger: logger) }
        return true
    }

    // MARK: - Leases

    package func claimPendingRuns(workflowTypes: [String], limit: Int) async throws -> [RunRecord] {
        guard !workflowTypes.isEmpty, limit > 0 else { return [] }
        let now = Date().journalMillis
        // SKIP LOCKED: rows another worker is claiming (or a signal sender holds until its commit) are
        // left to them; MATERIALIZED: the planner cannot fold the CTE into the UPDATE and update more
        // rows than it locked.
        return try await rows("""
            WITH candidate AS MATERIALIZED (
                SELECT run_id FROM \(unescaped: s).runs WHERE status = 'pending' AND workflow_type = ANY(\(workflowTypes))
                ORDER BY seq LIMIT \(Int64(limit)) FOR UPDATE SKIP LOCKED)
            UPDATE \(unescaped: s).runs SET status = 'running', updated_at = \(now), lease_owner = \(lease?.owner),
                lease_expires_at = \(lease.map { now + $0.durationMs }), lease_epoch = lease_epoch + 1
            WHERE run_id IN (SELECT run_id FROM candidate)
            RETURNING \(unescaped: Self.runColumns)
            """).map(Self.runRecord).sorted { $0.createdAt < $1.createdAt }
    }

    package func acquireLease(runID: String, expected: RunLease) async throws -> Bool {
        guard let lease else { return true }
        let now = Date().journalMillis
        return try await !rows("""
            UPDATE \(unescaped: s).runs SET lease_owner = \(lease.owner), lease_expires_at = \(now + lease.durationMs),
                lease_epoch = lease_epoch + 1
            WHERE run_id = \(runID) AND status IN ('pending','running','held')
                AND lease_owner IS NOT DISTINCT FROM \(expected.owner)
                AND lease_expires_at IS NOT DISTINCT FROM \(expected.expiresAtMillis)
            RETURNING 1
            """).isEmpty
    }

    package func beginLeaseRenewals() {
        guard lease != nil else { return }
        let now = Date().journalMillis
        renewals.withLock { chain in
            if chain.lastStart == nil && !chain.broken { chain.lastStart = now }
        }
    }

    @discardableResult
    package func renewLeases() async throws -> Int {
        guard let lease else { return 0 }
        let start = Date().journalMillis
        let held = try await rows("""
            UPDATE \(unescaped: s).runs SET lease_expires_at = \(start + lease.durationMs)
            WHERE lease_owner = \(lease.owner) AND status IN ('running','held') RETURNING 1
            """).count
        let end = Date().journalMillis
        renewals.withLock { chain in
            guard !chain.broken, let last = chain.lastStart else { return }
            if end < last + lease.durationMs { chain.lastStart = start } else { chain.broken = true }
        }
        return held
    }

    package var leaseChainBroken: Bool { renewals.withLock { $0.broken } }

    package func runsLeasedHere() async throws -> [String] {
        guard let lease else { return [] }
        return try await rows("""
            SELECT run_id FROM \(unescaped: s).runs WHERE lease_owner = \(lease.owner) AND status IN ('pending','running','held')
            """).map { try $0.decode(String.self) }
    }

    package func leases(ofRuns runIDs: [String]) async throws -> [String: (owner: String?, status: RunStatus)] {
        var leases: [String: (owner: String?, status: RunStatus)] = [:]
        for row in try await rows(
            "SELECT run_id, lease_owner, status FROM \(unescaped: s).runs WHERE run_id = ANY(\(runIDs))")
        {
            let (runID, owner, status) = try row.decode((String, String?, String).self)
            if let status = RunStatus(rawValue: status) { leases[runID] = (owner, status) }
        }
        return leases
    }

    package func releaseLeases() async throws {
        guard let lease else { return }
        renewals.withLock { $0.broken = true }
        _ = try await rows("""
            UPDATE \(unescaped: s).runs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = \(lease.owner)
            """)
    }

    package func releaseLease(runID: String) async throws {
        guard let lease else { return }
        _ = try await rows("""
            UPDATE \(unescaped: s).runs SET lease_owner = NULL, lease_expires_at = NULL
            WHERE run_id = \(runID) AND lease_owner = \(lease.owner)
            """)
    }

    package func leaseOwners() async throws -> [String: Int] {
        var owners: [String: Int] = [:]
        for row in try await rows("""
            SELECT lease_owner, count(*) FROM \(unescaped: s).runs
            WHERE status = 'running' AND lease_owner IS NOT NULL GROUP BY 1
            """)
        {
            let (owner, count) = try row.decode((String, Int64).self)
            owners[owner] = Int(count)
        }
        return owners
    }

    package func runsToTakeOver(deadOwners: [String], limit: Int) async throws -> [RunRecord] {
        guard lease != nil else { return [] }
        let now = Date().journalMillis
        let limit = Int64(max(0, limit))
        // Two index scans (format 2's takeover indexes), each limited: free or expired leases, longest
        // expired first, then leases of owners known to be dead. A run leased to this worker that it
        // no longer drives had its lease released by the engine (see `Engine.journalWriteFailed`).
        // Runs recorded as waiting (`wake_at`) are left out: they are woken when due or signalled.
        return try await rows("""
            (SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs
                WHERE status = 'running' AND wake_at IS NULL AND coalesce(lease_expires_at, 0) < \(now)
                ORDER BY coalesce(lease_expires_at, 0) LIMIT \(limit))
            UNION
            (SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs
                WHERE status = 'running' AND wake_at IS NULL AND lease_owner = ANY(\(deadOwners)) ORDER BY lease_owner LIMIT \(limit))
            ORDER BY created_at LIMIT \(limit)
            """).map(Self.runRecord)
    }

    // MARK: - Due-time index

    package func runsToResume() async throws -> [RunRecord] {
        try await rows("""
            SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs WHERE status = 'running' AND wake_at IS NULL
            ORDER BY seq
            """).map(Self.runRecord)
            + rows("SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs WHERE status = 'held' ORDER BY seq")
            .map(Self.runRecord)
    }

    package func dueRuns(before date: Date, limit: Int) async throws -> [RunRecord] {
        try await rows("""
            SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs
            WHERE status = 'running' AND wake_at IS NOT NULL AND wake_at <= \(date.journalMillis)
                AND lease_owner IS DISTINCT FROM \(lease?.owner)::text
            ORDER BY wake_at LIMIT \(Int64(max(0, limit)))
            """).map(Self.runRecord)
    }

    package func nextWake(after date: Date) async throws -> Date? {
        try await rows("""
            SELECT min(wake_at) FROM \(unescaped: s).runs
            WHERE status = 'running' AND wake_at IS NOT NULL AND wake_at > \(date.journalMillis) AND wake_at < \(Int64.max)
                AND lease_owner IS DISTINCT FROM \(lease?.owner)::text
            """).first?.decode(Int64?.self).map { Date(journalMillis: $0) }
    }

    package func hasWaitingRuns() async throws -> Bool {
        try await rows("""
            SELECT EXISTS (SELECT 1 FROM \(unescaped: s).runs WHERE status = 'running' AND wake_at IS NOT NULL)
            """).first?.decode(Bool.self) ?? false
    }

    package func waitingRunsWithSignals(limit: Int) async throws -> [RunRecord] {
        try await rows("""
            SELECT \(unescaped: Self.runColumns) FROM \(unescaped: s).runs WHERE run_id IN (
                SELECT signals.run_id FROM \(unescaped: s).signals AS signals
                JOIN \(unescaped: s).runs AS runs ON runs.run_id = signals.run_id
                WHERE runs.status = 'running' AND runs.wake_at IS NOT NULL
                GROUP BY signals.run_id ORDER BY min(signals.id) LIMIT \(Int64(max(0, limit))))
            """).map(Self.runRecord)
    }

    // MARK: - Change feed

    package func changes() -> JournalChanges { broadcaster.subscribe() }

    package func close() async {
        broadcaster.finish()
        watcher.stop()
        await writer.close()
        clientTask.cancel()
    }

    // MARK: - Durability

    package func effectiveDurability() async throws -> Durability {
        let setting = try await rows("SHOW synchronous_commit").first?.decode(String.self)
        return setting == "off" ? .fast : .full
    }

    package func checkpoint() async throws {}
}
