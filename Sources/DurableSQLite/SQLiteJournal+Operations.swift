package import DurableJournal
package import Foundation
import GRDB

extension RunFilter {
    /// The `WHERE` clause (empty when nothing is filtered) and its arguments.
    var clause: (String, StatementArguments) {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let statuses {
            conditions.append("status IN (\(statuses.map { _ in "?" }.joined(separator: ",")))")
            arguments += StatementArguments(statuses.map(\.rawValue))
        }
        if let workflowType {
            conditions.append("workflow_type = ?")
            arguments += [workflowType]
        }
        if let workflowIDPrefix {
            conditions.append("substr(workflow_id, 1, length(?)) = ?")
            arguments += [workflowIDPrefix, workflowIDPrefix]
        }
        if let startedAfter {
            conditions.append("created_at >= ?")
            arguments += [startedAfter.journalMillis]
        }
        if let startedBefore {
            conditions.append("created_at < ?")
            arguments += [startedBefore.journalMillis]
        }
        if let afterRunID {
            conditions.append("id \(oldestFirst ? ">" : "<") (SELECT id FROM runs WHERE run_id = ?)")
            arguments += [afterRunID]
        }
        return (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "), arguments)
    }
}

extension SQLiteJournal {
    // MARK: - Listing

    /// Runs matching `filter`, newest first unless it says otherwise.
    package func runs(_ filter: RunFilter) async throws -> [RunRecord] {
        let (clause, arguments) = filter.clause
        var sql = "SELECT \(Self.runColumns) FROM runs" + clause + (filter.oldestFirst ? " ORDER BY id" : " ORDER BY id DESC")
        if let limit = filter.limit { sql += " LIMIT \(max(0, limit))" }
        return try read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.runRecord) }
    }

    /// How many runs match `filter`, by status (`limit` and order do not apply).
    package func countRuns(_ filter: RunFilter) async throws -> [RunStatus: Int] {
        let (clause, arguments) = filter.clause
        return try read { db in
            var counts: [RunStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, count(*) FROM runs" + clause + " GROUP BY status", arguments: arguments) {
                if let (status, count) = Self.statusCount(row) { counts[status] = count }
            }
            return counts
        }
    }

    // MARK: - Health

    /// Sizes, runs by status, events and payload compression.
    package func stats() async throws -> JournalStats {
        try read { db in
            var stats = JournalStats(
                formatVersion: try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0,
                fileBytes: Self.fileSize(path), walBytes: Self.fileSize(path + "-wal"),
                runsByStatus: [:], events: try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0,
                storedPayloadBytes: 0, rawPayloadBytes: 0,
                queuedSignals: try Int.fetchOne(db, sql: "SELECT count(*) FROM signals") ?? 0, packedRuns: 0)
            for row in try Row.fetchAll(db, sql: "SELECT status, count(*) FROM runs GROUP BY status") {
                if let (status, count) = Self.statusCount(row) { stats.runsByStatus[status] = count }
            }
            let payloads = try Row.fetchCursor(db, sql: "SELECT data FROM events WHERE data IS NOT NULL")
            while let row = try payloads.next() {
                guard case .blob(let blob) = (row[0] as DatabaseValue).storage else { continue }  // damage: check says so
                stats.storedPayloadBytes += blob.count
                stats.rawPayloadBytes += PayloadCodec.decodedLength(blob) ?? blob.count
            }
            // A packed history's block holds its payloads and the rest of its events: all of it counts
            // as stored payload, against the payloads alone as written.
            // total() is a REAL that never overflows; a damaged count is clamped, never trapped on.
            if let packed = try Row.fetchOne(db, sql: """
                SELECT count(*), total(events), total(payload_bytes), total(length(data)) FROM packed_histories
                """)
            {
                func count(_ index: Int) -> Int {
                    switch (packed[index] as DatabaseValue).storage {
                    case .int64(let v): Int(clamping: v)
                    case .double(let v): v.isFinite ? Int(min(max(v, 0), 1e15)) : 0
                    default: 0
                    }
                }
                stats.packedRuns = count(0)
                stats.events += count(1)
                stats.rawPayloadBytes += count(2)
                stats.storedPayloadBytes += count(3)
            }
            (stats.outOfLinePayloads, stats.outOfLineBytes) = try Self.outOfLineTotals(db)
            stats.storedPayloadBytes += stats.outOfLineBytes
            return stats
        }
    }

    /// A `status, count(*)` row, `nil` when the status is not one (damage `check` reports).
    static func statusCount(_ row: Row) -> (RunStatus, Int)? {
        guard case .string(let text) = (row[0] as DatabaseValue).storage, let status = RunStatus(rawValue: text),
            case .int64(let count) = (row[1] as DatabaseValue).storage
        else { return nil }
        return (status, Int(count))
    }

    /// The event that closes a run with each closed status.
    static let closingEvent: [RunStatus: EventKind] = [
        .completed: .workflowCompleted, .failed: .workflowFailed, .cancelled: .workflowCancelled,
        .terminated: .workflowTerminated, .continuedAsNew: .workflowContinuedAsNew,
    ]

    /// Checks the file (`PRAGMA integrity_check`) and every row: each run's record (types, ranges and
    /// checksum), its events (types, ranges, payloads, checksums, indexes without gaps) or packed
    /// history, its status and `closed_at` against its history (a closed run ends with the event
    /// that closes it with that status, an open one with none); queued signals (types, payloads,
    /// checksums, for existing open runs); events and packed histories of runs that do not exist;
    /// the audit log (types, row checksums, numbering and hash chain, ``AuditChainCheck``).
    /// `progress(done, total)` is called every 1,000 runs and at the end.
    package func check(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> JournalCheckReport {
        try read { db in
            var report = JournalCheckReport(
                formatVersion: try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0,
                integrity: try String.fetchAll(db, sql: "PRAGMA integrity_check"))
            func problem(_ text: String) {
                if report.problems.count < 1_000 { report.problems.append(text) }
            }
            /// An error as a problem line: a journal error's text without its "corrupt journal: " lead.
            func problem(_ error: any Error) {
                let text = "\(error)"
                problem(text.hasPrefix("corrupt journal: ") ? String(text.dropFirst("corrupt journal: ".count)) : text)
            }
            let total = try Int.fetchOne(db, sql: "SELECT count(*) FROM runs") ?? 0
            let runs = try Row.fetchCursor(db, sql: "SELECT \(Self.runColumns) FROM runs ORDER BY id")
            let closing = Set(Self.closingEvent.values)
            var openKeys: Set<Int64> = []
            while let row = try runs.next() {
                let key: Int64
                let run: RunRecord
                do {
                    (key, run) = try Self.runRow(row)
                } catch {
                    problem(error)
                    report.runsChecked += 1
                    continue
                }
                if run.status.isOpen { openKeys.insert(key) }
                if run.status.isOpen != (run.closedAt == nil) {
                    problem("run \(run.runID) is \(run.status.rawValue) but its closed_at is "
                        + (run.closedAt == nil ? "not set" : "set"))
                } else if let closedAt = run.closedAt, closedAt < run.createdAt {
                    problem("run \(run.runID) closed (\(closedAt.journalMillis)) before it was created (\(run.createdAt.journalMillis))")
                }
                var expected = 0
                var lastKind: EventKind?
                var readable = true
                let events = try Row.fetchCursor(
                    db, sql: "SELECT \(Self.eventColumns) FROM events WHERE run = ? ORDER BY idx", arguments: [key])
                while let row = try events.next() {
                    report.eventsChecked += 1
                    do {
                        let event = try Self.event(
                            row, key: key, runID: run.runID, label: expected, payloads: payloads.markingMissing, db)
                        report.countUnverified(keyID: event.encryptedData?.keyID)
                        if event.index != expected {
                            problem("run \(run.runID): event \(expected) is missing (next is \(event.index))")
                            readable = false
                        }
                        lastKind = event.kind
                        expected = event.index + 1
                    } catch {
                        problem(error)
                        readable = false
                        lastKind = nil
                        expected += 1
                    }
                }
                if expected == 0, let packed = try Row.fetchOne(
                    db, sql: "SELECT events, payload_bytes, data FROM packed_histories WHERE run = ?", arguments: [key])
                {
                    do {
                        let stored = StoredRow(row: packed) {
                            JournalError(.corruptRun(runID: run.runID, reason: "packed history: \($0)"))
                        }
                        let count = try stored.int(0, "events", in: Self.countRange)
                        let payloadBytes = try stored.integer(1, "payload_bytes", in: 0...Int64.max)
                        // As stored: encrypted payloads and references as their frames (what compaction counted).
                        let events = try HistoryPack.decode(
                            try stored.blob(2, "data"), runID: run.runID, payloads: payloads.keepingEncrypted.keepingReferences)
                        if events.count != count {
                            problem("run \(run.runID): packed history holds \(events.count) events, its record says \(count)")
                        }
                        if HistoryPack.payloadBytes(events) != payloadBytes {
                            problem("run \(run.runID): packed history holds \(HistoryPack.payloadBytes(events)) payload bytes, "
                                + "its record says \(payloadBytes)")
                        }
                        for event in events {
                            guard var frame = event.encryptedData?.frame else { continue }
                            do {
                                if PayloadCodec.isReference(frame) {
                                    frame = try JournalPayloads.resolve(
                                        frame, runID: run.runID, row: "packed event \(event.index) (\(event.kind.name))",
                                        outOfLine: Self.outOfLine(db))
                                }
                                report.countUnverified(keyID: try payloads.verify(frame))
                            } catch let error as JournalError {
                                problem(error)
                            } catch {
                                problem("run \(run.runID): packed history: payload of event \(event.index) unreadable: \(error)")
                            }
                        }
                        expected = events.count
                        lastKind = events.last?.kind
                        report.eventsChecked += events.count
                    } catch {
                        problem(error)
                        readable = false
                    }
                }
                if expected == 0 {
                    if readable { problem("run \(run.runID): no events (not even WorkflowStarted)") }
                } else if readable, let kind = lastKind {
                    if let closedBy = Self.closingEvent[run.status], kind != closedBy {
                        problem("run \(run.runID) is \(run.status.rawValue) but its last event is \(kind.name)")
                    } else if run.status.isOpen, closing.contains(kind) {
                        problem("run \(run.runID) is \(run.status.rawValue) but its last event is \(kind.name), which closes it")
                    }
                }
                report.runsChecked += 1
                if report.runsChecked % 1_000 == 0 { progress(report.runsChecked, total) }
            }
            report.outOfLinePayloadsChecked = try Self.checkOutOfLine(db, problem: problem)
            for (table, what) in [("events", "event row(s)"), ("packed_histories", "packed histories")] {
                let orphans = try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM \(table) WHERE run NOT IN (SELECT id FROM runs)") ?? 0
                if orphans > 0 { problem("\(orphans) \(what) of runs that do not exist") }
            }
            let orphans = try Int.fetchOne(db, sql: "SELECT count(*) FROM signals WHERE run NOT IN (SELECT id FROM runs)") ?? 0
            if orphans > 0 { problem("\(orphans) queued signal(s) for runs that do not exist") }
            let signals = try Row.fetchCursor(db, sql: """
                SELECT \(Self.signalColumns), runs.run_id, runs.id FROM signals JOIN runs ON runs.id = signals.run
                ORDER BY signals.id
                """)
            while let row = try signals.next() {
                let runID = switch (row[6] as DatabaseValue).storage {
                case .string(let text): text
                default: "with key \(StoredRow.storageClass(row[7]))"
                }
                do {
                    let signal = try Self.signal(row, runID: runID, payloads: payloads)
                    report.countUnverified(keyID: signal.unverifiedKey)
                    if case .int64(let key) = (row[7] as DatabaseValue).storage, !openKeys.contains(key) {
                        problem("run \(runID): queued signal \(signal.id) '\(signal.name)' for a run that has ended")
                    }
                } catch {
                    problem(error)
                }
            }
            for row in try Row.fetchAll(db, sql: "SELECT name, registered_at FROM workflow_types") {
                let stored = StoredRow(row: row) { JournalError(.storage(reason: "workflow type row: \($0)")) }
                do {
                    _ = try stored.text(0, "name")
                    _ = try stored.time(1, "registered_at")
                } catch {
                    problem("workflow types: \(error)")
                }
            }
            var chain = AuditChainCheck()
            let audit = try Row.fetchCursor(db, sql: "SELECT \(Self.auditColumns) FROM audit ORDER BY seq")
            while let row = try audit.next() {
                report.auditEntriesChecked += 1
                do {
                    let (entry, damage) = try Self.auditRow(row)
                    if let damage { problem(damage) }
                    chain.check(entry).forEach(problem)
                } catch {
                    problem(error)
                }
            }
            progress(report.runsChecked, total)
            return report
        }
    }

    // MARK: - Retention and compaction

    /// Deletes closed runs (with their events) that closed before `cutoff`, in batches of 500 runs per
    /// transaction so that workers are not held up. Open runs are never deleted.
    /// - Parameters:
    ///   - statuses: only these closed statuses (all closed ones when `nil`).
    ///   - dryRun: count what would be deleted, delete nothing.
    /// - Returns: the runs and events deleted (or that would be).
    package func deleteClosedRuns(
        closedBefore cutoff: Date, statuses: [RunStatus]?, dryRun: Bool, progress: @escaping @Sendable (Int) -> Void
    ) async throws -> (runs: Int, events: Int) {
        let closed = (statuses ?? RunStatus.allCases).filter { !$0.isOpen }
        guard !closed.isEmpty else { return (0, 0) }
        let statusList = closed.map { "'\($0.rawValue)'" }.joined(separator: ",")
        let condition = "status IN (\(statusList)) AND closed_at IS NOT NULL AND closed_at < ?"
        if dryRun {
            return try read { db in
                let runs = "SELECT id FROM runs WHERE \(condition)"
                return (try Int.fetchOne(db, sql: "SELECT count(*) FROM runs WHERE \(condition)", arguments: [cutoff.journalMillis]) ?? 0,
                        (try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE run IN (\(runs))", arguments: [cutoff.journalMillis]) ?? 0)
                            + (try Int.fetchOne(
                                db, sql: "SELECT coalesce(sum(events), 0) FROM packed_histories WHERE run IN (\(runs))",
                                arguments: [cutoff.journalMillis]) ?? 0))
            }
        }
        var total = (runs: 0, events: 0)
        while true {
            let deleted = try write { db -> (Int, Int) in
                let keys = try Int64.fetchAll(
                    db, sql: "SELECT id FROM runs WHERE \(condition) LIMIT 500", arguments: [cutoff.journalMillis])
                guard !keys.isEmpty else { return (0, 0) }
                let list = keys.map(String.init).joined(separator: ",")
                try db.execute(sql: "DELETE FROM events WHERE run IN (\(list))")
                var events = db.changesCount
                events += try Int.fetchOne(db, sql: "SELECT coalesce(sum(events), 0) FROM packed_histories WHERE run IN (\(list))") ?? 0
                try db.execute(sql: "DELETE FROM packed_histories WHERE run IN (\(list))")
                try db.execute(sql: "DELETE FROM signals WHERE run IN (\(list))")
                _ = try Self.deleteOutOfLine(ofRuns: list, db)
                try db.execute(sql: "DELETE FROM runs WHERE id IN (\(list))")
                return (keys.count, events)
            }
            if deleted.0 == 0 { return total }
            total.runs += deleted.0
            total.events += deleted.1
            progress(total.runs)
        }
    }

    /// Packs the history of every closed run into one compressed block (``HistoryPack``), 100 runs
    /// per transaction, then gives the space freed (and that of deleted runs) back to the file
    /// system: checkpoints the WAL and rebuilds the file (`VACUUM`, which holds the write lock).
    /// A run whose history cannot be read is left as it is and counted in `skipped`.
    /// - Parameter progress: called with (runs packed so far, runs to pack) after each transaction.
    package func compact(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> CompactionReport {
        var report = CompactionReport(bytesBefore: Self.fileSize(path) + Self.fileSize(path + "-wal"))
        let closed = RunStatus.allCases.filter { !$0.isOpen }.map { "'\($0.rawValue)'" }.joined(separator: ",")
        let unpacked = "status IN (\(closed)) AND EXISTS (SELECT 1 FROM events WHERE events.run = runs.id)"
        do {
            let total = try read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM runs WHERE \(unpacked)") ?? 0 }
            var after: Int64 = 0
            while true {
                let start = after
                let (packed, skipped, last) = try writeSync { db -> (Int, Int, Int64?) in
                    let runs = try Row.fetchAll(
                        db, sql: "SELECT \(Self.runColumns) FROM runs WHERE \(unpacked) AND id > ? ORDER BY id LIMIT 100",
                        arguments: [start]
                    ).map(Self.runRow)
                    var packed = 0
                    var skipped = 0
                    for (key, run) in runs {
                        guard let events = try? Self.history(run, key: key, db, payloads: payloads.keepingEncrypted.keepingReferences)
                        else {
                            skipped += 1
                            continue
                        }
                        let (block, payloadBytes) = HistoryPack.encode(events)
                        try db.execute(
                            sql: "INSERT INTO packed_histories (run, events, payload_bytes, data) VALUES (?, ?, ?, ?)",
                            arguments: [key, events.count, payloadBytes, block])
                        try db.execute(sql: "DELETE FROM events WHERE run = ?", arguments: [key])
                        packed += 1
                    }
                    return (packed, skipped, runs.last?.key)
                }
                guard let last else { break }
                after = last
                report.packedRuns += packed
                report.skippedRuns += skipped
                progress(report.packedRuns + report.skippedRuns, total)
            }
            try writeWithoutTransaction { db in
                try db.checkpoint(.truncate)
                try db.execute(sql: "VACUUM")
                try db.checkpoint(.truncate)
            }
        } catch let error as DatabaseError {
            throw JournalError(.storage(reason: "\(path): compaction failed: \(error.message ?? error.description)"))
        }
        report.bytesAfter = Self.fileSize(path) + Self.fileSize(path + "-wal")
        return report
    }

    /// Writes a consistent copy of the journal to `destination` (SQLite's online backup), while
    /// workers keep writing: the copy holds every transaction committed before it began. The copy is
    /// written beside `destination` and linked into place once synced (``NewFile``): it appears
    /// whole or not at all, readable by its owner only.
    /// - Returns: the copy's size in bytes.
    /// - Throws: ``JournalError`` when `destination` is not a new file's path or cannot be written.
    package func backup(to destination: String) async throws -> Int64 {
        try NewFile.create(destination, what: "backup") { temporary in
            do {
                let copy = try DatabaseQueue(path: temporary)
                try pool.backup(to: copy)
                try copy.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
                try copy.close()
            } catch let error as DatabaseError {
                throw JournalError(.storage(reason: "backup to \(destination) failed: \(error.message ?? error.description)"))
            }
        }
        return Self.fileSize(destination)
    }

    // MARK: - Copying

    package func importRun(_ run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal]) async throws {
        let framed = try payloads.frame(run.runID, events: events, signals: signals)
        try write { db in try Self.insert(run, framed, db) }
    }

    /// Inserts a run without a lease, its events and its queued signals, with their checksums.
    static func insert(_ run: RunRecord, _ framed: FramedRun, _ db: Database) throws {
        if try Self.key(of: run.runID, db) != nil {
            throw JournalError(.conflict(runID: run.runID, reason: "a run with this run ID is in the journal already"))
        }
        let createdAt = run.createdAt.journalMillis
        try db.execute(
            sql: """
                INSERT INTO runs (run_id, workflow_id, workflow_type, status, created_at, updated_at, closed_at, seed, error, sum)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                run.runID, run.workflowID, run.workflowType, run.status.rawValue, createdAt,
                run.updatedAt.journalMillis, run.closedAt?.journalMillis, Int64(bitPattern: run.seed), run.error,
                RowChecksum.run(
                    runID: run.runID, workflowID: run.workflowID, workflowType: run.workflowType, createdAt: createdAt,
                    seed: Int64(bitPattern: run.seed), error: run.error),
            ])
        let key = db.lastInsertedRowID
        let insert = try db.cachedStatement(sql: GroupCommitWriter.insertEvent)
        let now = Date().journalMillis
        for event in framed.drafts {
            try insert.execute(arguments: GroupCommitWriter.eventArguments(key, event))
            if let payload = event.outOfLine { try storeOutOfLine(payload, run: key, db, now: now) }
        }
        for (signal, data) in framed.signals {
            let (name, sentAt) = (signal.name, signal.sentAt.journalMillis)
            try db.execute(
                sql: "INSERT INTO signals (run, name, data, sent_at, sum) VALUES (?, ?, ?, ?, ?)",
                arguments: [key, name, data, sentAt, RowChecksum.signal(run: key, name: name, sentAt: sentAt, data: data)])
        }
    }

    static func fileSize(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
    }
}
