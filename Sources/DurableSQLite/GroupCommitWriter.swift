import Dispatch
import DurableJournal
import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Writes ``JournalBatch``es with group commit: one transaction (one fsync) for every batch that
/// arrived while the previous transaction was being written. Completions run on the committing
/// thread, which may be any thread that submitted a batch.
///
/// Batches are written in the order they were submitted. In a group of several, each batch runs
/// inside its own savepoint, so one that fails (a workflow ID already in use, a claim lost to another
/// worker) is rolled back alone and the others in its transaction still commit; a group of one batch
/// needs none (if it fails, the transaction is rolled back).
final class GroupCommitWriter: Sendable {
    typealias Completion = @Sendable (Result<Void, any Error>) -> Void

    /// Statements of the journal's own (a signal's insert, a lease's compare-and-set) written in a
    /// group commit like a batch; `now` is the transaction's time.
    typealias Operation = @Sendable (_ db: Database, _ now: Int64) throws -> Void

    private struct Pending: Sendable {
        var batch: JournalBatch
        var completion: Completion
        var operation: Operation?
    }

    private let pool: DatabasePool
    private let lease: LeaseSettings?
    /// The journal commits without syncing each transaction (not `full`): one holding audit entries
    /// is synced all the same.
    private let fast: Bool
    /// Until this time (ms since 1970) none of this worker's leases can have been taken over, so
    /// commits skip the per-run lease check (see ``SQLiteJournal/renewLeases()``); 0 when unknown.
    let leasesSafeUntil = Atomic<Int64>(0)
    private let queue = PendingQueue()
    private let thread = DispatchQueue(label: "durable.journal.writer", qos: .userInitiated)
    /// Transactions committed so far (for tests and benchmarks: batches / commits = sharing).
    let commits = Atomic<Int>(0)

    /// ``GroupQueue``'s rules for this writer's own item type: the generic queue, compiled in another
    /// module, looked up its state's type metadata and copied items through value witnesses on every
    /// call, about 3,000 instructions per step (Docs/benchmarks.md, "CPU per step").
    private final class PendingQueue: Sendable {
        private struct State {
            var items: [Pending] = []
            var flushing = false
        }

        private let state = Mutex(State())

        /// Queues `item`; `true` when no flush was running, so the caller must start one.
        func enqueue(_ item: Pending) -> Bool {
            state.withLock { state in
                state.items.append(item)
                if state.flushing { return false }
                state.flushing = true
                return true
            }
        }

        /// Everything queued, in arrival order, for the next group; empty when nothing is, which ends
        /// the flush (the next ``enqueue(_:)`` starts another).
        func nextGroup() -> [Pending] {
            state.withLock { state in
                let group = state.items
                state.items.removeAll(keepingCapacity: true)
                if group.isEmpty { state.flushing = false }
                return group
            }
        }

        /// Ends the flush when nothing is queued; `true` when items wait, and the flush goes on.
        func hasMore() -> Bool {
            state.withLock { state in
                if state.items.isEmpty { state.flushing = false }
                return !state.items.isEmpty
            }
        }
    }

    init(pool: DatabasePool, lease: LeaseSettings?, fast: Bool) {
        self.pool = pool
        self.lease = lease
        self.fast = fast
    }

    /// Queues a batch. If no commit is in progress, the caller's thread writes it at once: no thread
    /// hop on the critical path of a sequential workflow's step. Batches that arrive while a commit is
    /// in progress wait for the next transaction, which the writer thread takes over, so that under
    /// load the callers (cooperative threads running workflows) are not kept waiting on the disk.
    /// - Parameter inline: `false` to leave the commit to the writer thread even when the journal is
    ///   idle (for callers that await the commit anyway and gain nothing from committing themselves).
    func submit(_ batch: JournalBatch, inline: Bool = true, completion: @escaping Completion) {
        enqueue(Pending(batch: batch, completion: completion), inline: inline)
    }

    /// Queues `operation` for the next group commit, committed by the writer thread: concurrent
    /// callers, and the batches of the runs, share its transaction and fsync. In a group of several it
    /// runs in a savepoint of its own, as a batch does; `runID` names the run it is about in errors.
    func submit(_ operation: @escaping Operation, about runID: String, completion: @escaping Completion) {
        enqueue(Pending(batch: JournalBatch(run: RunRef(runID: runID)), completion: completion, operation: operation), inline: false)
    }

