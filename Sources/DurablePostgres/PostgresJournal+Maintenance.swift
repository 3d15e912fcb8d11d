package import DurableJournal
package import Foundation
import PostgresNIO

extension PostgresJournal {
    // MARK: - Health

    /// Bytes of the journal's tables with their indexes and TOAST.
    func tableBytes() async throws -> Int64 {
        let names = PostgresSchema.tables.map { s + "." + $0 }
        let row = try await rows(
            "SELECT coalesce(sum(pg_total_relation_size(t::regclass)), 0)::bigint FROM unnest(\(names)::text[]) AS t").first
        return try row?.decode(Int64.self) ?? 0
    }

    package func stats() async throws -> JournalStats {
        let version = try await withConnection { connection in
            try await PostgresSchema.version(connection, schema: self.s, logger: self.logger) ?? 0
        }
        var stats = JournalStats(
            formatVersion: version, fileBytes: try await tableBytes(), walBytes: 0, runsByStatus: try await countRuns(RunFilter()),
            events: 0, storedPayloadBytes: 0, rawPayloadBytes: 0, queuedSignals: 0, packedRuns: 0)
        if let row = try await rows("""
            SELECT (SELECT count(*) FROM \(unescaped: s).events),
                   (SELECT count(*) FROM \(unescaped: s).signals),
                   (SELECT count(*) FROM \(unescaped: s).packed_histories),
                   (SELECT coalesce(sum(events), 0)::bigint FROM \(unescaped: s).packed_histories),
                   (SELECT coalesce(sum(payload_bytes), 0)::bigint FROM \(unescaped: s).packed_histories),
                   (SELECT coalesce(sum(length(data)), 0)::bigint FROM \(unescaped: s).packed_histories)
            """).first
        {
            let (events, signals, packed, packedEvents, packedRaw, packedStored) = try row.decode(
                (Int64, Int64, Int64, Int64, Int64, Int64).self)
            stats.events = Int(events + packedEvents)
            stats.queuedSignals = Int(signals)
            stats.packedRuns = Int(packed)
            stats.rawPayloadBytes = Int(packedRaw)
            stats.storedPayloadBytes = Int(packedStored)
        }
        // Payload sizes as written: each frame's header says its decoded length.
        try await withConnection { connection in
            let rows = try await connection.query(
                "SELECT data FROM \(unescaped: self.s).events WHERE data IS NOT NULL", logger: self.logger)
            for try await row in rows {
                let blob = try row.decode(Data.self)
                stats.storedPayloadBytes += blob.count
                stats.rawPayloadBytes += PayloadCodec.decodedLength(blob) ?? blob.count
            }
        }
        if let row = try await rows("SELECT count(*), coalesce(sum(length(data)), 0)::bigint FROM \(unescaped: s).blobs").first {
            let (count, bytes) = try row.decode((Int64, Int64).self)
            (stats.outOfLinePayloads, stats.outOfLineBytes) = (Int(count), Int(bytes))
            stats.storedPayloadBytes += Int(bytes)
        }
        return stats
    }

