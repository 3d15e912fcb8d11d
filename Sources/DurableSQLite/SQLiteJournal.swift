package import DurableJournal
package import Foundation
import GRDB
import Synchronization

/// The journal in one SQLite file (WAL mode), written through a group-commit writer.
///
/// Reads go through GRDB's reader connections and never wait for the writer. Writes are
/// ``JournalBatch``es handed to ``append(_:completion:)``: all batches that arrive while a commit
/// is in progress are written together in the next transaction, so concurrent runs share fsyncs.
package final class SQLiteJournal: Journal {
    package let path: String
    package let durability: Durability
    /// The lease this journal's writer takes on the runs it drives, and checks before it writes one.
    package let lease: LeaseSettings?
    /// The payload keys, and what reads do without one.
    let payloads: JournalPayloads
    let pool: DatabasePool
    let writer: GroupCommitWriter
    /// The chain of lease renewals (see ``renewLeases()``): when the last one began, and whether one
    /// came late.
    private let renewals = Mutex<(lastStart: Int64?, broken: Bool)>((nil, false))
    /// Reads `PRAGMA data_version` for the change feed, while it has subscribers.
    private let watcher: DataVersionWatcher
    /// The change feed's subscribers.
    private let broadcaster: ChangeBroadcaster
    /// The journal's files as opened (``verifyFiles()``).
    let files = Mutex<JournalFiles?>(nil)

    /// The page size of new journals. A step commits a few small rows, and every page it touches is
    /// written to the WAL and synced: with 1 KiB pages a sequential step at `full` durability took about
    /// 20 % less time than with SQLite's default 4 KiB (0.28 against 0.36 ms), payloads of 4 KB and
    /// 20 KB took the same time, and nothing else got slower (Docs/architecture.md).
    package static let pageSize = 1024

    package init(_ configuration: JournalConfiguration, lease: LeaseSettings? = nil) throws {
        path = configuration.location
        durability = configuration.durability
        self.lease = lease
        payloads = JournalPayloads(configuration)
        if !configuration.createIfMissing && !FileManager.default.fileExists(atPath: path) {
            throw JournalError(.missing(path: path))
        }
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.maximumReaderCount = 4
        if !FileManager.default.fileExists(atPath: path) {
            // Set before the file's first write (GRDB's WAL setup); an existing journal keeps its size.
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA page_size = \(Self.pageSize)") }
            try Self.createPrivateFile(path)
        }
        try Self.checkLinks(path)
        let synchronous = configuration.durability == .full ? "FULL" : "NORMAL"
        let path = self.path
        do {
            if FileManager.default.fileExists(atPath: path) { try Self.preflight(path) }
            pool = try DatabasePool(path: path, configuration: config)
            // Set on the writer connection after GRDB's own WAL setup, which sets synchronous=NORMAL.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
            try pool.write { db in try Self.prepareSchema(db, path: path) }
        } catch let error as JournalError {
            throw error
        } catch let error as DatabaseError {
            if error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT {
                throw JournalError(.notADatabase(path: path, reason: error.message ?? "\(error.resultCode)"))
            }
            throw JournalError(.storage(reason: "\(path): \(error.message ?? error.description)"))
        }
        writer = GroupCommitWriter(pool: pool, lease: lease)
        let watcher = DataVersionWatcher(path: path)
        broadcaster = ChangeBroadcaster { broadcaster, active in watcher.setActive(active, notifying: broadcaster) }
        self.watcher = watcher
        recordFiles()
    }

    package var location: String { path }

    // MARK: - Writing

    /// Queues a batch for the next group commit; `completion` runs after the transaction holding the
    /// batch committed (or failed), on the thread that committed it: the caller's own when the journal
    /// was idle (no thread hop on a sequential workflow's step), else the writer thread. Keep it short.
    package func append(_ batch: JournalBatch, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        do {
            writer.submit(try payloads.seal(batch), completion: completion)
        } catch {
            completion(.failure(error))
        }
    }

    /// Writes a batch and returns once it is committed with the durability configured. The commit
    /// happens on the writer thread (the caller awaits it anyway), so concurrent callers share it.
    package func append(_ batch: JournalBatch) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            do {
                writer.submit(try payloads.seal(batch), inline: false) { continuation.resume(with: $0) }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    package func registerWorkflowTypes(_ names: [String]) async throws {
        let now = Date().journalMillis
        try write { db in
            for name in names {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO workflow_types (name, registered_at) VALUES (?, ?)",
                    arguments: [name, now])
            }
        }
    }

    package func knownWorkflowTypes() async throws -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT name FROM workflow_types ORDER BY name") }
    }

    // MARK: - Signals

    package func sendSignal(toRun id: String, name: String, data: Data?, operation: String) async throws -> RunRecord {
        let framed = try data.map(payloads.encode)
        return try write { db in
            guard let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT \(Self.runColumns) FROM runs WHERE run_id = ?1
                    UNION ALL SELECT * FROM (SELECT \(Self.runColumns) FROM runs WHERE workflow_id = ?1
                        ORDER BY id DESC LIMIT 1)
                    LIMIT 1
                    """,
                arguments: [id])
            else { throw JournalError(.runNotFound(id)) }
            let (key, run) = try Self.runRow(row)
            guard run.status.isOpen else {
                throw JournalError(.runClosed(runID: run.runID, status: run.status.rawValue, operation: operation))
            }
            try db.execute(
                sql: "INSERT INTO signals (run, name, data, sent_at) VALUES (?, ?, ?, ?)",
                arguments: [key, name, framed, Date().journalMillis])
            return run
        }
    }

    package func terminateRun(_ runID: String, reason: String, expected lease: RunLease, notice: RunNotice?) async throws -> Bool {
        let termination = try sealed(RunTermination(runID: runID, reason: reason, expected: lease, notice: notice))
        let framed = try payloads.encode(Data(reason.utf8))
        return try write { db in try Self.terminate(termination, framedReason: framed, db) }
    }

    package func replaceRun(
        _ termination: RunTermination, with run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal]
    ) async throws -> Bool {
        let termination = try sealed(termination)
        let framed = try payloads.encode(Data(termination.reason.utf8))
        let drafts = try payloads.seal(JournalBatch(run: RunRef(runID: run.runID), events: events.map(EventDraft.init))).events
        let framedSignals = try frame(signals)
        return try write { db in
            guard try Self.terminate(termination, framedReason: framed, db) else { return false }
            try Self.insert(run, drafts, framedSignals, db)
            return true
        }
    }

    /// Ends the open run as terminated, if its lease is still as expected. - Returns: whether it did.
    static func terminate(_ termination: RunTermination, framedReason: Data, _ db: Database) throws -> Bool {
        guard let row = try Row.fetchOne(
            db, sql: "SELECT id, status, lease_owner, lease_expires_at FROM runs WHERE run_id = ?",
            arguments: [termination.runID]),
            RunStatus(rawValue: row[1])?.isOpen == true, RunLease(row[2], row[3]) == termination.expected
        else { return false }
        let key: Int64 = row[0]
        let next = try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(idx), -1) + 1 FROM events WHERE run = ?", arguments: [key]) ?? 0
        let now = Date().journalMillis
        try db.execute(
            sql: "INSERT INTO events (run, idx, kind, time, seq, attempt, name, data, meta) VALUES (?,?,?,?,0,0,NULL,?,NULL)",
            arguments: [key, next, EventKind.workflowTerminated.rawValue, now, framedReason])
        try db.execute(
            sql: "UPDATE runs SET status = 'terminated', error = ?, updated_at = ?, closed_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            arguments: [termination.reason, now, now, key])
        try db.execute(sql: "DELETE FROM signals WHERE run = ?", arguments: [key])
        if let notice = termination.notice { try GroupCommitWriter.queue(notice, db, now: now) }
        return true
    }

    // MARK: - Leases

    package func claimPendingRuns(workflowTypes: [String], limit: Int) async throws -> [RunRecord] {
        guard !workflowTypes.isEmpty, limit > 0 else { return [] }
        let now = Date().journalMillis
        let types = workflowTypes.map { _ in "?" }.joined(separator: ",")
        var arguments: StatementArguments = [now, lease?.owner, lease.map { now + $0.durationMs }]
        arguments += StatementArguments(workflowTypes)
        // A read first: most wake-ups find nothing pending, and take no write lock then.
        let any = try read { db in
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'pending' AND workflow_type IN (\(types)))",
                arguments: StatementArguments(workflowTypes)) ?? false
        }
        guard any else { return [] }
        arguments += [limit]
        return try write { db in
            try Row.fetchAll(
                db,
                sql: """
                    UPDATE runs SET status = 'running', updated_at = ?, lease_owner = ?, lease_expires_at = ?
                    WHERE id IN (SELECT id FROM runs WHERE status = 'pending' AND workflow_type IN (\(types))
                        ORDER BY id LIMIT ?)
                    RETURNING \(Self.runColumns)
                    """,
                arguments: arguments
            ).map(Self.runRow).sorted { $0.key < $1.key }.map(\.run)
        }
    }

    package func acquireLease(runID: String, expected: RunLease) async throws -> Bool {
        guard let lease else { return true }
        return try write { db in
            let now = Date().journalMillis
            try db.execute(
                sql: """
                    UPDATE runs SET lease_owner = ?, lease_expires_at = ?
                    WHERE run_id = ? AND status IN \(RunStatus.openStatusesSQL) AND lease_owner IS ? AND lease_expires_at IS ?
                    """,
                arguments: [lease.owner, now + lease.durationMs, runID, expected.owner, expected.expiresAtMillis])
            return db.changesCount == 1
        }
    }

    /// Starts the chain of renewals: call before this worker takes its first lease, then call
    /// ``renewLeases()`` every third of a lease. It counts as the first renewal (of no lease): a
    /// lease taken after it lasts at least a whole lease from now.
    package func beginLeaseRenewals() {
        guard let lease else { return }
        let now = Date().journalMillis
        let begun = renewals.withLock { chain -> Bool in
            guard chain.lastStart == nil, !chain.broken else { return false }
            chain.lastStart = now
            return true
        }
        if begun { writer.leasesSafeUntil.store(now + lease.durationMs / 2, ordering: .releasing) }
    }

    /// Extends the leases this worker holds. - Returns: how many it holds.
    ///
    /// While renewals come in an unbroken chain (each one done before a lease renewed by the
    /// previous one could expire, the first begun before any lease was taken), no lease of this
    /// worker can have been taken over: its process is alive and none expired. Until half a lease
    /// after a renewal began, commits then skip the per-run lease check (one read per commit). A
    /// renewal that comes late breaks the chain for good: some runs may have been taken over, and
    /// every commit checks again.
    @discardableResult
    package func renewLeases() async throws -> Int {
        guard let lease else { return 0 }
        let start = Date().journalMillis
        let held = try write { db in
            try db.execute(
                sql: "UPDATE runs SET lease_expires_at = ? WHERE lease_owner = ? AND status IN ('running','held')",
                arguments: [start + lease.durationMs, lease.owner])
            return db.changesCount
        }
        let end = Date().journalMillis
        let safeUntil = renewals.withLock { chain -> Int64 in
            guard !chain.broken, let last = chain.lastStart else { return 0 }
            guard end < last + lease.durationMs else {
                chain.broken = true
                return 0
            }
            chain.lastStart = start
            return start + lease.durationMs / 2
        }
        writer.leasesSafeUntil.store(safeUntil, ordering: .releasing)
        return held
    }

    package var leaseChainBroken: Bool { renewals.withLock { $0.broken } }

    package func runsLeasedHere() async throws -> [String] {
        guard let lease else { return [] }
        return try read { db in
            try String.fetchAll(
                db, sql: "SELECT run_id FROM runs WHERE lease_owner = ? AND status IN \(RunStatus.openStatusesSQL)",
                arguments: [lease.owner])
        }
    }

    package func leases(ofRuns runIDs: [String]) async throws -> [String: (owner: String?, status: RunStatus)] {
        try read { db in
            var leases: [String: (owner: String?, status: RunStatus)] = [:]
            for start in stride(from: 0, to: runIDs.count, by: 500) {
                let chunk = Array(runIDs[start..<min(start + 500, runIDs.count)])
                let rows = try Row.fetchAll(
                    db,
                    sql: "SELECT run_id, lease_owner, status FROM runs WHERE run_id IN (\(chunk.map { _ in "?" }.joined(separator: ",")))",
                    arguments: StatementArguments(chunk))
                for row in rows {
                    if let status = RunStatus(rawValue: row[2]) { leases[row[0]] = (row[1], status) }
                }
            }
            return leases
        }
    }

    package func releaseLeases() async throws {
        guard let lease else { return }
        renewals.withLock { $0.broken = true }
        writer.leasesSafeUntil.store(0, ordering: .releasing)
        try write { db in
            try db.execute(
                sql: "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?",
                arguments: [lease.owner])
        }
    }

    package func releaseLease(runID: String) async throws {
        guard let lease else { return }
        try write { db in
            try db.execute(
                sql: "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE run_id = ? AND lease_owner = ?",
                arguments: [runID, lease.owner])
        }
    }

    package func leaseOwners() async throws -> [String: Int] {
        try read { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT lease_owner, count(*) FROM runs WHERE status = 'running' AND lease_owner IS NOT NULL GROUP BY 1")
            return Dictionary(uniqueKeysWithValues: rows.map { ($0[0] as String, $0[1] as Int) })
        }
    }

    package func runsToTakeOver(deadOwners: [String], limit: Int) async throws -> [RunRecord] {
        guard let lease else { return [] }
        try verifyFiles()  // a worker asks every quarter of a second
        let dead = deadOwners.map { _ in "?" }.joined(separator: ",")
        var arguments: StatementArguments = [Date().journalMillis, lease.owner]
        arguments += StatementArguments(deadOwners)
        return try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.runColumns) FROM runs WHERE status = 'running'
                        AND (lease_owner IS NULL OR (lease_expires_at < ? AND lease_owner != ?)
                            \(deadOwners.isEmpty ? "" : "OR lease_owner IN (\(dead))"))
                    ORDER BY id LIMIT \(max(0, limit))
                    """,
                arguments: arguments
            ).map(Self.runRecord)
        }
    }

    package func queuedSignals(
        including include: @escaping @Sendable (_ runID: String, _ name: String) -> Bool
    ) async throws -> [QueuedSignal] {
        try read { db in
            // A cursor: the payload of a signal left out is never read (SQLite reads a column, and its
            // overflow pages, only when asked for it).
            var signals: [QueuedSignal] = []
            let rows = try Row.fetchCursor(db, sql: """
                SELECT signals.id, runs.run_id, signals.name, signals.sent_at, signals.data
                FROM signals JOIN runs ON runs.id = signals.run ORDER BY signals.id
                """)
            while let row = try rows.next() {
                let (id, runID, name): (Int64, String, String) = (row[0], row[1], row[2])
                guard include(runID, name) else { continue }
                let framed: Data? = row[4]
                guard let data = try? framed.map(payloads.decode) else { continue }
                signals.append(QueuedSignal(id: id, runID: runID, name: name, data: data, sentAt: Date(journalMillis: row[3])))
            }
            return signals
        }
    }

    package func queuedSignalNames(runID: String) async throws -> [String] {
        try read { db in
            try String.fetchAll(
                db, sql: "SELECT name FROM signals WHERE run = (SELECT id FROM runs WHERE run_id = ?) ORDER BY id",
                arguments: [runID])
        }
    }

    // MARK: - Reading

    static let runColumns =
        "id, run_id, workflow_id, workflow_type, status, created_at, updated_at, closed_at, seed, error, lease_owner, lease_expires_at"

    /// A row of ``runColumns``: the run's key in this file and its record.
    static func runRow(_ row: Row) throws -> (key: Int64, run: RunRecord) {
        let runID: String = row[1]
        let statusText: String = row[4]
        guard let status = RunStatus(rawValue: statusText) else {
            throw JournalError(.corruptRun(runID: runID, reason: "unknown status '\(statusText)'"))
        }
        let seed: Int64 = row[8]
        let closed: Int64? = row[7]
        let leaseEnd: Int64? = row[11]
        return (row[0], RunRecord(
            runID: runID, workflowID: row[2], workflowType: row[3], status: status,
            createdAt: Date(journalMillis: row[5]), updatedAt: Date(journalMillis: row[6]),
            closedAt: closed.map(Date.init(journalMillis:)), seed: UInt64(bitPattern: seed), error: row[9],
            leaseOwner: row[10], leaseExpiresAt: leaseEnd.map(Date.init(journalMillis:))))
    }

    static func runRecord(_ row: Row) throws -> RunRecord { try runRow(row).run }

    package func findRun(_ id: String) async throws -> RunRecord? {
        try read { db in
            if let row = try Row.fetchOne(
                db, sql: "SELECT \(Self.runColumns) FROM runs WHERE run_id = ?", arguments: [id])
            {
                return try Self.runRecord(row)
            }
            return try Row.fetchOne(
                db, sql: "SELECT \(Self.runColumns) FROM runs WHERE workflow_id = ? ORDER BY id DESC LIMIT 1",
                arguments: [id]
            ).map(Self.runRecord)
        }
    }

    package func openRun(workflowID: String) async throws -> RunRecord? {
        try read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT \(Self.runColumns) FROM runs
                    WHERE workflow_id = ? AND status IN \(RunStatus.openStatusesSQL)
                    """,
                arguments: [workflowID]
            ).map(Self.runRecord)
        }
    }

    package func eventCount(_ run: RunRecord) async throws -> Int {
        try read { db in
            guard let key = try Self.key(of: run.runID, db) else { return 0 }
            let rows = try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE run = ?", arguments: [key]) ?? 0
            if rows > 0 { return rows }
            return try Int.fetchOne(db, sql: "SELECT events FROM packed_histories WHERE run = ?", arguments: [key]) ?? 0
        }
    }

    package func history(_ run: RunRecord, from index: Int) async throws -> [HistoryEvent] {
        try read { db in
            guard let key = try Self.key(of: run.runID, db) else { throw JournalError(.runNotFound(run.runID)) }
            return try Self.history(run, key: key, from: index, db, payloads: payloads)
        }
    }

    /// The run's key in this file.
    static func key(of runID: String, _ db: Database) throws -> Int64? {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM runs WHERE run_id = ?"), arguments: [runID])
    }

    static func history(
        _ run: RunRecord, key: Int64, from index: Int = 0, _ db: Database, payloads: JournalPayloads
    ) throws -> [HistoryEvent] {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT idx, kind, time, seq, attempt, name, data, meta FROM events
                WHERE run = ? AND idx >= ? ORDER BY idx
                """,
            arguments: [key, index])
        if rows.isEmpty, let packed = try Data.fetchOne(
            db, sql: "SELECT data FROM packed_histories WHERE run = ?", arguments: [key])
        {
            return Array(try HistoryPack.decode(packed, runID: run.runID, payloads: payloads).dropFirst(index))
        }
        var events: [HistoryEvent] = []
        events.reserveCapacity(rows.count)
        for row in rows {
            let idx: Int = row[0]
            if idx != index + events.count {
                throw JournalError(.corruptEvent(
                    runID: run.runID, index: index + events.count, reason: "event is missing (next is \(idx))"))
            }
            let kindValue: Int = row[1]
            guard let kind = EventKind(rawValue: kindValue) else {
                throw JournalError(.corruptEvent(runID: run.runID, index: idx, reason: "unknown event kind \(kindValue)"))
            }
            let (data, encrypted) = try payloads.read(row[6], runID: run.runID, index: idx, kind: kind)
            var event = HistoryEvent(
                index: idx, kind: kind, time: Date(journalMillis: row[2]), seq: row[3], attempt: row[4],
                name: row[5], data: data, meta: row[7])
            event.encryptedData = encrypted
            events.append(event)
        }
        return events
    }

    // MARK: - Change feed

    package func changes() -> JournalChanges { broadcaster.subscribe() }

    package func close() async {
        broadcaster.finish()
        watcher.stop()
    }

    // MARK: - File-level operations (SQLite only)

    /// `PRAGMA synchronous` of the writer connection: 2 (FULL) or 1 (NORMAL).
    package func writerSynchronous() throws -> Int {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    package func effectiveDurability() async throws -> Durability {
        try writerSynchronous() >= 2 ? .full : .fast
    }

    /// Transactions the group-commit writer has committed since the journal was opened.
    package var commitCount: Int { writer.commits.load(ordering: .relaxed) }

    /// Moves the WAL's contents into the database file and truncates the WAL.
    package func checkpoint() async throws {
        try writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch let error as JournalError {
            throw error
        } catch let error as DatabaseError {
            throw JournalError(.storage(reason: "\(path): \(error.message ?? error.description)"))
        }
    }

    /// GRDB's blocking `write`, without this journal's error mapping (the caller maps errors).
    func writeSync<T>(_ body: (Database) throws -> T) throws -> T { try pool.write(body) }

    /// GRDB's blocking `writeWithoutTransaction` (async callers would otherwise get GRDB's async one).
    func writeWithoutTransaction(_ body: (Database) throws -> Void) throws { try pool.writeWithoutTransaction(body) }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.write(body)
        } catch let error as JournalError {
            throw error
        } catch let error as DatabaseError {
            throw JournalError(.storage(reason: "\(path): \(error.message ?? error.description)"))
        }
    }
}

extension RunStatus {
    /// The open statuses as an SQL list.
    static let openStatusesSQL = "('pending','running','held')"
}
