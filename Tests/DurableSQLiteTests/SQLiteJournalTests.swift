import Foundation
import GRDB
import Testing

@testable import DurableJournal
@testable import DurableSQLite

func temporaryPath(_ name: String = #function) -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("durable-journal-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.appendingPathComponent("\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8)).sqlite").path
}

/// Writes a run with a started event and `count` completed-activity events.
func writeRun(_ journal: SQLiteJournal, id: String, count: Int = 3) async throws {
    let now = Date()
    var events = [EventDraft(HistoryEvent(index: 0, kind: .workflowStarted, time: now, name: "Flow", data: Data(#"{"n":1}"#.utf8)))]
    for i in 1...count {
        events.append(EventDraft(HistoryEvent(
            index: i, kind: .activityCompleted, time: now, seq: i, attempt: 1,
            data: Data(#"{"result":"\#(String(repeating: "ok ", count: 40))"}"#.utf8))))
    }
    try await journal.append(JournalBatch(
        run: RunRef(runID: id),
        newRun: .init(workflowID: id, workflowType: "Flow", seed: 7, status: .running, createdAt: now),
        events: events))
}

@Suite(.timeLimit(.minutes(2))) struct SQLiteJournalTests {
    @Test func eventsRoundTripThroughTheJournal() async throws {
        let journal = try SQLiteJournal(.sqlite(path: temporaryPath()))
        try await writeRun(journal, id: "r1")
        let run = try #require(try await journal.findRun("r1"))
        #expect(run.status == .running && run.workflowType == "Flow" && run.seed == 7)
        let events = try await journal.history(run)
        #expect(events.count == 4)
        #expect(events[0].data == Data(#"{"n":1}"#.utf8))
        #expect(events[3].seq == 3 && events[3].attempt == 1)
    }

    /// A journal file holding run "r1" (checkpointed), then changed behind the journal's back by `sql`.
    func journalFile(changedBy sql: String) async throws -> String {
        let path = temporaryPath()
        do {
            let journal = try SQLiteJournal(.sqlite(path: path))
            try await writeRun(journal, id: "r1")
            try await journal.checkpoint()
        }
        let queue = try DatabaseQueue(path: path)
        try await queue.writeWithoutTransaction { db in try db.execute(sql: sql) }
        try queue.close()
        return path
    }

    @Test func journalFromANewerFormatIsRefusedAndLeftUntouched() async throws {
        let path = try await journalFile(changedBy: "PRAGMA user_version = 99")
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = #expect(throws: JournalError.self) { _ = try SQLiteJournal(.sqlite(path: path)) }
        #expect(error?.isNewerFormat == true)
        #expect(error?.description.contains("format version 99") == true)
        #expect(error?.description.contains(path) == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test func aFormat5JournalIsUpgradedInPlaceAndKeepsItsRuns() async throws {
        // The file taken back to format 5: no due-time index, no audit log, no row checksums, no lease
        // columns, no packed histories.
        let path = try await journalFile(changedBy: """
            DROP INDEX runs_waiting; DROP INDEX runs_busy; DROP INDEX runs_leased;
            ALTER TABLE runs DROP COLUMN wake_at;
            DROP TABLE audit;
            ALTER TABLE events DROP COLUMN sum;
            ALTER TABLE signals DROP COLUMN sum;
            ALTER TABLE runs DROP COLUMN sum;
            DROP TABLE packed_histories;
            ALTER TABLE runs DROP COLUMN lease_owner;
            ALTER TABLE runs DROP COLUMN lease_expires_at;
            PRAGMA user_version = 5;
            """)

        let journal = try SQLiteJournal(.sqlite(path: path), lease: LeaseSettings(owner: "w1", durationMs: 5_000))
        let run = try #require(try await journal.findRun("r1"))
        #expect(run.leaseOwner == nil && run.status == .running)
        #expect(try await journal.history(run).count == 4)
        #expect(try await journal.acquireLease(runID: run.runID, expected: RunLease(of: run)))
        #expect(try await journal.findRun("r1")?.leaseOwner == "w1")
        #expect(try await journal.stats().formatVersion == SQLiteJournal.formatVersion)
    }

    @Test func aWriterChecksItsLeaseUnlessAnUnbrokenChainOfRenewalsVouchesForIt() async throws {
        let path = temporaryPath()
        let journal = try SQLiteJournal(.sqlite(path: path, durability: .fast), lease: LeaseSettings(owner: "w1", durationMs: 300))
        try await writeRun(journal, id: "r1")  // started here, so leased to w1
        let run = try #require(try await journal.findRun("r1"))
        #expect(run.leaseOwner == "w1")
        func takeOver() async throws {
            let queue = try DatabaseQueue(path: path)
            try await queue.write { db in try db.execute(sql: "UPDATE runs SET lease_owner = 'w2' WHERE run_id = 'r1'") }
            try queue.close()
        }
        func write(_ index: Int) async throws {
            try await journal.append(JournalBatch(
                run: RunRef(runID: "r1"),
                events: [EventDraft(HistoryEvent(index: index, kind: .signalReceived, time: Date(), name: "s"))]))
        }
        // No chain of renewals yet: every write checks the lease.
        try await takeOver()
        let refused = await #expect(throws: JournalError.self) { try await write(4) }
        #expect(refused?.description.contains("run is driven by worker w2 now") == true, "\(String(describing: refused))")

        // A chain that broke (a renewal came later than a lease lasts) also makes every write check.
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in try db.execute(sql: "UPDATE runs SET lease_owner = 'w1' WHERE run_id = 'r1'") }
        try queue.close()
        journal.beginLeaseRenewals()
        try await journal.renewLeases()
        try await write(4)
        try await Task.sleep(for: .milliseconds(400))  // longer than the lease: w1 could have lost it
        try await journal.renewLeases()
        try await takeOver()
        await #expect(throws: JournalError.self) { try await write(5) }
    }

    @Test func otherFilesAreRefusedWithAClearError() throws {
        let text = temporaryPath()
        try Data("this is not a database, it is a text file that happens to be long enough".utf8)
            .write(to: URL(fileURLWithPath: text))
        let notDatabase = #expect(throws: JournalError.self) { _ = try SQLiteJournal(.sqlite(path: text)) }
        #expect(notDatabase?.description.contains("is not a readable SQLite database") == true)

        let other = temporaryPath()
        let queue = try DatabaseQueue(path: other)
        try queue.write { db in try db.execute(sql: "CREATE TABLE customers (id INTEGER)") }
        try queue.close()
        let notJournal = #expect(throws: JournalError.self) { _ = try SQLiteJournal(.sqlite(path: other)) }
        #expect(notJournal?.description.contains("not a Durable journal") == true)

        let missing = #expect(throws: JournalError.self) {
            _ = try SQLiteJournal(JournalConfiguration(temporaryPath(), createIfMissing: false))
        }
        #expect(missing?.description.contains("no journal at") == true)
    }

    @Test(arguments: ["truncate", "flip", "garbage"])
    func corruptPayloadIsReportedWithRunAndEvent(_ damage: String) async throws {
        let path = temporaryPath()
        let journal = try SQLiteJournal(.sqlite(path: path))
        try await writeRun(journal, id: "r-corrupt")
        let sql = switch damage {
        case "truncate": "UPDATE events SET data = substr(data, 1, length(data) - 5) WHERE idx = 2"
        case "flip": "UPDATE events SET data = substr(data, 1, 20) || x'00' || substr(data, 22) WHERE idx = 2"
        default: "UPDATE events SET data = x'07deadbeef' WHERE idx = 2"
        }
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in try db.execute(sql: sql) }
        try queue.close()
        let run = try #require(try await journal.findRun("r-corrupt"))
        let error = await #expect(throws: JournalError.self) { _ = try await journal.history(run) }
        #expect(error?.isCorruption == true)
        #expect(error?.description.contains("run r-corrupt, event 2") == true)
    }

    @Test func concurrentAppendsShareCommits() async throws {
        let journal = try SQLiteJournal(.sqlite(path: temporaryPath()))
        let before = journal.commitCount
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask { try await writeRun(journal, id: "run-\(i)", count: 1) }
            }
            try await group.waitForAll()
        }
        let commits = journal.commitCount - before
        #expect(try await journal.runs().count == 200)
        #expect(commits < 200, "200 appends took \(commits) commits: no group commit")
    }

    @Test func secondOpenRunWithTheSameWorkflowIDIsRefused() async throws {
        let journal = try SQLiteJournal(.sqlite(path: temporaryPath()))
        try await writeRun(journal, id: "dup")
        let now = Date()
        let error = await #expect(throws: JournalError.self) {
            try await journal.append(JournalBatch(
                run: RunRef(runID: "other"),
                newRun: .init(workflowID: "dup", workflowType: "Flow", seed: 1, status: .pending, createdAt: now)))
        }
        #expect(error?.existingRunID == "dup")
    }
}

@Suite(.timeLimit(.minutes(2))) struct DurabilityModeTests {
    @Test(arguments: [(Durability.full, 2), (.fast, 1)])
    func writerConnectionUsesTheModesSynchronousSetting(_ mode: Durability, _ expected: Int) throws {
        let journal = try SQLiteJournal(.sqlite(path: temporaryPath(), durability: mode))
        #expect(try journal.writerSynchronous() == expected)
    }

    @Test func aNewJournalHasSmallPagesAndAnExistingOneKeepsItsOwn() async throws {
        let fresh = temporaryPath()
        let journal = try SQLiteJournal(.sqlite(path: fresh))
        try await writeRun(journal, id: "a")
        let freshSize = try await DatabaseQueue(path: fresh).read { try Int.fetchOne($0, sql: "PRAGMA page_size") }
        #expect(freshSize == 1024)

        // A journal made with SQLite's default page size (as before) opens, takes writes and keeps it.
        let old = temporaryPath()
        let queue = try DatabaseQueue(path: old)
        try await queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA page_size = 4096")
            try db.execute(sql: "PRAGMA journal_mode = WAL")
        }
        try queue.close()
        let reopened = try SQLiteJournal(.sqlite(path: old))
        try await writeRun(reopened, id: "b")
        #expect(try await reopened.runs().map(\.workflowID) == ["b"])
        let oldSize = try await DatabaseQueue(path: old).read { try Int.fetchOne($0, sql: "PRAGMA page_size") }
        #expect(oldSize == 4096)
    }
}
