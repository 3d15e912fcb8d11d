import Foundation
import GRDB
import Testing

@testable import DurableJournal
@testable import DurableSQLite

/// The writer binds event rows to its statement itself (`GroupCommitWriter.insert`, one or two rows a
/// statement) instead of through GRDB's `StatementArguments`: the stored rows must be the ones GRDB's
/// binding of ``GroupCommitWriter/eventArguments(_:_:)`` stores, value and storage class, and a failed
/// insert must leave the journal and the cached statement usable.
@Suite(.timeLimit(.minutes(2))) struct DirectEventInsertTests {
    /// Events with every kind of value a column gets: names or none (non-ASCII, empty), payloads or
    /// none, empty details, a large sequence number, a time before 1970. Five of them: two two-row statements and a one-row one.
    static func drafts(from first: Int, time: Date) -> [EventDraft] {
        [
            EventDraft(HistoryEvent(index: first, kind: .activityCompleted, time: time, seq: 1, attempt: 1,
                                    data: Data(#"{"i":1}"#.utf8))),
            EventDraft(HistoryEvent(index: first + 1, kind: .activityScheduled, time: time, seq: 2,
                                    name: "Résumé", data: Data("7".utf8), meta: Data(#"{"retry":{}}"#.utf8))),
            EventDraft(HistoryEvent(index: first + 2, kind: .timerStarted, time: time, seq: 1_000_000)),
            EventDraft(HistoryEvent(index: first + 3, kind: .activityFailed, time: time, seq: 3, attempt: 12,
                                    data: Data(repeating: 0x41, count: 5000), meta: Data())),
            EventDraft(HistoryEvent(index: first + 4, kind: .signalReceived, time: Date(timeIntervalSince1970: -1.5),
                                    name: "", data: Data())),
        ]
    }

    /// The rows of `events` as stored, with each value's storage class.
    static func storedRows(_ db: Database, table: String) throws -> [[String]] {
        try Row.fetchAll(db, sql: """
            SELECT run, idx, kind, time, seq, attempt, name, data, meta, sum,
                typeof(name), typeof(data), typeof(meta), hex(name), hex(data), hex(meta)
            FROM \(table) ORDER BY idx
            """).map { row in (0..<row.count).map { "\(row[$0] as DatabaseValue)" } }
    }

    @Test func directlyBoundRowsAreTheRowsGRDBBinds() async throws {
        let path = temporaryPath()
        let time = Date(timeIntervalSince1970: 1_764_000_000.123)
        do {
            let journal = try SQLiteJournal(.sqlite(path: path))
            try await journal.append(JournalBatch(
                run: RunRef(runID: "r1"),
                newRun: .init(workflowID: "r1", workflowType: "Flow", seed: 7, status: .running, createdAt: time),
                events: [EventDraft(HistoryEvent(index: 0, kind: .workflowStarted, time: time, name: "Flow",
                                                 data: Data("{}".utf8)))] + Self.drafts(from: 1, time: time)))
            let run = try #require(try await journal.findRun("r1"))
            let history = try await journal.history(run)  // reading checks every row's sum
            #expect(history.map(\.index) == Array(0...5))
            #expect(history[2].name == "Résumé" && history[3].seq == 1_000_000)
            #expect(history[4].data == Data(repeating: 0x41, count: 5000) && history[4].meta == Data())
            try await journal.checkpoint()
        }
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            let key = try #require(try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE run_id = 'r1'"))
            try db.execute(sql: "CREATE TEMP TABLE expected AS SELECT * FROM events WHERE 0")
            let insert = try db.cachedStatement(
                sql: GroupCommitWriter.insertEvent.replacingOccurrences(of: "INTO events", with: "INTO expected"))
            for event in Self.drafts(from: 1, time: time) {
                try insert.execute(arguments: GroupCommitWriter.eventArguments(key, event))
            }
            let stored = try Self.storedRows(db, table: "events").filter { $0[1] != "0" }
            let expected = try Self.storedRows(db, table: "expected")
            #expect(stored.count == 5)
            #expect(stored == expected)
        }
        try queue.close()
    }

    @Test func aFailedInsertLeavesTheJournalAndItsStatementUsable() async throws {
        let journal = try SQLiteJournal(.sqlite(path: temporaryPath()))
        try await writeRun(journal, id: "r1", count: 2)  // events 0, 1, 2
        let time = Date()
        // Index 2 is taken: the two-row statement fails on its first row, the one-row one on its row.
        for count in [2, 1] {
            await #expect(throws: (any Error).self) {
                try await journal.append(JournalBatch(
                    run: RunRef(runID: "r1"), events: Array(Self.drafts(from: 2, time: time).prefix(count))))
            }
        }
        // Nothing of the failed batches was written, and the statements work again.
        try await journal.append(JournalBatch(run: RunRef(runID: "r1"), events: Self.drafts(from: 3, time: time)))
        let run = try #require(try await journal.findRun("r1"))
        let history = try await journal.history(run)
        #expect(history.map(\.index) == Array(0...7))
        #expect(history[3].data == Data(#"{"i":1}"#.utf8) && history[4].name == "Résumé")
    }
}
