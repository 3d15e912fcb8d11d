import Foundation
import GRDB
import Testing

@testable import DurableJournal
@testable import DurableSQLite

/// Changes a journal file behind the journal's back (as a disk fault or another tool would).
func alter(_ path: String, _ sql: String, arguments: StatementArguments = []) async throws {
    let queue = try DatabaseQueue(path: path)
    try await queue.writeWithoutTransaction { db in
        try db.execute(sql: sql, arguments: arguments)
        _ = try db.checkpoint(.truncate)
    }
    try queue.close()
}

/// A checkpointed journal file with a running run "r1" (a started event and three completed
/// `Summarize` activities) and a queued signal for it.
func integrityJournal() async throws -> String {
    let path = temporaryPath()
    let journal = try SQLiteJournal(.sqlite(path: path))
    let now = Date()
    var events = [EventDraft(HistoryEvent(index: 0, kind: .workflowStarted, time: now, name: "Flow", data: Data(#"{"n":1}"#.utf8)))]
    for i in 1...3 {
        events.append(EventDraft(HistoryEvent(
            index: i, kind: .activityCompleted, time: now, seq: i, attempt: 1, name: "Summarize",
            data: Data(#"{"result":"\#(String(repeating: "ok ", count: 40))"}"#.utf8), meta: Data(#"{"ms":3}"#.utf8))))
    }
    try await journal.append(JournalBatch(
        run: RunRef(runID: "r1"),
        newRun: .init(workflowID: "r1", workflowType: "Flow", seed: 7, status: .running, createdAt: now),
        events: events))
    _ = try await journal.sendSignal(toRun: "r1", name: "review", data: Data(#"{"ok":true}"#.utf8))
    try await journal.checkpoint()
    return path
}

@Suite(.timeLimit(.minutes(2))) struct JournalIntegrityTests {
    // MARK: - Item 2: an empty file is not a journal

    @Test func anEmptyFileIsRefusedByReadOnlyOpensAndLeftEmpty() throws {
        let path = temporaryPath()
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let error = #expect(throws: JournalError.self) { _ = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false)) }
        #expect(error?.code == .notAJournal)
        #expect(error?.description == "\(path) is empty (0 bytes), not a journal")
        #expect(SQLiteJournal.fileSize(path) == 0)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func anEmptyFileBecomesAJournalWhereJournalsAreCreated() async throws {
        let path = temporaryPath()
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let journal = try SQLiteJournal(.sqlite(path: path))
        try await writeRun(journal, id: "r1")
        #expect(try await journal.check().isHealthy)
        let pageSize = try await DatabaseQueue(path: path).read { try Int.fetchOne($0, sql: "PRAGMA page_size") }
        #expect(pageSize == SQLiteJournal.pageSize)
    }

    @Test func aDatabaseThatIsNotAJournalIsRefusedByReadOnlyOpensAndNotChanged() throws {
        // An empty SQLite database (a valid header, no tables) and one with another application's table.
        for sql in ["PRAGMA user_version = 0; VACUUM", "CREATE TABLE customers (id INTEGER)"] {
            let path = temporaryPath()
            let queue = try DatabaseQueue(path: path)
            try queue.writeWithoutTransaction { db in try db.execute(sql: sql) }
            try queue.close()
            let before = try Data(contentsOf: URL(fileURLWithPath: path))
            let error = #expect(throws: JournalError.self) { _ = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false)) }
            #expect(error?.code == .notAJournal, "\(sql)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before, "\(sql): the file was changed")
        }
    }

    // MARK: - Item 12: paths that are not files

    @Test func aDirectoryOrADeviceIsNamedForWhatItIs() throws {
        let directory = temporaryPath() + ".d"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for create in [true, false] {
            let folder = #expect(throws: JournalError.self) { _ = try SQLiteJournal(JournalConfiguration(directory, createIfMissing: create)) }
            #expect(folder?.description == "\(directory) is a directory, not a journal file")
            let device = #expect(throws: JournalError.self) { _ = try SQLiteJournal(JournalConfiguration("/dev/null", createIfMissing: create)) }
            #expect(device?.description == "/dev/null is a device, not a journal file")
        }
    }

    // MARK: - Item 6: type-confused rows

    static let confusions: [(table: String, column: String, value: String)] = [
        ("events", "time", "'soon'"), ("events", "seq", "'x'"), ("events", "kind", "'x'"), ("events", "idx", "'x'"),
        ("events", "attempt", "X'00'"), ("events", "data", "42"), ("events", "name", "X'00ff'"), ("events", "meta", "7"),
        ("events", "time", "9223372036854775807"), ("events", "seq", "9223372036854775807"),
        ("runs", "seed", "'x'"), ("runs", "created_at", "'x'"), ("runs", "created_at", "9223372036854775807"),
        ("runs", "lease_expires_at", "'x'"), ("runs", "updated_at", "-9223372036854775808"), ("runs", "status", "X'00'"),
        ("runs", "run_id", "12"), ("runs", "workflow_type", "X'41'"), ("runs", "error", "1.5"),
        ("signals", "name", "X'00'"), ("signals", "sent_at", "'x'"), ("signals", "data", "'x'"),
    ]

    @Test(arguments: confusions)
    func aTypeConfusedValueIsReportedNeverTrappedOn(_ table: String, _ column: String, _ value: String) async throws {
        let path = try await integrityJournal()
        let condition = table == "events" ? " WHERE idx = 2" : ""
        try await alter(path, "UPDATE \(table) SET \(column) = \(value)\(condition)")
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        let report = try await journal.check()
        #expect(!report.isHealthy, "\(table).\(column) = \(value): \(report.problems)")
        // Reading it throws a journal error (or reads around it); it never traps.
        var failures = 0
        do {
            for run in try await journal.runs() {
                _ = try await journal.history(run)
                _ = try await journal.eventCount(run)
            }
        } catch let error as JournalError {
            #expect(error.isCorruption || error.code == .storage, "\(error)")
            failures += 1
        }
        _ = try await journal.queuedSignals()
        _ = try? await journal.queuedSignalNames(runID: "r1")
        _ = try await journal.stats()
        _ = try await journal.countRuns(RunFilter())
        if table != "signals" { #expect(failures == 1, "\(table).\(column) = \(value) read as data") }
    }

    @Test func aPackedHistoryWithAnOversizedVarintIsCorruptNotATrap() throws {
        var raw = Data([HistoryPack.layoutVersion])
        PayloadCodec.appendVarint(1 << 63 + 5, to: &raw)
        let error = #expect(throws: JournalError.self) { _ = try HistoryPack.decode(PayloadCodec.encode(raw), runID: "r9") }
        #expect(error?.code == .corruptRun)
        #expect(error?.description.contains("out of range") == true, "\(String(describing: error))")
    }

    // MARK: - Item 7: silent damage

    @Test func aFlippedActivityNameReadsAsDamageNotAsNonDeterminism() async throws {
        let path = try await integrityJournal()
        try await alter(path, "UPDATE events SET name = 'Rummarize' WHERE idx = 2")
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        let run = try #require(try await journal.findRun("r1"))
        let error = await #expect(throws: JournalError.self) { _ = try await journal.history(run) }
        #expect(error?.code == .damaged && error?.isCorruption == true)
        #expect(error?.description.hasPrefix("damaged journal: run r1, event 2 (ActivityCompleted): ") == true, "\(String(describing: error))")
        let report = try await journal.check()
        #expect(report.problems.count == 1 && report.problems.first?.contains("event 2 (ActivityCompleted)") == true, "\(report.problems)")
    }

    @Test(arguments: [
        "UPDATE events SET time = time + 1 WHERE idx = 1", "UPDATE events SET meta = X'7b7d' WHERE idx = 3",
        "UPDATE events SET run = 2 WHERE idx = 3", "UPDATE runs SET workflow_type = 'Flaw'", "UPDATE runs SET seed = 8",
        "UPDATE runs SET error = 'boom'", "UPDATE signals SET name = 'reviex'", "UPDATE signals SET sent_at = sent_at - 1",
        "UPDATE runs SET status = 'completed', closed_at = created_at",
        "UPDATE events SET sum = NULL WHERE idx = 0",
    ])
    func everyStoredFieldIsCovered(_ sql: String) async throws {
        let path = try await integrityJournal()
        try await alter(path, sql)
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        let report = try await journal.check()
        #expect(!report.problems.isEmpty, "\(sql)")
    }

    @Test func aClosedRunMustEndWithItsOwnClosingEventAndAnOpenOneWithNone() async throws {
        let path = try await integrityJournal()
        let journal = try SQLiteJournal(.sqlite(path: path))
        try await journal.append(JournalBatch(
            run: RunRef(runID: "r1"), events: [EventDraft(HistoryEvent(index: 4, kind: .workflowCompleted, time: Date()))],
            statusChange: .init(status: .completed, error: nil)))
        #expect(try await journal.check().isHealthy)
        try await alter(path, "UPDATE runs SET status = 'failed'")
        #expect(try await journal.check().problems == ["run r1 is failed but its last event is WorkflowCompleted"])
        try await alter(path, "UPDATE runs SET status = 'running', closed_at = NULL")
        #expect(try await journal.check().problems == ["run r1 is running but its last event is WorkflowCompleted, which closes it"])
    }

    @Test func aFormat7JournalIsUpgradedWithChecksumsForItsRows() async throws {
        // The journal taken back to format 7: no sum columns.
        let path = try await integrityJournal()
        try await alter(path, """
            ALTER TABLE events DROP COLUMN sum;
            ALTER TABLE signals DROP COLUMN sum;
            ALTER TABLE runs DROP COLUMN sum;
            DROP TABLE audit;
            PRAGMA user_version = 7;
            """)
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        #expect(try await journal.stats().formatVersion == SQLiteJournal.formatVersion)
        let report = try await journal.check()
        #expect(report.isHealthy, "\(report.problems)")
        let run = try #require(try await journal.findRun("r1"))
        #expect(try await journal.history(run).map(\.name) == ["Flow", "Summarize", "Summarize", "Summarize"])
        #expect(try await journal.queuedSignals().map(\.name) == ["review"])
        let sums = try await DatabaseQueue(path: path).read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT count(sum) FROM events) + (SELECT count(sum) FROM runs) + (SELECT count(sum) FROM signals)")
        }
        #expect(sums == 6)
        try await alter(path, "UPDATE events SET name = 'Rummarize' WHERE idx = 2")
        let error = await #expect(throws: JournalError.self) { _ = try await journal.history(run) }
        #expect(error?.code == .damaged)
    }

    @Test func aSignalMovedToTheNextRunAndATerminationKeepTheirRowsHealthy() async throws {
        let path = try await integrityJournal()
        let journal = try SQLiteJournal(.sqlite(path: path))
        try await writeRun(journal, id: "r2")
        let r2 = try #require(try await journal.findRun("r2"))
        #expect(try await journal.terminateRun("r2", reason: "stop", expected: RunLease(of: r2), notice: nil))
        #expect(try await journal.findRun("r2")?.error == "stop")
        let report = try await journal.check()
        #expect(report.isHealthy, "\(report.problems)")
    }

    // MARK: - The audit log (format 9)

    @Test func aFormat8JournalIsUpgradedWithAnAppendOnlyAuditLog() async throws {
        let path = try await integrityJournal()
        try await alter(path, "DROP TABLE audit; PRAGMA user_version = 8")
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        #expect(try await journal.stats().formatVersion == SQLiteJournal.formatVersion)
        #expect(try await journal.appendAudit(AuditDraft(actor: "user:root", source: "cli", action: "cancel", target: "r1",
                                                        outcome: "ok")).seq == 1)
        await #expect(throws: DatabaseError.self) { try await alter(path, "DELETE FROM audit") }
        let report = try await journal.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 1, "\(report.problems)")
    }

    @Test func concurrentAuditAppendsShareSyncedCommits() async throws {
        let journal = try SQLiteJournal(.sqlite(path: temporaryPath(), durability: .fast))
        let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
            for n in 0..<200 {
                group.addTask {
                    try await journal.appendAudit(AuditDraft(
                        actor: "token:portal", source: "http 127.0.0.1:\(n)", action: "POST /v1/workflows/{type}/runs",
                        target: "Claim", outcome: "202")).seq
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(seqs.sorted() == Array(1...200))
        // 200 appends issued at once cannot all have found the writer idle: some shared a transaction.
        #expect(journal.auditCommitCount < 200 && journal.auditCommitCount >= 1, "\(journal.auditCommitCount) commits")
        #expect(try await journal.effectiveDurability() == .fast, "the synced audit commits leave the journal's durability as it was")
        #expect(try await journal.check().isHealthy)
    }

    @Test func anAuditAppendAfterADamagedEntryFailsForEveryCallerOfItsGroup() async throws {
        let path = try await integrityJournal()
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        _ = try await journal.appendAudit(AuditDraft(actor: "user:root", source: "cli", action: "signal", target: "r1", outcome: "ok"))
        try await alter(path, "DROP TRIGGER audit_no_update")
        try await alter(path, "UPDATE audit SET outcome = 'ol' WHERE seq = 1")
        let results = await withTaskGroup(of: (any Error)?.self) { group in
            for n in 0..<20 {
                group.addTask {
                    do {
                        _ = try await journal.appendAudit(AuditDraft(
                            actor: "user:root", source: "cli", action: "cancel", target: "r\(n)", outcome: "ok"))
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { ($0 as? JournalError)?.code == .damaged }, "\(results)")
        // Nothing was chained onto the damaged entry, and the writer still takes appends once it is gone.
        try await alter(path, "UPDATE audit SET outcome = 'ok' WHERE seq = 1")
        #expect(try await journal.appendAudit(AuditDraft(actor: "user:root", source: "cli", action: "cancel", target: "r9",
                                                        outcome: "ok")).seq == 2)
    }

    @Test func anAuditRowChangedOnDiskIsDamageAndOneRewrittenWithItsSumBreaksTheChain() async throws {
        let path = try await integrityJournal()
        let journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        var entries: [AuditEntry] = []
        for n in 1...3 {
            entries.append(try await journal.appendAudit(AuditDraft(
                actor: "user:root", source: "cli", action: "signal", target: "r\(n)", outcome: "ok")))
        }
        try await alter(path, "DROP TRIGGER audit_no_update")
        // A byte changed on disk: the row's checksum says so, reads refuse the entry.
        try await alter(path, "UPDATE audit SET outcome = 'ol' WHERE seq = 2")
        let error = await #expect(throws: JournalError.self) { _ = try await journal.auditEntries(limit: 10) }
        #expect(error?.code == .damaged && error?.description.contains("audit entry 2") == true, "\(String(describing: error))")
        #expect(try await journal.check().problems.allSatisfy { $0.contains("audit entry 2") })
        // Rewritten on purpose, checksum and hash recomputed: the next entry's link breaks.
        var forged = entries[1]
        forged.outcome = "runNotFound"
        forged.hash = AuditChain.hash(of: forged, previous: entries[0].hash)
        try await alter(
            path, "UPDATE audit SET outcome = ?, hash = ?, sum = ? WHERE seq = 2",
            arguments: [forged.outcome, forged.hash, RowChecksum.audit(forged)])
        #expect(try await journal.auditEntries(after: 1, limit: 1) == [forged])
        #expect(try await journal.check().problems == [
            "audit entry 3: its hash does not follow from its fields and the entry before it "
                + "(this entry or the one before it was changed after it was written)",
        ])
    }
}
