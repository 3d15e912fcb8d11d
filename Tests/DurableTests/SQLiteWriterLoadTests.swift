import DurableJournal
import DurableTestSupport
import Foundation
import GRDB
import Testing

@testable import DurableSQLite

/// What keeps the SQLite journal's one writer free for the runs' commits: lease renewals in slices
/// of the group commits, WAL checkpoints off the writer's commits.
@Suite(.timeLimit(.minutes(2))) struct SQLiteWriterLoadTests {
    /// Starts `count` runs leased to the journal's worker, 100 per batch group.
    private func startRuns(_ journal: SQLiteJournal, _ count: Int, prefix: String = "r", payload: Int = 16) async throws {
        let now = Date()
        for first in stride(from: 0, to: count, by: 100) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in first..<min(first + 100, count) {
                    group.addTask {
                        let id = "\(prefix)\(i)"
                        try await journal.append(JournalBatch(
                            run: RunRef(runID: id),
                            newRun: .init(workflowID: id, workflowType: "Flow", seed: 1, status: .running, createdAt: now),
                            events: [EventDraft(HistoryEvent(
                                index: 0, kind: .workflowStarted, time: now, name: "Flow",
                                data: Data((0..<payload).map { _ in UInt8.random(in: 0...255) })))]))
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func aRenewalExtendsEveryLeaseHeldInSlicesOfTheGroupCommits() async throws {
        let path = temporaryPath()
        let journal = try SQLiteJournal(.sqlite(path: path, durability: .fast), lease: LeaseSettings(owner: "w1", durationMs: 60_000))
        try await startRuns(journal, 1_200)
        // One run leased to another worker, one to nobody: neither is renewed.
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "UPDATE runs SET lease_owner = 'w2', lease_expires_at = 1 WHERE run_id = 'r7'")
            try db.execute(sql: "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE run_id = 'r8'")
        }
        journal.beginLeaseRenewals()
        let before = Date().journalMillis
        let commits = journal.commitCount
        #expect(try await journal.renewLeases() == 1_198)
        #expect(journal.commitCount - commits == 3)  // slices of 512
        #expect(!journal.leaseChainBroken)
        let (renewed, stale, others) = try await queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM runs WHERE lease_owner = 'w1' AND lease_expires_at >= ?",
                              arguments: [before + 60_000]) ?? 0,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM runs WHERE lease_owner = 'w1' AND lease_expires_at < ?",
                              arguments: [before + 60_000]) ?? 0,
             try Row.fetchAll(db, sql: "SELECT lease_owner, lease_expires_at FROM runs WHERE run_id IN ('r7','r8') ORDER BY id")
                .map { [$0[0] as String?, ($0[1] as Int64?).map(String.init)] })
        }
        try queue.close()
        #expect(renewed == 1_198 && stale == 0)
        #expect(others == [["w2", "1"], [nil, nil]])
        #expect(SQLiteJournal.renewalSlice(10) == 512 && SQLiteJournal.renewalSlice(100_000) == 3_125)
    }

    @Test func theWALStaysBoundedWhileCheckpointsRunOffTheWriter() async throws {
        let path = temporaryPath()
        let journal = try SQLiteJournal(.sqlite(path: path))
        let fileSize = { (name: String) -> Int in
            ((try? FileManager.default.attributesOfItem(atPath: name)[.size]) as? NSNumber)?.intValue ?? 0
        }
        let empty = fileSize(path)
        // About 12,000 pages of 1 KiB committed, 100 runs per group commit: SQLite's own checkpoint
        // would have run inside a dozen of them.
        try await startRuns(journal, 3_000, payload: 2_000)
        // The pages reached the database file, and the log did not grow past what the writer allows
        // before it checkpoints itself (frames of a page and a 24-byte header, and the last commit).
        let frame = SQLiteJournal.pageSize + 24
        #expect(fileSize(path) > empty + 3_000 * 2_000, "database file \(fileSize(path)) bytes")
        #expect(fileSize(path + "-wal") <= (Int(WALCheckpointer.inlineFrames) + 2_000) * frame, "WAL \(fileSize(path + "-wal")) bytes")
        // Every run is there once the journal is opened again.
        await journal.close()
        let reopened = try SQLiteJournal(.sqlite(path: path))
        #expect(try await reopened.countRuns(RunFilter(statuses: [.running]))[.running] == 3_000)
    }
}