    package func check(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> JournalCheckReport {
        let version = try await withConnection { connection in
            try await PostgresSchema.version(connection, schema: self.s, logger: self.logger) ?? 0
        }
        var report = JournalCheckReport(
            formatVersion: version,
            integrity: version == PostgresSchema.formatVersion
                ? ["ok"] : ["schema \(s) has journal format \(version), this build knows \(PostgresSchema.formatVersion)"])
        func problem(_ text: String) {
            if report.problems.count < 1_000 { report.problems.append(text) }
        }
        let closing: Set<EventKind> = [.workflowCompleted, .workflowFailed, .workflowCancelled, .workflowTerminated,
                                       .workflowContinuedAsNew]
        let runs = try await self.runs(RunFilter(oldestFirst: true))
        for run in runs {
            do {
                let events = try await withConnection { try await self.history(run, from: 0, $0, payloads: self.payloads.markingMissing) }
                report.countUnverified(events)
                report.eventsChecked += events.count
                if events.isEmpty {
                    problem("run \(run.runID): no events (not even WorkflowStarted)")
                } else if !run.status.isOpen, let last = events.last?.kind, !closing.contains(last) {
                    problem("run \(run.runID) is \(run.status.rawValue) but its last event is \(last.name)")
                }
            } catch {
                problem("\(error)")
            }
            report.runsChecked += 1
            if report.runsChecked % 1_000 == 0 { progress(report.runsChecked, runs.count) }
        }
        report.outOfLinePayloadsChecked = try await checkOutOfLine(problem: problem)
        let orphans = try await rows("""
            SELECT count(*) FROM \(unescaped: s).signals WHERE run_id NOT IN (SELECT run_id FROM \(unescaped: s).runs)
            """).first?.decode(Int64.self) ?? 0
        if orphans > 0 { problem("\(orphans) queued signal(s) for runs that do not exist") }
        for row in try await rows("SELECT id, run_id, name, data FROM \(unescaped: s).signals WHERE data IS NOT NULL") {
            let (id, runID, name, data) = try row.decode((Int64, String, String, Data).self)
            do {
                report.countUnverified(keyID: try payloads.verify(data))
            } catch {
                problem("run \(runID): queued signal \(id) '\(name)' payload unreadable: \(error)")
            }
        }
        var chain = AuditChainCheck()
        try await withConnection { connection in
            let entries = try await connection.query(
                "SELECT \(unescaped: Self.auditColumns) FROM \(unescaped: self.s).audit ORDER BY seq", logger: self.logger)
            for try await row in entries {
                report.auditEntriesChecked += 1
                do {
                    chain.check(try Self.auditEntry(row)).forEach(problem)
                } catch {
                    problem("\(error)")
                }
            }
        }
        progress(report.runsChecked, runs.count)
        return report
    }

    // MARK: - Backup

    /// A `pg_dump` of the journal's schema (custom format, for `pg_restore`) to a new file, which
    /// appears whole or not at all (``NewFile``), readable by its owner only.
    package func backup(to destination: String) async throws -> Int64 {
        try NewFile.checkDestination(destination, what: "backup")
        guard let pgDump = Self.executable("pg_dump") else {
            throw JournalError(.storage(reason: """
                \(location): backing up a PostgreSQL journal runs pg_dump, which is not on PATH \
                (install the PostgreSQL client, or use your database's own backups)
                """))
        }
        try NewFile.create(destination, what: "backup") { temporary in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: pgDump)
            process.arguments = [
                "--format=custom", "--schema=\(s)", "--file=\(temporary)", "--host=\(place.host)", "--port=\(place.port)",
                "--username=\(place.user)", "--no-password", place.database,
            ]
            var environment = ProcessInfo.processInfo.environment
            if let password = place.password { environment["PGPASSWORD"] = password }
            process.environment = environment
            let errors = Pipe()
            process.standardError = errors
            try process.run()
            let message = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                let text = String(decoding: message, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
                throw JournalError(.storage(reason: "backup to \(destination) failed: pg_dump: \(text)"))
            }
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? NSNumber)?.int64Value
        return size ?? 0
    }

    static func executable(_ name: String) -> String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return paths.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    // MARK: - Retention and compaction

    package func deleteClosedRuns(
        closedBefore cutoff: Date, statuses: [RunStatus]?, dryRun: Bool, progress: @escaping @Sendable (Int) -> Void
    ) async throws -> (runs: Int, events: Int) {
        let closed = (statuses ?? RunStatus.allCases).filter { !$0.isOpen }.map(\.rawValue)
        guard !closed.isEmpty else { return (0, 0) }
        let cutoffMillis = cutoff.journalMillis
        if dryRun {
            let row = try await rows("""
                WITH doomed AS (SELECT run_id FROM \(unescaped: s).runs
                    WHERE status = ANY(\(closed)) AND closed_at IS NOT NULL AND closed_at < \(cutoffMillis))
                SELECT (SELECT count(*) FROM doomed),
                       (SELECT count(*) FROM \(unescaped: s).events WHERE run_id IN (SELECT run_id FROM doomed))
                     + (SELECT coalesce(sum(events), 0) FROM \(unescaped: s).packed_histories
                        WHERE run_id IN (SELECT run_id FROM doomed))
                """).first
            guard let (runs, events) = try row?.decode((Int64, Int64).self) else { return (0, 0) }
            return (Int(runs), Int(events))
        }
        var total = (runs: 0, events: 0)
        while true {
            let (runs, events) = try await inTransaction { connection in
                let keys = try await connection.query("""
                    SELECT run_id FROM \(unescaped: self.s).runs
                    WHERE status = ANY(\(closed)) AND closed_at IS NOT NULL AND closed_at < \(cutoffMillis) LIMIT 500
                    """, logger: self.logger).collect().map { try $0.decode(String.self) }
                guard !keys.isEmpty else { return (0, 0) }
                let events = try await connection.query(
                    "DELETE FROM \(unescaped: self.s).events WHERE run_id = ANY(\(keys)) RETURNING 1", logger: self.logger
                ).collect().count
                let packed = try await connection.query(
                    "DELETE FROM \(unescaped: self.s).packed_histories WHERE run_id = ANY(\(keys)) RETURNING events",
                    logger: self.logger
                ).collect().map { Int(try $0.decode(Int32.self)) }.reduce(0, +)
                try await connection.query("DELETE FROM \(unescaped: self.s).signals WHERE run_id = ANY(\(keys))", logger: self.logger)
                try await Self.deleteOutOfLine(ofRuns: keys, schema: self.s, connection, logger: self.logger)
                try await connection.query("DELETE FROM \(unescaped: self.s).runs WHERE run_id = ANY(\(keys))", logger: self.logger)
                return (keys.count, events + packed)
            }
            if runs == 0 { return total }
            total.runs += runs
            total.events += events
            progress(total.runs)
        }
    }

