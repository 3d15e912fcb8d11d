import DurableTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The operator commands, run as built executables on real journals.
@Suite(.timeLimit(.minutes(2))) struct OperatorCommandTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    /// Two completed CrashFlow runs (`op-1`, `op-2`) and two pending runs (`nap-1`, `gather-1`).
    func journalWithRuns() async throws -> String {
        let journal = temporaryJournal()
        for id in ["op-1", "op-2"] {
            let run = try await runCommand(
                app, ["run", "CrashFlow", "--input", #"{"tag":"\#(id)"}"#, "--id", id, "--journal", journal],
                environment: ["STEP_MS": "1"])
            try #require(run.status == 0, "\(run.stderr)")
        }
        _ = try await runCommand(durable, ["submit", "Nap", "--input", "60000", "--id", "nap-1", "--journal", journal])
        _ = try await runCommand(durable, ["submit", "Gather", "--input", "2", "--id", "gather-1", "--journal", journal])
        return journal
    }

    func json(_ text: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(text.utf8)) }

    /// `journal copy` from SQLite to PostgreSQL and back: every run arrives, each history exports
    /// byte for byte as from the source, queued signals come along, the audit log comes along with
    /// its hashes, and a second copy skips what is there.
    @Test func journalCopyMovesEveryRunToPostgreSQLAndBack() async throws {
        guard let server = ProcessInfo.processInfo.environment["DURABLE_TEST_POSTGRES_URL"], !server.isEmpty else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                Issue.record("DURABLE_TEST_POSTGRES_URL is not set: journal copy to PostgreSQL is not tested")
            }
            return
        }
        let source = temporaryPath("copy-source")
        for id in ["op-1", "op-2"] {
            let run = try await runCommand(
                app, ["run", "CrashFlow", "--input", #"{"tag":"\#(id)"}"#, "--id", id, "--journal", source],
                environment: ["STEP_MS": "1"])
            try #require(run.status == 0, "\(run.stderr)")
        }
        _ = try await runCommand(durable, ["submit", "Nap", "--input", "60000", "--id", "nap-1", "--journal", source])
        let signal = try await runCommand(durable, ["signal", "nap-1", "wake", "--input", "1", "--journal", source])
        try #require(signal.status == 0, "\(signal.stderr)")
        let postgres = server + (server.contains("?") ? "&" : "?") + "schema=t_copy_\(UUID().uuidString.prefix(8).lowercased())"
        let back = temporaryPath("copy-back")
        func audit(_ journal: String) async throws -> [[String: Any]] {
            let list = try await runCommand(durable, ["audit", "list", "--json", "--journal", journal])
            return try #require(try json(list.stdout) as? [[String: Any]], "\(list.stderr)")
        }
        func chain(_ entries: [[String: Any]]) -> [String] { entries.map { "\($0["seq"] ?? "") \($0["hash"] ?? "")" } }
        let sourceAudit = try await audit(source)
        #expect(sourceAudit.count == 4, "run, run, submit, signal: \(sourceAudit)")
        for (from, to, entries) in [(source, postgres, 4), (postgres, back, 5)] {
            let copy = try await runCommand(durable, ["journal", "copy", "--from", from, "--to", to, "--json"])
            #expect(copy.status == 0, "\(copy.stderr)")
            let report = try #require(try json(copy.stdout) as? [String: Any])
            #expect(report["runs"] as? Int == 3 && report["signals"] as? Int == 1 && report["skippedRuns"] as? Int == 0)
            #expect(report["auditEntries"] as? Int == entries && report["auditNotCopied"] is NSNull, "\(report)")
        }
        // The source's entries, numbers and hashes as they were, then one entry per copy (action `copy`).
        let backAudit = try await audit(back)
        #expect(Array(chain(backAudit).prefix(4)) == chain(sourceAudit))
        #expect(backAudit.suffix(2).map { $0["action"] as? String } == ["copy", "copy"])
        let again = try await runCommand(durable, ["journal", "copy", "--from", source, "--to", postgres, "--json"])
        let againReport = try json(again.stdout) as? [String: Any]
        #expect(againReport?["skippedRuns"] as? Int == 3 && againReport?["auditEntries"] as? Int == 0)
        #expect(againReport?["auditNotCopied"] is NSNull, "all the source's entries are there")
        // A new entry in the source cannot follow the destination's own: the runs are copied, the
        // entry is not, and the copy says so.
        _ = try await runCommand(durable, ["cancel", "no-such-run", "--journal", source])
        let diverged = try await runCommand(durable, ["journal", "copy", "--from", source, "--to", postgres])
        #expect(diverged.status == 0, "\(diverged.stderr)")
        #expect(diverged.stderr.contains("warning: the audit log of") && diverged.stderr.contains("entries from 5 on cannot be appended"),
                "\(diverged.stderr)")
        #expect(diverged.stdout.contains("and 0 audit entries"), "\(diverged.stdout)")
        for id in ["op-1", "op-2", "nap-1"] {
            var exports: [Data] = []
            for journal in [source, postgres, back] {
                let file = temporaryPath("export") + ".json"
                let export = try await runCommand(durable, ["history", "export", id, "-o", file, "--journal", journal])
                #expect(export.status == 0, "\(export.stderr)")
                exports.append(FileManager.default.contents(atPath: file) ?? Data())
            }
            #expect(!exports[0].isEmpty && exports[1] == exports[0] && exports[2] == exports[0], "\(id): the histories differ")
        }
        let shown = try await runCommand(durable, ["runs", "show", "nap-1", "--json", "--journal", back])
        #expect(shown.stdout.contains("wake"), "the queued signal came along: \(shown.stdout)")
        let check = try await runCommand(durable, ["journal", "check", "--journal", back])
        #expect(check.status == 0, "\(check.stdout)")
    }

    @Test func runsAreFilteredSortedAndCounted() async throws {
        let journal = try await journalWithRuns()
        func ids(_ arguments: [String]) async throws -> [String] {
            let list = try await runCommand(durable, ["runs", "list", "--json", "--journal", journal] + arguments)
            #expect(list.status == 0, "\(arguments): \(list.stderr)")
            return try #require(try json(list.stdout) as? [[String: Any]]).compactMap { $0["workflowID"] as? String }
        }
        #expect(try await ids([]) == ["gather-1", "nap-1", "op-2", "op-1"])
        #expect(try await ids(["--sort", "oldest"]) == ["op-1", "op-2", "nap-1", "gather-1"])
        #expect(try await ids(["--type", "CrashFlow"]) == ["op-2", "op-1"])
        #expect(try await ids(["--id-prefix", "op-", "--limit", "1"]) == ["op-2"])
        #expect(try await ids(["--status", "pending,completed", "--type", "Nap"]) == ["nap-1"])
        #expect(try await ids(["--started-after", "1h"]).count == 4)
        #expect(try await ids(["--started-before", "2020-01-01"]).isEmpty)

        let count = try await runCommand(durable, ["runs", "count", "--journal", journal])
        #expect(count.stdout == "4 (pending 2, completed 2)\n")
        let countJSON = try await runCommand(durable, ["runs", "count", "--json", "--type", "CrashFlow", "--journal", journal])
        let counted = try #require(try json(countJSON.stdout) as? [String: Any])
        #expect(counted["count"] as? Int == 2)
        #expect((counted["byStatus"] as? [String: Int]) == ["completed": 2])

        let bad = try await runCommand(durable, ["runs", "list", "--started-after", "yesterday", "--journal", journal])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("'yesterday' is invalid for '--started-after <time>': not an ISO 8601 time"), "\(bad.stderr)")
    }

    @Test func showNamesTheLeaseHolderAndTheSignalsAwaitedAndQueued() async throws {
        let journal = try await journalWithRuns()
        let worker = try Child(app, ["worker", "--journal", journal], environment: ["STEP_MS": "1"])
        defer { worker.kill(SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(20)
        var shown = ""
        while !shown.contains("waits for:    signal item") {
            try #require(ContinuousClock.now < deadline, "gather-1 never waited for its signal: \(shown)")
            try await Task.sleep(for: .milliseconds(50))
            shown = try await runCommand(app, ["runs", "show", "gather-1", "--journal", journal]).stdout
        }
        #expect(shown.contains("lease:        worker "), "\(shown)")
        #expect(shown.contains("/\(worker.pid)/"), "the lease holder names the worker's pid: \(shown)")
        let object = try #require(try json(try await runCommand(
            app, ["runs", "show", "gather-1", "--json", "--journal", journal]).stdout) as? [String: Any])
        #expect(object["awaitedSignals"] as? [String] == ["item"])
        #expect((object["leaseOwner"] as? String)?.contains("/\(worker.pid)/") == true)
        // The code-less CLI cannot replay the workflow, so it does not say what the run waits for.
        let codeless = try #require(try json(try await runCommand(
            durable, ["runs", "show", "gather-1", "--json", "--journal", journal]).stdout) as? [String: Any])
        #expect(codeless["awaitedSignals"] is NSNull)
        worker.kill(SIGTERM)
        _ = try await worker.wait()
        _ = try await runCommand(durable, ["signal", "gather-1", "item", "--input", #""one""#, "--journal", journal])
        let queued = try await runCommand(durable, ["runs", "show", "gather-1", "--journal", journal])
        #expect(queued.stdout.contains("queued:       signal item (not delivered yet)"))
        #expect(queued.stdout.contains("lease:        none (no worker drives it)"), "the stopped worker released it")
    }

    @Test(.enabled(if: TestBackend.isSQLite, "damages a payload in the SQLite file"))
    func checkFindsACorruptPayloadAndStatsCountTheJournal() async throws {
        let journal = try await journalWithRuns()
        let stats = try await runCommand(durable, ["journal", "stats", "--json", "--journal", journal])
        let object = try #require(try json(stats.stdout) as? [String: Any])
        #expect(object["runs"] as? Int == 4)
        #expect(object["events"] as? Int == 42)
        #expect((object["runsByStatus"] as? [String: Int]) == ["completed": 2, "pending": 2])
        #expect(object["formatVersion"] as? Int == 11)
        #expect((object["fileBytes"] as? Int ?? 0) > 0)
        let human = try await runCommand(durable, ["journal", "stats", "--journal", journal])
        #expect(human.stdout.contains("runs:      4 (pending 2, completed 2)"))

        let healthy = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(healthy.status == 0)
        #expect(healthy.stdout.contains("4 runs, 42 events") && healthy.stdout.hasSuffix("healthy\n"))

        // Flip one byte of a stored payload, as a bad disk would: the checksum catches it.
        let queue = try DatabaseQueue(path: journal)
        let runID = try await queue.write { db -> String in
            let row = try #require(try Row.fetchOne(db, sql: """
                SELECT runs.run_id, events.run, events.idx, events.data FROM events JOIN runs ON runs.id = events.run
                WHERE runs.workflow_id = 'op-1' AND events.idx = 2
                """))
            var data: Data = row[3]
            data[data.count - 1] ^= 0xFF
            try db.execute(sql: "UPDATE events SET data = ? WHERE run = ? AND idx = 2", arguments: [data, row[1] as Int64])
            return row[0]
        }
        try queue.close()
        let corrupt = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(corrupt.status == 3)
        #expect(corrupt.stdout.contains("problem: run \(runID), event 2: payload unreadable"), "\(corrupt.stdout)")
        #expect(corrupt.stderr.contains("is not healthy (1 problem(s), integrity ok)"))
    }

    @Test func compactPacksClosedHistoriesThatReadAndReplayAsBefore() async throws {
        let journal = try await journalWithRuns()
        let before = try await runCommand(durable, ["history", "op-1", "--json", "--journal", journal])
        let compact = try await runCommand(durable, ["journal", "compact", "--journal", journal])
        #expect(compact.status == 0, "\(compact.stderr)")
        #expect(compact.stdout.hasPrefix("packed 2 closed run(s); file "), "\(compact.stdout)")
        #expect(compact.stderr.contains("packed 2/2 closed runs"), "progress")

        let after = try await runCommand(durable, ["history", "op-1", "--json", "--journal", journal])
        #expect(after.stdout == before.stdout, "a packed history reads exactly as before")
        let stats = try #require(try json(try await runCommand(
            durable, ["journal", "stats", "--json", "--journal", journal]).stdout) as? [String: Any])
        #expect(stats["packedRuns"] as? Int == 2 && stats["events"] as? Int == 42)
        let check = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(check.status == 0 && check.stdout.contains("4 runs, 42 events"), "\(check.stdout)")
        let replayed = try await runCommand(app, ["replay", "--all", "--journal", journal])
        #expect(replayed.stdout.contains("2 match, 0 mismatch"), "\(replayed.stdout)\(replayed.stderr)")
        let again = try await runCommand(durable, ["journal", "compact", "--json", "--journal", journal])
        #expect(try #require(try json(again.stdout) as? [String: Int])["packedRuns"] == 0, "nothing left to pack")

        // Pruning deletes packed runs too, counting their events.
        let pruned = try await runCommand(durable, ["journal", "prune", "--older-than", "0s", "--journal", journal])
        #expect(pruned.stdout.hasPrefix("deleted 2 closed runs (40 events)"), "\(pruned.stdout)")
    }

    @Test func pruneDeletesOnlyOldClosedRunsAndCompactGivesSpaceBack() async throws {
        let journal = try await journalWithRuns()
        let keep = try await runCommand(durable, ["journal", "prune", "--older-than", "1d", "--journal", journal])
        #expect(keep.stdout.hasPrefix("deleted 0 closed runs (0 events)"))
        let dry = try await runCommand(durable, ["journal", "prune", "--older-than", "0s", "--dry-run", "--journal", journal])
        #expect(dry.stdout.hasPrefix("would delete 2 closed runs (40 events)"), "\(dry.stdout)")
        let pruned = try await runCommand(durable, ["journal", "prune", "--older-than", "0s", "--json", "--journal", journal])
        let object = try #require(try json(pruned.stdout) as? [String: Any])
        #expect(object["runs"] as? Int == 2 && object["events"] as? Int == 40)
        let left = try await runCommand(durable, ["runs", "count", "--journal", journal])
        #expect(left.stdout == "2 (pending 2)\n", "open runs are never deleted")
        let compact = try await runCommand(durable, ["journal", "compact", "--json", "--journal", journal])
        #expect(compact.status == 0, "\(compact.stderr)")
        let sizes = try #require(try json(compact.stdout) as? [String: Int])
        if TestBackend.isSQLite {  // VACUUM rebuilds the file; PostgreSQL's plain VACUUM keeps its files for reuse
            #expect(try #require(sizes["bytesAfter"]) <= sizes["bytesBefore"] ?? 0)
        }
        let openStatus = try await runCommand(durable, ["journal", "prune", "--older-than", "0s", "--status", "running", "--journal", journal])
        #expect(openStatus.status == 64)
        #expect(openStatus.stderr.contains("only closed runs can be deleted"))
    }

    @Test func timelineFollowReplayAllAndReset() async throws {
        let journal = try await journalWithRuns()
        let timeline = try await runCommand(durable, ["history", "op-1", "--timeline", "--journal", journal])
        let bars = timeline.stdout.split(separator: "\n").filter { $0.hasPrefix("activity  Step #") }
        #expect(bars.count == 9, "\(timeline.stdout)")
        // A step's duration reads "12 ms", or "1.05 s" when a loaded machine makes it last a second or more.
        #expect(bars.allSatisfy { $0.contains("█") && $0.contains(/\| (\d+ ms|\d+\.\d\d s)$/) }, "\(timeline.stdout)")

        let replayed = try await runCommand(app, ["replay", "--all", "--journal", journal])
        #expect(replayed.status == 0, "\(replayed.stderr)")
        #expect(replayed.stdout.contains("replayed 2 closed run(s)") && replayed.stdout.contains("2 match, 0 mismatch"))
        #expect(!replayed.stderr.contains("\r") && !replayed.stderr.contains("2/2 runs"),
                "no progress bar when standard error is not a terminal: \(replayed.stderr)")
        // On a terminal (script(1) gives the command one) the bar is drawn, and its line ends before the summary.
        let onTerminal = try await runCommand(
            "/usr/bin/script", ["-qec", "\(app) replay --all --journal '\(journal)'", "/dev/null"])
        #expect(onTerminal.status == 0, "\(onTerminal.stdout)\(onTerminal.stderr)")
        #expect(onTerminal.stdout.contains("2/2 runs\r\nreplayed 2 closed run(s)") || onTerminal.stdout.contains("2/2 runs\nreplayed 2"),
                "\(onTerminal.stdout.debugDescription)")

        let badPoint = try await runCommand(durable, ["reset", "op-1", "--to", "3", "--journal", journal])
        #expect(badPoint.status == 2)
        #expect(badPoint.stderr.contains("to event 3: it is not the start of an activation"), "\(badPoint.stderr)")
        let reset = try await runCommand(durable, ["reset", "op-1", "--to", "2", "--json", "--journal", journal])
        #expect(reset.status == 0, "\(reset.stderr)")
        let report = try #require(try json(reset.stdout) as? [String: Any])
        #expect(report["eventsKept"] as? Int == 2)
        let newRun = try #require(report["newRunID"] as? String)

        // A follower started before the worker prints the new run's events until it ends.
        let follower = try Child(durable, ["history", newRun, "--follow", "--journal", journal])
        let worker = try Child(app, ["worker", "--quiet", "--journal", journal], environment: ["STEP_MS": "1"])
        defer { worker.kill(SIGKILL) }
        let followed = try await follower.wait(timeout: .seconds(30))
        #expect(followed.status == 0, "\(follower.output)")
        #expect(follower.output.contains("WorkflowCompleted"))
        #expect(follower.output.split(separator: "\n").count >= 20)
        let runs = try await runCommand(durable, ["runs", "list", "--id-prefix", "op-1", "--json", "--journal", journal])
        let statuses = try #require(try json(runs.stdout) as? [[String: Any]]).compactMap { $0["status"] as? String }
        #expect(statuses == ["completed", "completed"])
    }

    @Test(.enabled(if: TestBackend.isSQLite, "opens the copy as a SQLite journal (a PostgreSQL backup is a pg_dump file)"))
    func aBackupTakenWhileAWorkerWritesIsAHealthyJournal() async throws {
        let journal = try await journalWithRuns()
        for i in 0..<20 {
            _ = try await runCommand(durable, ["submit", "CrashFlow", "--input", #"{"tag":"bk\#(i)"}"#, "--journal", journal])
        }
        let worker = try Child(app, ["worker", "--quiet", "--journal", journal], environment: ["STEP_MS": "20"])
        defer { worker.kill(SIGKILL) }
        try await Task.sleep(for: .milliseconds(150))  // the worker is in the middle of the runs
        let copy = temporaryPath() + ".backup.sqlite"
        let backup = try await runCommand(durable, ["journal", "backup", copy, "--journal", journal])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(backup.stdout.hasPrefix("backed up \(journal) to \(copy)"))
        let check = try await runCommand(durable, ["journal", "check", "--journal", copy])
        #expect(check.status == 0, "\(check.stdout)")
        let count = try await runCommand(durable, ["runs", "count", "--json", "--journal", copy])
        #expect(try #require(try json(count.stdout) as? [String: Any])["count"] as? Int == 24)
        let again = try await runCommand(durable, ["journal", "backup", copy, "--journal", journal])
        #expect(again.status == 3)
        #expect(again.stderr.contains("exists; a backup goes to a new file"))
    }

    @Test func shellCompletionScriptsAreGenerated() async throws {
        for shell in ["bash", "zsh", "fish"] {
            let script = try await runCommand(durable, ["--generate-completion-script", shell])
            #expect(script.status == 0)
            #expect(script.stdout.contains("journal") && script.stdout.contains("runs"), "\(shell)")
        }
    }

    /// `submit` refuses a workflow ID whose run completed unless `--id-reuse` allows it; a bad policy
    /// name is a usage error.
    @Test func submitFollowsTheWorkflowIDReusePolicy() async throws {
        let journal = try await journalWithRuns()  // op-1 completed
        let again = try await runCommand(durable, ["submit", "CrashFlow", "--input", #"{"tag":"x"}"#, "--id", "op-1", "--journal", journal])
        #expect(again.status == 2, "\(again.stdout)\(again.stderr)")
        #expect(again.stderr.contains("workflow ID op-1 was used by run") && again.stderr.contains("(completed)"), "\(again.stderr)")
        #expect(again.stderr.split(separator: "\n").count == 1)
        let allowed = try await runCommand(
            durable, ["submit", "CrashFlow", "--input", #"{"tag":"x"}"#, "--id", "op-1", "--id-reuse", "allow", "--json", "--journal", journal])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(try #require(try json(allowed.stdout) as? [String: Any])["existing"] as? Bool == false)
        let bogus = try await runCommand(
            durable, ["submit", "CrashFlow", "--input", "{}", "--id", "op-2", "--id-reuse", "sometimes", "--journal", journal])
        #expect(bogus.status == 64)
        #expect(bogus.stderr.contains("--id-reuse must be one of: allow, allow-failed, reject, terminate-if-running"), "\(bogus.stderr)")
    }

    /// A signal whose input does not decode: the application that names the signal's type refuses it
    /// (exit 2, nothing queued); the code-less CLI sends it, and the workflow records it as rejected and
    /// goes on waiting, which `runs show` and the timeline tell.
    @Test func aSignalThatDoesNotDecodeIsRefusedOrShownAsRejected() async throws {
        let journal = try await journalWithRuns()  // the workflow types are registered in it
        let worker = try Child(app, ["worker", "--journal", journal], environment: ["STEP_MS": "1"])
        defer { worker.kill(SIGKILL) }
        let submitted = try await runCommand(durable, ["submit", "ReviewClaim", "--input", #""c-1""#, "--id", "c-1", "--journal", journal])
        try #require(submitted.status == 0, "\(submitted.stderr)")
        /// Polls `runs show c-1` until its output contains `text`.
        func shown(containing text: String, json: Bool = false) async throws -> String {
            let deadline = ContinuousClock.now + .seconds(20)
            var shown = ""
            while !shown.contains(text) {
                try #require(ContinuousClock.now < deadline, "runs show never said '\(text)': \(shown)")
                try await Task.sleep(for: .milliseconds(50))
                shown = try await runCommand(app, ["runs", "show", "c-1", "--journal", journal] + (json ? ["--json"] : [])).stdout
            }
            return shown
        }
        _ = try await shown(containing: "waits for:    signal review")
        let refused = try await runCommand(app, ["signal", "c-1", "review", "--input", #"{"approve": true}"#, "--journal", journal])
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr.contains("signal 'review' input is not a valid Review"), "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1)
        let sent = try await runCommand(durable, ["signal", "c-1", "review", "--input", #"{"approve": true}"#, "--journal", journal])
        #expect(sent.status == 0, "\(sent.stderr)")
        let rejected = try await shown(containing: "rejected:     signal review")
        #expect(rejected.contains("status:       running"), "it goes on waiting: \(rejected)")
        let timeline = try await runCommand(durable, ["history", "c-1", "--timeline", "--journal", journal])
        #expect(timeline.stdout.contains("✗") && timeline.stdout.contains("rejected: input is not a valid Review"),
                "\(timeline.stdout)")
        let approved = try await runCommand(app, ["signal", "c-1", "review", "--input", #"{"approved": true}"#, "--journal", journal])
        #expect(approved.status == 0, "\(approved.stderr)")
        let object = try #require(try json(try await shown(containing: #""completed""#, json: true)) as? [String: Any])
        #expect((object["rejectedSignals"] as? [[String: Any]])?.first?["name"] as? String == "review")
        #expect(object["result"] as? String == "c-1 approved")
    }
}
