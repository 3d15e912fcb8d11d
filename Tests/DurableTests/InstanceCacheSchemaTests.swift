import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import GRDB
import Testing

// The due-time index's schema upgrade: a journal of the format before it (SQLite 9, PostgreSQL 3) gets
// the `wake_at` column and its indexes, and its open runs are resumed as before.

@Suite(.serialized, .timeLimit(.minutes(2))) struct InstanceCacheSchemaTests {
    /// Turns a journal back into the format before the due-time index.
    func downgrade(_ location: String) async throws {
        switch TestBackend.current {
        case .sqlite:
            let queue = try DatabaseQueue(path: location)
            try await queue.writeWithoutTransaction { db in
                try db.execute(sql: """
                    DROP INDEX runs_waiting; DROP INDEX runs_busy; DROP INDEX runs_leased;
                    ALTER TABLE runs DROP COLUMN wake_at; PRAGMA user_version = 9
                    """)
            }
            try queue.close()
        case .postgres:
            let schema = String(location[try #require(location.range(of: "schema=")).upperBound...])
            let result = try runPsql(location, """
                DROP INDEX \(schema).runs_waiting; DROP INDEX \(schema).runs_busy_expiry;
                ALTER TABLE \(schema).runs DROP COLUMN wake_at;
                UPDATE \(schema).meta SET value = '3' WHERE key = 'format_version'
                """)
            #expect(result.status == 0, "psql: \(result.stderr)")
        }
    }

    /// The due-time index's column and indexes, as the storage lists them.
    func wakeSchema(_ location: String) async throws -> [String] {
        switch TestBackend.current {
        case .sqlite:
            let queue = try DatabaseQueue(path: location)
            defer { try? queue.close() }
            return try await queue.read { db in
                let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(runs)").compactMap { $0["name"] as String? }
                    .filter { $0 == "wake_at" }
                let indexes = try String.fetchAll(
                    db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN ('runs_waiting','runs_busy','runs_leased') ORDER BY name")
                return columns + indexes
            }
        case .postgres:
            let schema = String(location[try #require(location.range(of: "schema=")).upperBound...])
            let columns = try runPsql(location, """
                SELECT column_name FROM information_schema.columns
                WHERE table_schema = '\(schema)' AND table_name = 'runs' AND column_name = 'wake_at'
                """).stdout
            let indexes = try runPsql(location, """
                SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
                WHERE schemaname = '\(schema)' AND indexname IN ('runs_waiting','runs_busy_expiry')
                """).stdout
            return ([columns] + indexes.split(separator: ",").map(String.init)).filter { !$0.isEmpty }
        }
    }

    @Test func aJournalOfTheFormatBeforeGetsTheDueTimeIndexAndItsRunsGoOn() async throws {
        let location = temporaryJournalPath()
        let expected = TestBackend.current == .sqlite
            ? ["wake_at", "runs_busy", "runs_leased", "runs_waiting"] : ["wake_at", "runs_busy_expiry", "runs_waiting"]
        let first = try await makeEngine(location)
        first.register(CacheWaiter.self)
        first.worker.instanceCacheCapacity = 0
        let run = try await first.start(CacheWaiter.self, input: "old", id: "before-upgrade")
        try await eventually("the run is evicted") { first.worker.evictedRunCount == 1 }
        await first.shutdown()
        #expect(try await wakeSchema(location) == expected)
        try await downgrade(location)
        #expect(try await wakeSchema(location) == [])

        let second = try await makeEngine(location)
        second.register(CacheWaiter.self)
        #expect(try await wakeSchema(location) == expected, "upgraded when opened")
        let stats = try await second.journal.stats()
        #expect(stats.formatVersion == (TestBackend.current == .sqlite ? 11 : 5))
        // Written before the index, the run counts as one that needs a driver: it is resumed at start.
        let report = try await second.recover()
        #expect(report.resumed == [run.runID])
        try await second.signal("before-upgrade", name: "go", "!")
        #expect(try await second.client.outcome(of: run.runID) == .completed(Data("\"OLD!\"".utf8)))
        await second.shutdown()
    }
}