    private func enqueue(_ pending: Pending, inline: Bool) {
        guard queue.enqueue(pending) else { return }
        if inline {
            flush(onCallersThread: true)
        } else {
            thread.async { self.flush(onCallersThread: false) }
        }
    }

    private func flush(onCallersThread: Bool) {
        while true {
            let group = queue.nextGroup()
            if group.isEmpty { return }
            let results = write(group)
            if onCallersThread {
                // Hand over before the completions run: they dispatch activities, and one may start
                // running on this thread; commits must not wait for it.
                if queue.hasMore() { thread.async { self.flush(onCallersThread: false) } }
            }
            for (pending, result) in zip(group, results) {
                pending.completion(result)
            }
            if onCallersThread { return }
        }
    }

    /// Writes the batches of `group` (read where they are, not copied into an array of their own).
    private func write(_ group: [Pending]) -> [Result<Void, any Error>] {
        var results = [Result<Void, any Error>](repeating: .success(()), count: group.count)
        let syncAudit = fast && group.contains { $0.batch.audit != nil }
        do {
            try pool.writeWithoutTransaction { db in
                if syncAudit { try db.execute(sql: "PRAGMA synchronous = FULL") }
                defer { if syncAudit { try? db.execute(sql: "PRAGMA synchronous = NORMAL") } }
                // BEGIN and COMMIT as cached statements: `inTransaction` parses and prepares them again
                // for every transaction, an eighth of a step's instructions (Docs/benchmarks.md, "CPU
                // per step"). On an error, the rollback is GRDB's, as `inTransaction` does it.
                try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
                do {
                    let now = Date().journalMillis
                    // A group of one batch (a sequential workflow's step) runs without a savepoint: if
                    // it fails, the whole transaction is rolled back, which leaves the same as rolling
                    // back to the savepoint and committing nothing.
                    let single = group.count == 1
                    let savepoint = single ? nil : try db.cachedStatement(sql: "SAVEPOINT batch")
                    let release = single ? nil : try db.cachedStatement(sql: "RELEASE batch")
                    // A run whose batch failed writes nothing more in this group: its later batches
                    // would leave a gap in its event indexes.
                    var failedRuns: Set<ObjectIdentifier> = []
                    var audit: [AuditDraft] = []
                    for i in group.indices {
                        let batch = group[i].batch
                        if failedRuns.contains(ObjectIdentifier(batch.run)) {
                            results[i] = .failure(JournalError(.conflict(
                                runID: batch.run.runID, reason: "an earlier write of the run failed")))
                            continue
                        }
                        try savepoint?.execute()
                        do {
                            if let operation = group[i].operation {
                                try operation(db, now)
                            } else {
                                try Self.apply(
                                    batch, db, now: now, lease: lease,
                                    checkLease: now >= leasesSafeUntil.load(ordering: .acquiring))
                            }
                            try release?.execute()
                            if let draft = batch.audit { audit.append(draft) }
                        } catch where single {
                            try db.rollback()
                            results[i] = .failure(Self.describe(error, batch, db))
                            return
                        } catch {
                            try db.cachedStatement(sql: "ROLLBACK TO batch").execute()
                            try release?.execute()
                            results[i] = .failure(Self.describe(error, batch, db))
                            failedRuns.insert(ObjectIdentifier(batch.run))
                        }
                    }
                    // The entries of the batches written, in their order: if they cannot be appended
                    // (a damaged chain), nothing of the group is written.
                    if !audit.isEmpty { _ = try SQLiteJournal.insertAudit(audit, db) }
                    try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
                } catch {
                    // What SQLite has not rolled back itself (a full disk, say, may have).
                    try? db.rollback()
                    throw error
                }
            }
            commits.add(1, ordering: .relaxed)
        } catch {
            let failure = JournalError(.storage(reason: "commit failed: \(error)"))
            return group.map { _ in .failure(failure) }
        }
        return results
    }

