import DurableTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The journal file itself: permissions, backups that appear whole or not at all, and the files a
/// worker checks under itself (its `-wal`, a second name).
@Suite(.timeLimit(.minutes(2)), .enabled(if: TestBackend.isSQLite, "about the SQLite file"))
struct JournalFileTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    func mode(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_mode & 0o777) : -1
    }

    /// A journal with one completed run (`done`), plus `megabytes` of padding so that a backup takes a while.
    func journal(megabytes: Int = 0) async throws -> String {
        let journal = temporaryPath()
        let run = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"done"}"#, "--id", "done", "--journal", journal],
            environment: ["STEP_MS": "1"])
        try #require(run.status == 0, "\(run.stderr)")
        if megabytes > 0 {
            let queue = try DatabaseQueue(path: journal)
            try queue.inDatabase { db in
                try db.execute(sql: "CREATE TABLE padding (data BLOB)")
                for _ in 0..<megabytes {
                    try db.execute(sql: "INSERT INTO padding VALUES (randomblob(1048576))")
                }
            }
            try queue.close()
        }
        return journal
    }

    @Test func newJournalsAndBackupsAreReadableByTheirOwnerOnly() async throws {
        let journal = try await journal()
        #expect(mode(journal) == 0o600)
        #expect(mode(journal + "-wal") == 0o600 || mode(journal + "-wal") == -1)
        let copy = temporaryPath("backup")
        let backup = try await runCommand(durable, ["journal", "backup", copy, "--journal", journal])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(mode(copy) == 0o600)
    }

    @Test func aBackupToSomethingThatIsNotANewFileIsRefused() async throws {
        let journal = try await journal()
        let folder = URL(fileURLWithPath: journal).deletingLastPathComponent().path
        for destination in ["", ":memory:", "file:x?mode=memory", folder, journal, "/nonexistent-folder/x.sqlite"] {
            let backup = try await runCommand(durable, ["journal", "backup", destination, "--journal", journal])
            #expect(backup.status != 0, "backup to '\(destination)' succeeded: \(backup.stdout)")
            let lines = backup.stderr.split(separator: "\n")
            // The command line refuses an empty path itself (exit 64); the journal refuses the others.
            #expect(lines.count == 1 && (destination.isEmpty ? backup.status == 64 : lines[0].contains("backup to")),
                    "'\(destination)': \(backup.stderr)")
            #expect(!backup.stdout.contains("backed up"))
        }
    }

    /// SIGKILL at random moments of a backup: afterwards the destination does not exist, or it is a
    /// whole journal that check calls healthy (never a 0-byte or half-written file).
    @Test func aBackupKilledAtAnyMomentLeavesNoDestinationOrAWholeOne() async throws {
        let journal = try await journal(megabytes: 40)
        var outcomes = (none: 0, whole: 0)
        var generator = SystemRandomNumberGenerator()
        for attempt in 0..<8 {
            let destination = temporaryPath("killed-backup-\(attempt)")
            let backup = try Child(durable, ["journal", "backup", destination, "--journal", journal])
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...250, using: &generator)))
            backup.kill(SIGKILL)
            _ = try await backup.wait()
            guard FileManager.default.fileExists(atPath: destination) else {
                outcomes.none += 1
                continue
            }
            outcomes.whole += 1
            #expect(!FileManager.default.fileExists(atPath: destination + "-journal"))
            let check = try await runCommand(durable, ["journal", "check", "--journal", destination])
            #expect(check.status == 0, "killed backup \(attempt): \(check.stdout)\(check.stderr)")
            let list = try await runCommand(durable, ["runs", "list", "--json", "--journal", destination])
            #expect(list.stdout.contains("\"done\""), "killed backup \(attempt): \(list.stdout)\(list.stderr)")
        }
        print("killed backups: \(outcomes.none) left no file, \(outcomes.whole) a whole journal")
    }

    @Test func aJournalWithASecondNameIsNotOpened() async throws {
        let journal = try await journal()
        let second = temporaryPath("second-name")
        try #require(link(journal, second) == 0)
        let list = try await runCommand(durable, ["runs", "list", "--journal", journal])
        #expect(list.status != 0)
        #expect(list.stderr.contains("has 2 hard links"), "\(list.stderr)")
        #expect(list.stderr.split(separator: "\n").count == 1, "\(list.stderr)")
    }

    /// The `-wal` file deleted under a live worker: the worker copies what it committed into the
    /// journal file, says why, and exits (instead of writing on where commits would be lost).
    @Test func aWorkerWhoseWALIsDeletedStopsLoudlyAndKeepsItsCommits() async throws {
        let journal = temporaryPath()
        let worker = try Child(app, ["worker", "--journal", journal])
        defer { worker.kill(SIGKILL) }
        try await eventually("the worker is ready") { worker.output.contains("recovered") }
        let submit = try await runCommand(durable, ["submit", "Gather", "--input", "2", "--id", "g", "--journal", journal])
        try #require(submit.status == 0, "\(submit.stderr)")
        let signal = try await runCommand(durable, ["signal", "g", "item", "--input", #""a""#, "--journal", journal])
        try #require(signal.status == 0, "\(signal.stderr)")
        try await eventually("the signal delivered") {
            let history = try await runCommand(durable, ["history", "g", "--json", "--journal", journal])
            return history.stdout.contains("SignalReceived")
        }
        try FileManager.default.removeItem(atPath: journal + "-wal")
        let (status, _) = try await worker.wait(timeout: .seconds(10))
        #expect(status != 0)
        #expect(worker.output.contains("-wal was deleted while the journal was open"), "\(worker.output)")
        let history = try await runCommand(durable, ["history", "g", "--json", "--journal", journal])
        #expect(history.stdout.contains("SignalReceived"), "the worker's commits were lost: \(history.stdout)\(history.stderr)")
        let check = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }
}
