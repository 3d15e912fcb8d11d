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
    /// Checkpoints the write-ahead log off the writer's commits.
    private let checkpointer: WALCheckpointer
    /// Appends audit entries, several callers' in one synced transaction.
    let auditWriter = AuditGroupWriter()
    /// The chain of lease renewals (see ``renewLeases()``): when the last one began, and whether one
    /// came late.
    private let renewals = Mutex<(lastStart: Int64?, broken: Bool)>((nil, false))
    /// Reads `PRAGMA data_version` for the change feed, while it has subscribers.
    private let watcher: DataVersionWatcher
    /// The change feed's subscribers.
    private let broadcaster: ChangeBroadcaster
    /// The journal's files as opened (``checkFiles()``).
    let files = Mutex<JournalFiles?>(nil)

    /// The page size of new journals. A step commits a few small rows, and every page it touches is
    /// written to the WAL and synced: with 1 KiB pages a sequential step at `full` durability took about
    /// 20 % less time than with SQLite's default 4 KiB (0.28 against 0.36 ms), payloads of 4 KB and
    /// 20 KB took the same time, and nothing else got slower (Docs/architecture.md).
    package static let pageSize = 1024

    /// Opens the journal file, creating it when `configuration.createIfMissing` allows.
    ///
    /// With `createIfMissing == false` (the inspection commands) the file must be an existing
    /// journal: a missing file, an empty (0-byte) file or a SQLite database that is not a journal is
    /// refused and nothing is written. With `createIfMissing == true`, a new journal is created in a
    /// missing file, an empty file or an empty SQLite database; any other database is refused.
    /// - Throws: ``JournalError``: `missing`, `notAJournal` (an empty file, a directory, a device,
    ///   another database), `notADatabase`, `newerFormat`, `storage`.
    package init(_ configuration: JournalConfiguration, lease: LeaseSettings? = nil) throws {
        path = configuration.location
        durability = configuration.durability
        self.lease = lease
        payloads = JournalPayloads(configuration)
        let create = configuration.createIfMissing
        let existing = try Self.inspectPath(path)
        if !create {
            guard let existing else { throw JournalError(.missing(path: path)) }
            if existing == 0 { throw JournalError(.emptyFile(path: path)) }
        }
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.maximumReaderCount = 4
        let isNew = (existing ?? 0) == 0
        config.prepareDatabase { db in
            for function in RowChecksum.functions { db.add(function: function) }
            // Set before the file's first write (GRDB's WAL setup); an existing journal keeps its size.
            if isNew { try db.execute(sql: "PRAGMA page_size = \(Self.pageSize)") }
        }
        if existing == nil { try Self.createPrivateFile(path) }
        try Self.checkLinks(path)
        let synchronous = configuration.durability == .full ? "FULL" : "NORMAL"
        let path = self.path
        do {
            if !isNew { try Self.preflight(path, create: create) }
            pool = try DatabasePool(path: path, configuration: config)
            // Set on the writer connection after GRDB's own WAL setup, which sets synchronous=NORMAL.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
            try pool.write { db in try Self.prepareSchema(db, path: path, create: create) }
            checkpointer = pool.writeWithoutTransaction { db in WALCheckpointer(installingOn: db, path: path) }
        } catch let error as JournalError {
            throw error
        } catch let error as DatabaseError {
            if error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT {
                throw JournalError(.notADatabase(path: path, reason: error.message ?? "\(error.resultCode)"))
            }
            throw JournalError(.storage(reason: "\(path): \(error.message ?? error.description)"))
        } catch {
            throw JournalError(.storage(reason: "\(path): \(error)"))
        }
        writer = GroupCommitWriter(pool: pool, lease: lease, fast: configuration.durability != .full)
        let watcher = DataVersionWatcher(path: path)
        broadcaster = ChangeBroadcaster { broadcaster, active in watcher.setActive(active, notifying: broadcaster) }
        self.watcher = watcher
        recordFiles()
    }

    package var location: String { path }

    /// The size of the regular file at `path`, or `nil` when nothing is there.
    /// - Throws: ``JournalError`` `notAJournal` when the path names a directory, a device or
    ///   anything else that is not a regular file.
    static func inspectPath(_ path: String) throws -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return Int64(info.st_size)
        case S_IFDIR: throw JournalError(.notAFile(path: path, what: "a directory"))
        case S_IFCHR, S_IFBLK: throw JournalError(.notAFile(path: path, what: "a device"))
        default: throw JournalError(.notAFile(path: path, what: "a special file (not a regular file)"))
        }
    }

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
        try await write { db in
            for name in names {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO workflow_types (name, registered_at) VALUES (?, ?)",
                    arguments: [name, now])
            }
        }
    }

    package func knownWorkflowTypes() async throws -> [String] {
        try await read { db in try String.fetchAll(db, sql: "SELECT name FROM workflow_types ORDER BY name") }
    }

    // MARK: - Signals

    package func sendSignal(toRun id: String, name: String, data: Data?, operation: String) async throws -> RunRecord {
        let framed = try data.map(payloads.encode)
        return try await writeGrouped(about: id) { db, now in
            try Self.queueSignal(toRun: id, name: name, framed: framed, operation: operation, now: now, db)
        }
    }

    package func sendSignal(
        toRun id: String, name: String, data: Data?, target: String, unlessRecordedAs actionPrefix: String,
        recording record: @escaping @Sendable (RunRecord) -> AuditDraft
    ) async throws -> SignalOnce {
        let framed = try data.map(payloads.encode)
        return try await offloaded { [self] in
            // An `IMMEDIATE` transaction, synced: its write lock keeps every other write (audit
            // appends included, from any process) out from the look-up to the commit.
            try writeDurably { db in
                let found = try Row.fetchOne(
                    db, sql: """
                        SELECT \(Self.auditColumns) FROM audit WHERE target = ? AND substr(action, 1, length(?2)) = ?2
                        ORDER BY seq LIMIT 1
                        """, arguments: [target, actionPrefix])
                if let found {
                    let (entry, damage) = try Self.auditRow(found)
                    if let damage { throw damage }
                    return .recordedBefore(entry)
                }
                let run = try Self.queueSignal(
                    toRun: id, name: name, framed: framed, operation: "signals", now: Date().journalMillis, db)
                var draft = record(run)
                draft.target = target
                return .sent(run: run, entry: try Self.insertAudit([draft], db)[0])
            }
        }
    }

    /// Queues a signal for the open run `id` names (a run ID, or a workflow ID's newest run) inside the
    /// caller's transaction. - Returns: that run.
    static func queueSignal(
        toRun id: String, name: String, framed: Data?, operation: String, now: Int64, _ db: Database
    ) throws -> RunRecord {
        guard let row = try Row.fetchOne(
            db,
            sql: """
                SELECT \(runColumns) FROM runs WHERE run_id = ?1
                UNION ALL SELECT * FROM (SELECT \(runColumns) FROM runs WHERE workflow_id = ?1
                    ORDER BY id DESC LIMIT 1)
                LIMIT 1
                """,
            arguments: [id])
        else { throw JournalError(.runNotFound(id)) }
        let (key, run) = try runRow(row)
        guard run.status.isOpen else {
            throw JournalError(.runClosed(runID: run.runID, status: run.status.rawValue, operation: operation))
        }
        try db.execute(
            sql: "INSERT INTO signals (run, name, data, sent_at, sum) VALUES (?, ?, ?, ?, ?)",
            arguments: [key, name, framed, now, RowChecksum.signal(run: key, name: name, sentAt: now, data: framed)])
        return run
    }

    package func terminateRun(_ runID: String, reason: String, expected lease: RunLease, notice: RunNotice?) async throws -> Bool {
        let (termination, framed) = try payloads.seal(RunTermination(runID: runID, reason: reason, expected: lease, notice: notice))
        return try await write { db in try Self.terminate(termination, framedReason: framed, db) }
    }

    package func replaceRun(
        _ termination: RunTermination, with run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal]
    ) async throws -> Bool {
        let (termination, framed) = try payloads.seal(termination)
        let replacement = try payloads.frame(run.runID, events: events, signals: signals)
        return try await write { db in
            guard try Self.terminate(termination, framedReason: framed, db) else { return false }
            try Self.insert(run, replacement, db)
            return true
        }
    }

    /// Ends the open run as terminated, if its lease is still as expected. - Returns: whether it did.
    static func terminate(_ termination: RunTermination, framedReason: Data, _ db: Database) throws -> Bool {
        let runID = termination.runID
        guard let row = try Row.fetchOne(
            db, sql: "SELECT id, status, lease_owner, lease_expires_at FROM runs WHERE run_id = ?", arguments: [runID])
        else { return false }
        let stored = StoredRow(row: row) { JournalError(.corruptRun(runID: runID, reason: $0)) }
        let key = try stored.integer(0, "id")
        guard RunStatus(rawValue: try stored.text(1, "status"))?.isOpen == true,
            RunLease(try stored.optionalText(2, "lease_owner"), try stored.optionalInteger(3, "lease_expires_at"))
                == termination.expected
        else { return false }
        let last = try Row.fetchOne(db, sql: "SELECT MAX(idx) FROM events WHERE run = ?", arguments: [key])
        let next = Int(try last.map { try StoredRow(row: $0) { JournalError(.corruptRun(runID: runID, reason: $0)) }
            .optionalInteger(0, "idx", in: Self.countRange) ?? -1 } ?? -1) + 1
        let now = Date().journalMillis
        let kind = EventKind.workflowTerminated.rawValue
        try db.execute(
            sql: "INSERT INTO events (run, idx, kind, time, seq, attempt, name, data, meta, sum) VALUES (?,?,?,?,0,0,NULL,?,NULL,?)",
            arguments: [key, next, kind, now, framedReason, RowChecksum.event(
                run: key, index: next, kind: kind, time: now, seq: 0, attempt: 0, name: nil, data: framedReason, meta: nil)])
        try db.execute(
            sql: """
                UPDATE runs SET status = 'terminated', error = ?1, updated_at = ?2, closed_at = ?2,
                    lease_owner = NULL, lease_expires_at = NULL,
                    sum = durable_run_resum(sum, run_id, workflow_id, workflow_type, created_at, seed, error, ?1)
                WHERE id = ?3
                """,
            arguments: [termination.reason, now, key])
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
        let any = try await read { db in
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'pending' AND workflow_type IN (\(types)))",
                arguments: StatementArguments(workflowTypes)) ?? false
        }
        guard any else { return [] }
        arguments += [limit]
        return try await write { [arguments] db in
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
        return try await writeGrouped(about: runID) { db, now in
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
    ///
    /// The leases are extended a slice of runs at a time (``renewalSlice(_:)``), each slice in one of
    /// the writer's group commits beside the runs' batches: in one transaction of its own, the
    /// renewal of 10,000 leases held SQLite's one writer for 20-40 ms every third of a lease, and
    /// every commit queued behind it waited as long (a million waiting runs, 10,000 of them cached).
    /// The runs are those this worker held when the renewal began; a lease taken later ends after
    /// this renewal's anyway.
    @discardableResult
    package func renewLeases() async throws -> Int {
        guard let lease else { return 0 }
        let start = Date().journalMillis
        let keys = try await read { db in
            try Int64.fetchAll(
                db.cachedStatement(sql: """
                    SELECT id FROM runs INDEXED BY runs_leased WHERE lease_owner = ? AND status IN ('running','held')
                    ORDER BY id
                    """),
                arguments: [lease.owner])
        }
        var held = 0
        let slice = Self.renewalSlice(keys.count)
        for first in stride(from: 0, to: keys.count, by: slice) {
            let range = [keys[first], keys[min(first + slice, keys.count) - 1]]
            held += try await writeGrouped(about: "(lease renewal)") { db, _ in
                try db.cachedStatement(sql: """
                    UPDATE runs INDEXED BY runs_leased SET lease_expires_at = ?
                    WHERE lease_owner = ? AND id >= ? AND id <= ? AND status IN ('running','held')
                    """
                ).execute(arguments: [start + lease.durationMs, lease.owner, range[0], range[1]])
                return db.changesCount
            }
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

    /// How many leases one commit of a renewal extends: 512, or more when more than 32 slices of 512
    /// would be needed, so that a renewal takes at most 32 commits and ends well within its lease.
    static func renewalSlice(_ leases: Int) -> Int { max(512, (leases + 31) / 32) }

    package var leaseChainBroken: Bool { renewals.withLock { $0.broken } }

    package func runsLeasedHere() async throws -> [String] {
        guard let lease else { return [] }
        return try await read { db in
            try String.fetchAll(
                db, sql: "SELECT run_id FROM runs WHERE lease_owner = ? AND status IN \(RunStatus.openStatusesSQL)",
                arguments: [lease.owner])
        }
    }

    package func leases(ofRuns runIDs: [String]) async throws -> [String: (owner: String?, status: RunStatus)] {
        try await read { db in
            var leases: [String: (owner: String?, status: RunStatus)] = [:]
            for start in stride(from: 0, to: runIDs.count, by: 500) {
                let chunk = Array(runIDs[start..<min(start + 500, runIDs.count)])
                let rows = try Row.fetchAll(
                    db,
                    sql: "SELECT run_id, lease_owner, status FROM runs WHERE run_id IN (\(chunk.map { _ in "?" }.joined(separator: ",")))",
                    arguments: StatementArguments(chunk))
                for row in rows {
                    let stored = StoredRow(row: row) { JournalError(.corruptRun(runID: "\(row[0] as DatabaseValue)", reason: $0)) }
                    if let status = RunStatus(rawValue: try stored.text(2, "status")) {
                        leases[try stored.text(0, "run_id")] = (try stored.optionalText(1, "lease_owner"), status)
                    }
                }
            }
            return leases
        }
    }

    package func releaseLeases() async throws {
        guard let lease else { return }
        renewals.withLock { $0.broken = true }
        writer.leasesSafeUntil.store(0, ordering: .releasing)
        try await write { db in
            try db.execute(
                sql: "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?",
                arguments: [lease.owner])
        }
    }

    package func releaseLease(runID: String) async throws {
        guard let lease else { return }
        try await write { db in
            try db.execute(
                sql: "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE run_id = ? AND lease_owner = ?",
                arguments: [runID, lease.owner])
        }
    }

    package func leaseOwners() async throws -> [String: Int] {
        try await read { db in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT lease_owner, count(*) FROM runs INDEXED BY runs_leased WHERE lease_owner IS NOT NULL AND status = 'running' GROUP BY 1")
            var owners: [String: Int] = [:]
            for row in rows {
                if case .string(let owner) = (row[0] as DatabaseValue).storage, case .int64(let count) = (row[1] as DatabaseValue).storage {
                    owners[owner, default: 0] += Int(count)
                }
            }
            return owners
        }
    }

    package func runsToTakeOver(deadOwners: [String], limit: Int) async throws -> [RunRecord] {
        guard let lease else { return [] }
        let dead = deadOwners.map { _ in "?" }.joined(separator: ",")
        var arguments: StatementArguments = [Date().journalMillis, lease.owner]
        arguments += StatementArguments(deadOwners)
        return try await read { [arguments] db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.runColumns) FROM runs INDEXED BY runs_busy WHERE status = 'running' AND wake_at IS NULL
                        AND (lease_owner IS NULL OR (lease_expires_at < ? AND lease_owner != ?)
                            \(deadOwners.isEmpty ? "" : "OR lease_owner IN (\(dead))"))
                    ORDER BY id LIMIT \(max(0, limit))
                    """,
                arguments: arguments
            ).map(Self.runRecord)
        }
    }

    // MARK: - Due-time index

    package func runsToResume() async throws -> [RunRecord] {
        try await read { db in
            // Two index ranges (`runs_busy`, `runs_status`), not a pass over every running run. (A journal
            // has no `ANALYZE` statistics: without `INDEXED BY` the planner takes `runs_status`, which
            // holds every running run.)
            try Row.fetchAll(
                db,
                sql: "SELECT \(Self.runColumns) FROM runs INDEXED BY runs_busy WHERE status = 'running' AND wake_at IS NULL ORDER BY id"
            ).map(Self.runRecord)
                + Row.fetchAll(db, sql: "SELECT \(Self.runColumns) FROM runs WHERE status = 'held' ORDER BY id")
                .map(Self.runRecord)
        }
    }

    package func dueRuns(before date: Date, limit: Int) async throws -> [RunRecord] {
        try await read { [self] db in
            try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT \(Self.runColumns) FROM runs INDEXED BY runs_waiting
                    WHERE status = 'running' AND wake_at IS NOT NULL AND wake_at <= ? AND lease_owner IS NOT ?
                    ORDER BY wake_at LIMIT ?
                    """),
                arguments: [date.journalMillis, lease?.owner, max(0, limit)]
            ).map(Self.runRecord)
        }
    }

    package func nextWake(after date: Date) async throws -> Date? {
        try await read { [self] db in
            try Int64.fetchOne(
                db.cachedStatement(sql: """
                    SELECT min(wake_at) FROM runs INDEXED BY runs_waiting
                    WHERE status = 'running' AND wake_at IS NOT NULL AND wake_at > ? AND wake_at < ?
                        AND lease_owner IS NOT ?
                    """),
                arguments: [date.journalMillis, Int64.max, lease?.owner]
            ).map { Date(journalMillis: $0) }
        }
    }

    package func hasWaitingRuns() async throws -> Bool {
        try await read { db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM runs INDEXED BY runs_waiting WHERE status = 'running' AND wake_at IS NOT NULL)
                """) ?? false
        }
    }

    package func waitingRunsWithSignals(limit: Int) async throws -> [RunRecord] {
        // CROSS JOIN keeps `signals` (a few rows) the outer loop: otherwise the planner may walk every
        // waiting run through `runs_waiting` and look each one up in `signals`.
        try await read { db in
            try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT \(Self.runColumns) FROM runs WHERE id IN (
                        SELECT signals.run FROM signals CROSS JOIN runs ON runs.id = signals.run
                        WHERE runs.status = 'running' AND runs.wake_at IS NOT NULL
                        GROUP BY signals.run ORDER BY min(signals.id) LIMIT ?)
                    """),
                arguments: [max(0, limit)]
            ).map(Self.runRecord)
        }
    }

    package func queuedSignals(
        including include: @escaping @Sendable (_ runID: String, _ name: String) -> Bool
    ) async throws -> [QueuedSignal] {
        try await read { [self] db in
            // A cursor: the payload of a signal left out is never read (SQLite reads a column, and its
            // overflow pages, only when asked for it).
            var signals: [QueuedSignal] = []
            // A damaged or unreadable signal is left queued (journal check names it).
            let rows = try Row.fetchCursor(db, sql: """
                SELECT \(Self.signalColumns), runs.run_id
                FROM signals JOIN runs ON runs.id = signals.run ORDER BY signals.id
                """)
            while let row = try rows.next() {
                guard case .string(let runID) = (row[6] as DatabaseValue).storage,
                    case .string(let name) = (row[2] as DatabaseValue).storage, include(runID, name),
                    let signal = try? Self.signal(row, runID: runID, payloads: payloads), signal.unverifiedKey == nil
                else { continue }
                signals.append(QueuedSignal(id: signal.id, runID: runID, name: name, data: signal.data, sentAt: signal.sentAt))
            }
            return signals
        }
    }

    package func queuedSignalNames(runID: String) async throws -> [String] {
        try await read { db in
            try Row.fetchAll(
                db, sql: "SELECT name FROM signals WHERE run = (SELECT id FROM runs WHERE run_id = ?) ORDER BY id",
                arguments: [runID]
            ).map { row in
                try StoredRow(row: row) { JournalError(.corruptRun(runID: runID, reason: "queued signal: \($0)")) }.text(0, "name")
            }
        }
    }

    // MARK: - Reading

    package func findRun(_ id: String) async throws -> RunRecord? {
        // Cached statements: the HTTP server looks a run up at least once per request, and preparing
        // the statement each time cost about half of the lookup.
        try await read { db in
            if let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT \(Self.runColumns) FROM runs WHERE run_id = ?"), arguments: [id])
            {
                return try Self.runRecord(row)
            }
            return try Row.fetchOne(
                db.cachedStatement(sql: "SELECT \(Self.runColumns) FROM runs WHERE workflow_id = ? ORDER BY id DESC LIMIT 1"),
                arguments: [id]
            ).map(Self.runRecord)
        }
    }

    package func openRun(workflowID: String) async throws -> RunRecord? {
        try await read { db in
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
        try await read { db in
            guard let key = try Self.key(of: run.runID, db) else { return 0 }
            let rows = try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE run = ?", arguments: [key]) ?? 0
            if rows > 0 { return rows }
            guard let packed = try Row.fetchOne(db, sql: "SELECT events FROM packed_histories WHERE run = ?", arguments: [key])
            else { return 0 }
            return try StoredRow(row: packed) { JournalError(.corruptRun(runID: run.runID, reason: "packed history: \($0)")) }
                .int(0, "events", in: Self.countRange)
        }
    }

    package func history(_ run: RunRecord, from index: Int) async throws -> [HistoryEvent] {
        try await read { [self] db in
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
            db, sql: "SELECT \(eventColumns) FROM events WHERE run = ? AND idx >= ? ORDER BY idx", arguments: [key, index])
        if rows.isEmpty, let packed = try Row.fetchOne(
            db, sql: "SELECT data FROM packed_histories WHERE run = ?", arguments: [key])
        {
            let block = try StoredRow(row: packed) { JournalError(.corruptRun(runID: run.runID, reason: "packed history: \($0)")) }
                .blob(0, "data")
            return Array(try HistoryPack.decode(block, runID: run.runID, payloads: payloads, outOfLine: outOfLine(db)).dropFirst(index))
        }
        var events: [HistoryEvent] = []
        events.reserveCapacity(rows.count)
        for row in rows {
            let event = try Self.event(row, key: key, runID: run.runID, label: index + events.count, payloads: payloads, db)
            if event.index != index + events.count {
                throw JournalError(.corruptEvent(
                    runID: run.runID, index: index + events.count, reason: "event is missing (next is \(event.index))"))
            }
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
        try await offloaded { [self] in try writerSynchronous() >= 2 ? .full : .fast }
    }

    /// Transactions the group-commit writer has committed since the journal was opened.
    package var commitCount: Int { writer.commits.load(ordering: .relaxed) }

    /// Moves the WAL's contents into the database file and truncates the WAL.
    package func checkpoint() async throws {
        try await offloaded { [self] in try writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) } }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T { try mappingErrors { try pool.read(body) } }

    /// Where the async functions run their blocking GRDB calls: threads of their own, not Swift's
    /// cooperative ones. A call that waits (for the write lock while the group-commit writer syncs, for
    /// a reader) would otherwise hold one of the few cooperative threads (two on a two-core machine),
    /// and every task of the process would wait with it.
    private static let blockingCalls = DispatchQueue(label: "durable.sqlite.calls", attributes: .concurrent)

    /// `body` on ``blockingCalls``; the caller's task waits without holding a thread.
    func offloaded<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await Self.offloaded(body)
    }

    private static func offloaded<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            blockingCalls.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// ``init(_:lease:)`` off the cooperative threads: opening a journal syncs its file (setting up
    /// WAL mode, the schema), which can take seconds on a busy disk.
    package static func open(_ configuration: JournalConfiguration, lease: LeaseSettings? = nil) async throws -> SQLiteJournal {
        try await offloaded { try SQLiteJournal(configuration, lease: lease) }
    }

    /// ``read(_:)`` off the cooperative threads.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await offloaded { try self.read(body) }
    }

    /// ``write(_:)`` off the cooperative threads.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await offloaded { try self.write(body) }
    }

    /// `body` written in the writer's next group commit (``GroupCommitWriter/submit(_:about:completion:)``):
    /// concurrent callers, and the runs' batches, share its transaction. `now` is the transaction's time.
    func writeGrouped<T: Sendable>(
        about runID: String, _ body: @escaping @Sendable (_ db: Database, _ now: Int64) throws -> T
    ) async throws -> T {
        let value = Mutex<T?>(nil)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            writer.submit({ db, now in
                let result = try body(db, now)
                value.withLock { $0 = result }
            }, about: runID) { continuation.resume(with: $0) }
        }
        guard let result = value.withLock({ $0 }) else {
            throw JournalError(.storage(reason: "\(path): a write about run \(runID) committed without its result"))
        }
        return result
    }

    /// GRDB's blocking `write`, without this journal's error mapping (the caller maps errors).
    func writeSync<T>(_ body: (Database) throws -> T) throws -> T { try pool.write(body) }

    /// GRDB's blocking `writeWithoutTransaction` (async callers would otherwise get GRDB's async one).
    func writeWithoutTransaction(_ body: (Database) throws -> Void) throws { try pool.writeWithoutTransaction(body) }

    func write<T>(_ body: (Database) throws -> T) throws -> T { try mappingErrors { try pool.write(body) } }

    /// A write transaction (`IMMEDIATE`: it holds the file's write lock from its first statement)
    /// committed at `full` durability, synced to disk, even in a journal opened `fast`.
    func writeDurably<T>(_ body: (Database) throws -> T) throws -> T {
        try mappingErrors {
            try pool.writeWithoutTransaction { db in
                let fast = durability != .full
                if fast { try db.execute(sql: "PRAGMA synchronous = FULL") }
                defer { if fast { try? db.execute(sql: "PRAGMA synchronous = NORMAL") } }
                try db.execute(sql: "BEGIN IMMEDIATE")
                do {
                    let value = try body(db)
                    try db.execute(sql: "COMMIT")
                    return value
                } catch {
                    if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK") }
                    throw error
                }
            }
        }
    }

    /// Runs `body`, turning GRDB's errors into ``JournalError`` `storage` naming the file.
    private func mappingErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as JournalError {
            throw error
        } catch let error as DatabaseError {
            throw JournalError(.storage(reason: "\(path): \(error.message ?? error.description)"))
        } catch {
            throw JournalError(.storage(reason: "\(path): \(error)"))
        }
    }
}

extension RunStatus {
    /// The open statuses as an SQL list.
    static let openStatusesSQL = "('pending','running','held')"
}