    private static func apply(
        _ batch: JournalBatch, _ db: Database, now: Int64, lease: LeaseSettings?, checkLease: Bool
    ) throws {
        let runID = batch.run.runID
        if batch.isEmpty { return }
        if let newRun = batch.newRun {
            // A run started here to be driven here is leased at once; a pending one waits for a claim.
            let leased = newRun.status == .running ? lease : nil
            try db.cachedStatement(
                sql: """
                    INSERT INTO runs (run_id, workflow_id, workflow_type, status, created_at, updated_at, seed,
                        lease_owner, lease_expires_at, sum)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                runID, newRun.workflowID, newRun.workflowType, newRun.status.rawValue,
                newRun.createdAt.journalMillis, now, Int64(bitPattern: newRun.seed),
                leased?.owner, leased.map { now + $0.durationMs }, runSum(runID, newRun),
            ])
            batch.run.storageKey = db.lastInsertedRowID
        }
        let key: Int64
        if let known = batch.run.storageKey {
            key = known
        } else {
            guard let found = try SQLiteJournal.key(of: runID, db) else {
                throw JournalError(.conflict(runID: runID, reason: "run was never written to the journal"))
            }
            key = found
            batch.run.storageKey = found
        }
        if checkLease, batch.newRun == nil, let lease, !batch.events.isEmpty || batch.statusChange != nil || batch.wake != nil {
            // Fencing: only the lease holder writes a run's history. A worker whose lease was taken
            // over (it stalled past the expiry) finds out here and writes nothing more.
            let owner = try String.fetchOne(
                db.cachedStatement(sql: "SELECT lease_owner FROM runs WHERE id = ?"), arguments: [key])
            if owner != lease.owner {
                throw owner.map { JournalError.leaseLost(runID: runID, to: "worker \($0)") }
                    ?? JournalError(.conflict(runID: runID, reason: "this worker does not hold the run's lease"))
            }
        }
        if !batch.events.isEmpty {
            // Two rows per statement: a step writes two events (the activity's result, the next schedule).
            var rest = batch.events[...]
            while !rest.isEmpty {
                let rows = rest.prefix(2)
                try Self.insert(
                    rows, run: key, with: db.cachedStatement(sql: rows.count == 2 ? insertTwoEvents : insertEvent), db)
                for event in rows {
                    if let payload = event.outOfLine { try SQLiteJournal.storeOutOfLine(payload, run: key, db, now: now) }
                }
                rest = rest.dropFirst(rows.count)
            }
        }
        if let wake = batch.wake {
            try db.cachedStatement(sql: "UPDATE runs SET wake_at = ? WHERE id = ?").execute(arguments: [wake.storedMillis, key])
        }
        if batch.releasesLease, let lease {
            try db.cachedStatement(
                sql: "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?"
            ).execute(arguments: [key, lease.owner])
        }
        if let signal = batch.deliveredSignal {
            try db.cachedStatement(sql: "DELETE FROM signals WHERE id = ?").execute(arguments: [signal])
            if db.changesCount != 1 {
                throw JournalError(.conflict(runID: runID, reason: "signal \(signal) was delivered already"))
            }
        }
        if let change = batch.statusChange {
            try db.cachedStatement(
                sql: """
                    UPDATE runs SET status = ?, error = ?, updated_at = ?,
                        closed_at = CASE WHEN ?4 THEN ?5 ELSE NULL END,
                        lease_owner = CASE WHEN ?1 = 'running' THEN lease_owner END,
                        lease_expires_at = CASE WHEN ?1 = 'running' THEN lease_expires_at END,
                        sum = CASE WHEN error IS ?2 THEN sum
                            ELSE durable_run_resum(sum, run_id, workflow_id, workflow_type, created_at, seed, error, ?2) END
                    WHERE id = ?6 AND status IN \(RunStatus.openStatusesSQL)
                    """
            ).execute(arguments: [change.status.rawValue, change.error, now, !change.status.isOpen, now, key])
            if db.changesCount != 1 {  // ended meanwhile (terminated from outside): nothing more is written
                throw JournalError(.conflict(runID: runID, reason: "the run has already ended"))
            }
            if !change.status.isOpen && batch.continuation == nil {  // signals nobody will receive any more
                try db.cachedStatement(sql: "DELETE FROM signals WHERE run = ?").execute(arguments: [key])
            }
        }
        for (childRunID, child, started) in batch.childRuns {
            try insertRun(childRunID, child, started, db, now: now)
        }
        if let notice = batch.notice {
            try Self.queue(notice, db, now: now)
        }
        if let (nextRunID, next, started) = batch.continuation {
            let nextKey = try insertRun(nextRunID, next, started, db, now: now)
            // Signals not taken yet go to the next run.
            try db.cachedStatement(sql: "UPDATE signals SET run = ?1, sum = durable_signal_resum(sum, run, name, sent_at, data, ?1) WHERE run = ?2")
                .execute(arguments: [nextKey, key])
        }
    }

    /// Inserts a new pending run and its `WorkflowStarted` event. - Returns: its key.
    @discardableResult
    private static func insertRun(
        _ runID: String, _ run: JournalBatch.NewRun, _ started: EventDraft, _ db: Database, now: Int64
    ) throws -> Int64 {
        try db.cachedStatement(
            sql: """
                INSERT INTO runs (run_id, workflow_id, workflow_type, status, created_at, updated_at, seed, sum)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            runID, run.workflowID, run.workflowType, run.status.rawValue, run.createdAt.journalMillis, now,
            Int64(bitPattern: run.seed), runSum(runID, run),
        ])
        let key = db.lastInsertedRowID
        var first = started
        (first.index, first.seq, first.attempt) = (0, 0, 0)
        try db.cachedStatement(sql: insertEvent).execute(arguments: eventArguments(key, first))
        if let payload = first.outOfLine { try SQLiteJournal.storeOutOfLine(payload, run: key, db, now: now) }
        return key
    }