    package func compact(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> CompactionReport {
        var report = CompactionReport(bytesBefore: try await tableBytes())
        let closed = RunStatus.allCases.filter { !$0.isOpen }.map(\.rawValue)
        let unpacked = "status = ANY($1) AND EXISTS (SELECT 1 FROM \(s).events e WHERE e.run_id = runs.run_id)"
        var countBinds = PostgresBindings()
        countBinds.append(closed)
        let total = Int(try await rows(PostgresQuery(
            unsafeSQL: "SELECT count(*) FROM \(s).runs WHERE \(unpacked)", binds: countBinds)).first?.decode(Int64.self) ?? 0)
        var after = ""
        while true {
            var binds = PostgresBindings()
            binds.append(closed)
            binds.append(after)
            let runs = try await rows(PostgresQuery(
                unsafeSQL: "SELECT \(Self.runColumns) FROM \(s).runs WHERE \(unpacked) AND run_id > $2 ORDER BY run_id LIMIT 100",
                binds: binds)).map(Self.runRecord)
            guard let last = runs.last else { break }
            after = last.runID
            let (packed, skipped) = try await inTransaction { connection in
                var packed = 0
                var skipped = 0
                for run in runs {
                    guard let events = try? await self.history(
                        run, from: 0, connection, payloads: self.payloads.keepingEncrypted.keepingReferences)
                    else {
                        skipped += 1
                        continue
                    }
                    let (block, payloadBytes) = HistoryPack.encode(events)
                    try await connection.query("""
                        INSERT INTO \(unescaped: self.s).packed_histories (run_id, events, payload_bytes, data)
                        VALUES (\(run.runID), \(Int32(events.count)), \(Int64(payloadBytes)), \(block))
                        """, logger: self.logger)
                    try await connection.query(
                        "DELETE FROM \(unescaped: self.s).events WHERE run_id = \(run.runID)", logger: self.logger)
                    packed += 1
                }
                return (packed, skipped)
            }
            report.packedRuns += packed
            report.skippedRuns += skipped
            progress(report.packedRuns + report.skippedRuns, total)
        }
        // Plain VACUUM (no lock against writers) makes the space reusable; the server keeps the files.
        for table in ["events", "packed_histories", "runs", "signals", "blobs", "blob_refs"] {
            _ = try await rows(PostgresQuery(unsafeSQL: "VACUUM \(s).\(table)"))
        }
        report.bytesAfter = try await tableBytes()
        return report
    }

    // MARK: - Copying

    package func importRun(_ run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal]) async throws {
        let framed = try payloads.frame(run.runID, events: events, signals: signals)
        try await inTransaction { connection in
            try await self.insert(run, framed, connection)
            if !signals.isEmpty || run.status == .pending {
                try await connection.query("SELECT pg_notify(\(self.channel), '')", logger: self.logger)
            }
        }
    }

    /// Inserts a run without a lease, its events and its queued signals.
    func insert(_ run: RunRecord, _ framed: FramedRun, _ connection: PostgresConnection) async throws {
        let drafts = framed.drafts
        let inserted = try await connection.query("""
            INSERT INTO \(unescaped: s).runs (run_id, workflow_id, workflow_type, status, created_at, updated_at,
                closed_at, seed, error, next_idx)
            VALUES (\(run.runID), \(run.workflowID), \(run.workflowType), \(run.status.rawValue),
                \(run.createdAt.journalMillis), \(run.updatedAt.journalMillis), \(run.closedAt?.journalMillis),
                \(Int64(bitPattern: run.seed)), \(run.error), \(Int32(drafts.count)))
            ON CONFLICT (run_id) DO NOTHING RETURNING 1
            """, logger: logger).collect()
        if inserted.isEmpty {
            throw JournalError(.conflict(runID: run.runID, reason: "a run with this run ID is in the journal already"))
        }
        for start in stride(from: 0, to: drafts.count, by: 500) {
            let chunk = Array(drafts[start..<min(start + 500, drafts.count)])
            try await connection.query(try PostgresWriter.insertEvents(chunk, runID: run.runID, schema: s), logger: logger)
        }
        try await PostgresWriter.storeOutOfLine(
            drafts, runID: run.runID, schema: s, now: Date().journalMillis, connection, logger: logger)
        for (signal, frame) in framed.signals {
            try await connection.query("""
                INSERT INTO \(unescaped: s).signals (run_id, name, data, sent_at)
                VALUES (\(run.runID), \(signal.name), \(frame), \(signal.sentAt.journalMillis))
                """, logger: logger)
        }
    }
}
