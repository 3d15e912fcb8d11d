import DurableTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The audit log as the command line writes and reads it, through the built executables.
@Suite(.timeLimit(.minutes(2))) struct AuditCommandTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    /// The effective user's name, as the command line records it.
    var user: String {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return "uid \(geteuid())" }
        return String(cString: name)
    }

    /// Every entry of the journal's audit log, from `audit list --json`.
    func entries(_ journal: String) async throws -> [[String: Any]] {
        let list = try await runCommand(durable, ["audit", "list", "--after", "0", "--limit", "1000", "--json", "--journal", journal])
        try #require(list.status == 0, "\(list.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
    }

    /// Runs a command and expects its exit status.
    func run(_ binary: String, _ arguments: [String], _ journal: String, status: Int32 = 0) async throws {
        let result = try await runCommand(binary, arguments + ["--journal", journal], environment: ["STEP_MS": "1"])
        #expect(result.status == status, "\(arguments): \(result.stdout)\(result.stderr)")
    }

    @Test func everyControlCommandLeavesOneEntrySayingWhoWhatAndHowItEnded() async throws {
        let journal = temporaryJournal()
        try await run(app, ["run", "CrashFlow", "--input", #"{"tag":"a"}"#, "--id", "a-1"], journal)
        try await run(durable, ["submit", "Nap", "--input", "60000", "--id", "nap-1"], journal)
        try await run(durable, ["signal", "nap-1", "wake", "--input", "1"], journal)
        try await run(durable, ["signal", "no-such-run", "wake"], journal, status: 2)
        try await run(durable, ["cancel", "nap-1", "--reason", "duplicate claim"], journal)
        try await run(durable, ["terminate", "nap-1", "--reason", "stop"], journal)
        try await run(durable, ["terminate", "nap-1", "--reason", "again"], journal, status: 2)
        try await run(durable, ["reset", "a-1", "--to", "2"], journal)
        try await run(durable, ["journal", "prune", "--older-than", "0s", "--dry-run"], journal)  // changes nothing: not recorded
        try await run(durable, ["journal", "prune", "--older-than", "0s"], journal)
        try await run(durable, ["journal", "compact"], journal)

        let log = try await entries(journal)
        func column(_ key: String) -> [String] { log.map { $0[key] as? String ?? "<\(String(describing: $0[key]))>" } }
        #expect(log.map { $0["seq"] as? Int } == Array(1...10))
        #expect(column("action") == ["run", "submit", "signal", "signal", "cancel", "terminate", "terminate", "reset", "prune",
                                     "compact"])
        #expect(column("target") == ["a-1", "nap-1", "nap-1", "no-such-run", "nap-1", "nap-1", "nap-1", "a-1", journal,
                                     journal])
        #expect(column("outcome") == ["ok", "ok", "ok", "runNotFound", "ok", "ok", "runClosed", "ok", "ok", "ok"])
        #expect(Set(column("actor")) == ["user:\(user)"])
        #expect(column("source").allSatisfy { $0.hasPrefix("cli pid ") && $0.contains(" on ") }, "\(column("source"))")
        #expect(Set(column("source")).count == 10, "one process each")
        let details = column("detail")
        #expect(details[1].hasPrefix("workflow type Nap; run "))
        #expect(details[2].hasPrefix("signal 'wake'; run "))
        #expect(details[3] == "signal 'wake'; no run with run ID or workflow ID 'no-such-run'")
        #expect(details[4].hasPrefix("reason: duplicate claim; run "))
        #expect(details[6].contains("reason: again; run ") && details[6].contains("terminations go to open runs only"))
        #expect(details[7].hasPrefix("to event 2; reason: reset; run ") && details[7].contains("; new run "))
        #expect(details[8].hasPrefix("closed before ") && details[8].contains("; deleted 2 runs ("), "\(details[8])")
        #expect(details[9].hasPrefix("packed "), "\(details[9])")
        #expect(log.allSatisfy { ($0["hash"] as? String)?.count == 64 && ($0["time"] as? String)?.hasSuffix("Z") == true })

        let check = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(check.status == 0 && check.stdout.contains(", 10 audit entries\n"), "\(check.stdout)")
    }

    @Test func aCopyIsRecordedInTheJournalItWritesAfterTheSourcesEntries() async throws {
        let source = temporaryJournal()
        try await run(app, ["run", "CrashFlow", "--input", #"{"tag":"c"}"#, "--id", "c-1"], source)
        let destination = siblingJournal(of: source, "copy")
        let copy = try await runCommand(durable, ["journal", "copy", "--from", source, "--to", destination])
        #expect(copy.status == 0, "\(copy.stderr)")
        let log = try await entries(destination)
        #expect(log.map { $0["action"] as? String } == ["run", "copy"], "the source's entry, then the copy's")
        let sourceLog = try await entries(source)
        #expect(log.first?["hash"] as? String == sourceLog.first?["hash"] as? String, "copied as it was")
        #expect(log.last?["outcome"] as? String == "ok")
        let detail = try #require(log.last?["detail"] as? String)
        #expect(detail.hasPrefix("from \(source); copied 1 runs (") && detail.hasSuffix("0 signals), skipped 0, 1 audit entries"), "\(detail)")
        #expect(sourceLog.map { $0["action"] as? String } == ["run"], "the source records only its own actions")
        let check = try await runCommand(durable, ["journal", "check", "--journal", destination])
        #expect(check.status == 0 && check.stdout.contains(", 2 audit entries\n"), "\(check.stdout)")
    }

    @Test func auditListShowsTheLastEntriesOrPagesForward() async throws {
        let journal = temporaryJournal()
        try await run(app, ["run", "CrashFlow", "--input", #"{"tag":"l"}"#, "--id", "l-1"], journal)
        for n in 1...4 { try await run(durable, ["signal", "gone-\(n)", "wake"], journal, status: 2) }
        let last = try await runCommand(durable, ["audit", "list", "--limit", "2", "--json", "--journal", journal])
        let lastSeqs = try #require(try JSONSerialization.jsonObject(with: Data(last.stdout.utf8)) as? [[String: Any]])
            .map { $0["seq"] as? Int }
        #expect(lastSeqs == [4, 5], "the last two, oldest first")
        let page = try await runCommand(durable, ["audit", "list", "--after", "1", "--limit", "2", "--journal", journal])
        let lines = page.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines[0].hasPrefix("SEQ  TIME"), "\(page.stdout)")
        #expect(lines[1].hasPrefix("2 ") && lines[1].contains("signal") && lines[1].contains("gone-1")
                && lines[1].contains("runNotFound"), "\(page.stdout)")
        #expect(lines[2].hasPrefix("3 ") && lines[2].contains("gone-2"), "\(page.stdout)")
        let none = try await runCommand(durable, ["audit", "list", "--after", "5", "--journal", journal])
        #expect(none.stdout == "no audit entries after seq 5\n")
    }

    @Test func journalCheckFailsWhenAnEntryIsChangedBehindTheTriggersBack() async throws {
        let journal = temporaryJournal()
        try await run(app, ["run", "CrashFlow", "--input", #"{"tag":"t"}"#, "--id", "t-1"], journal)
        try await run(durable, ["signal", "t-1", "wake"], journal, status: 2)  // closed: refused, and audited
        try await run(durable, ["cancel", "t-1"], journal, status: 2)
        let tamper = "UPDATE audit SET outcome = 'ok' WHERE seq = 2"
        switch TestBackend.current {
        case .sqlite:
            let queue = try DatabaseQueue(path: journal)
            try await queue.writeWithoutTransaction { db in
                #expect(throws: DatabaseError.self) { try db.execute(sql: tamper) }
                try db.execute(sql: "DROP TRIGGER audit_no_update; \(tamper)")
            }
            try queue.close()
        case .postgres:
            let schema = String(journal[try #require(journal.range(of: "schema=")).upperBound...])
            #expect(try runPsql(journal, "SET search_path = \(schema); \(tamper)").stderr.contains("append-only"))
            let result = try runPsql(journal, "SET search_path = \(schema); ALTER TABLE audit DISABLE TRIGGER audit_append_only; \(tamper)")
            try #require(result.status == 0, "\(result.stderr)")
        }
        let check = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(check.status == 3, "\(check.stdout)")
        #expect(check.stdout.contains("problem: audit entry 2: its hash does not follow"), "\(check.stdout)")
        #expect(check.stdout.hasSuffix("NOT healthy\n"))
        let json = try await runCommand(durable, ["journal", "check", "--json", "--journal", journal])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(report["healthy"] as? Bool == false && report["auditEntries"] as? Int == 3)
    }
}