    static let insertEvent =
        "INSERT INTO events (run, idx, kind, time, seq, attempt, name, data, meta, sum) VALUES (?,?,?,?,?,?,?,?,?,?)"
    /// ``insertEvent`` for two rows.
    static let insertTwoEvents =
        "INSERT INTO events (run, idx, kind, time, seq, attempt, name, data, meta, sum) VALUES (?,?,?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?,?,?)"

    /// The arguments of ``insertEvent`` for an event of the run with key `key`, its checksum with them.
    static func eventArguments(_ key: Int64, _ event: EventDraft) -> StatementArguments {
        let time = event.time.journalMillis
        let sum = RowChecksum.event(
            run: key, index: event.index, kind: event.kind.rawValue, time: time, seq: event.seq, attempt: event.attempt,
            name: event.name, data: event.data, meta: event.meta)
        return [key, event.index, event.kind.rawValue, time, event.seq, event.attempt, event.name, event.data, event.meta, sum]
    }

    /// Inserts the rows of `events` (one or two) of the run with key `key` with `statement`
    /// (``insertEvent``, or ``insertTwoEvents`` for two): the values of ``eventArguments(_:_:)``, bound
    /// to the statement directly. `StatementArguments` box each of the ten values of a row and GRDB
    /// checks them on every execution, about 6,000 instructions per row, more than SQLite's own work;
    /// and a step writes two events, which one statement inserts for less than two
    /// (Docs/benchmarks.md, "CPU per step"). The values bind as GRDB binds them (integers, text up to
    /// its first NUL, blobs), and the rows are inserted in order, so the rows are the same. No
    /// transaction observer watches the journal's connection, so the statement does not need GRDB's
    /// execution hooks.
    static func insert(
        _ events: ArraySlice<EventDraft>, run key: Int64, with statement: Statement, _ db: Database
    ) throws {
        let handle = statement.sqliteStatement
        sqlite3_reset(handle)  // the previous execution's result was checked then
        var code = bindAndStep(events, run: key, handle, from: 0)
        if code == SQLITE_DONE { code = SQLITE_OK }
        // Text and blobs were bound without a copy, for the time of the step only.
        sqlite3_clear_bindings(handle)
        if code != SQLITE_OK {
            let error = DatabaseError(resultCode: ResultCode(rawValue: code), message: db.lastErrorMessage, sql: statement.sql)
            // GRDB resets a cached statement before it runs it again, and would throw this error then.
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Binds the rows of `events` from parameter `from` + 1 on (ten per row), then steps the statement
    /// while the text and blobs bound without a copy are still alive; returns the step's result code,
    /// or that of the binding that failed.
    private static func bindAndStep(
        _ events: ArraySlice<EventDraft>, run key: Int64, _ handle: SQLiteStatement, from base: CInt
    ) -> CInt {
        guard let event = events.first else { return sqlite3_step(handle) }
        let time = event.time.journalMillis
        let sum = RowChecksum.event(
            run: key, index: event.index, kind: event.kind.rawValue, time: time, seq: event.seq, attempt: event.attempt,
            name: event.name, data: event.data, meta: event.meta)
        var code = sqlite3_bind_int64(handle, base + 1, key)
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, base + 2, Int64(event.index)) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, base + 3, Int64(event.kind.rawValue)) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, base + 4, time) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, base + 5, Int64(event.seq)) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, base + 6, Int64(event.attempt)) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, base + 10, sum) }
        guard code == SQLITE_OK else { return code }
        return bindingText(event.name, handle, base + 7) {
            bindingBlob(event.data, handle, base + 8) {
                bindingBlob(event.meta, handle, base + 9) {
                    bindAndStep(events.dropFirst(), run: key, handle, from: base + 10)
                }
            }
        }
    }

    /// Binds `text` (or NULL) at `index` for the time of `body`, as GRDB binds a string; returns `body`'s
    /// result code, or the binding's if it failed.
    private static func bindingText(
        _ text: String?, _ handle: SQLiteStatement, _ index: CInt, _ body: () -> CInt
    ) -> CInt {
        guard let text else {
            let code = sqlite3_bind_null(handle, index)
            return code == SQLITE_OK ? body() : code
        }
        return text.withCString { pointer in
            let code = sqlite3_bind_text(handle, index, pointer, -1, nil)
            return code == SQLITE_OK ? body() : code
        }
    }

    /// Binds `blob` (or NULL) at `index` for the time of `body`, as GRDB binds `Data`; returns `body`'s
    /// result code, or the binding's if it failed.
    private static func bindingBlob(
        _ blob: Data?, _ handle: SQLiteStatement, _ index: CInt, _ body: () -> CInt
    ) -> CInt {
        guard let blob else {
            let code = sqlite3_bind_null(handle, index)
            return code == SQLITE_OK ? body() : code
        }
        return blob.withUnsafeBytes { bytes in
            let code = sqlite3_bind_blob(handle, index, bytes.baseAddress, CInt(bytes.count), nil)
            return code == SQLITE_OK ? body() : code
        }
    }

    /// The checksum of a new run's row (no error yet).
    static func runSum(_ runID: String, _ run: JournalBatch.NewRun) -> Int64 {
        RowChecksum.run(
            runID: runID, workflowID: run.workflowID, workflowType: run.workflowType, createdAt: run.createdAt.journalMillis,
            seed: Int64(bitPattern: run.seed), error: nil)
    }

    /// Queues a message for another run (if that run is still open).
    static func queue(_ notice: RunNotice, _ db: Database, now: Int64) throws {
        guard let key = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT id FROM runs WHERE run_id = ? AND status IN \(RunStatus.openStatusesSQL)"),
            arguments: [notice.runID])
        else { return }
        let framed = notice.frame ?? PayloadCodec.encode(notice.payload)
        try db.cachedStatement(sql: "INSERT INTO signals (run, name, data, sent_at, sum) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [
                key, notice.name, framed, now, RowChecksum.signal(run: key, name: notice.name, sentAt: now, data: framed),
            ])
    }

    /// Turns a constraint failure on a new run into "workflow ID in use", naming the open run.
    /// Turns a constraint failure on a new run (this one, a child it starts, or its continuation)
    /// into "workflow ID in use", naming the open run.
    private static func describe(_ error: any Error, _ batch: JournalBatch, _ db: Database) -> any Error {
        if let error = error as? JournalError { return error }
        if let dbError = error as? DatabaseError, dbError.resultCode == .SQLITE_CONSTRAINT {
            let workflowIDs = [batch.newRun?.workflowID].compactMap { $0 } + batch.childRuns.map(\.run.workflowID)
            for workflowID in workflowIDs {
                if let existing = try? String.fetchOne(
                    db, sql: "SELECT run_id FROM runs WHERE workflow_id = ? AND status IN \(RunStatus.openStatusesSQL)",
                    arguments: [workflowID])
                {
                    return JournalError(.workflowIDInUse(workflowID: workflowID, runID: existing))
                }
            }
        }
        return JournalError(.storage(reason: "run \(batch.run.runID): \(error)"))
    }
}
