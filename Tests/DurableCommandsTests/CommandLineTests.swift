import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `durable` and `durable-test-worker` executables as a user would.
@Suite(.timeLimit(.minutes(2))) struct CommandLineTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    /// A journal in which a worker has run once (so workflow types are registered) with one completed run.
    func journalWithOneRun() async throws -> String {
        let journal = temporaryJournal()
        let result = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"cli"}"#, "--id", "cli-1", "--journal", journal],
            environment: ["STEP_MS": "1"])
        try #require(result.status == 0, "run failed: \(result.stderr)")
        #expect(result.stdout.contains("cli-a!,cli-side!"))
        return journal
    }

    @Test func badInputGivesOneClearLineAndANonZeroExit() async throws {
        let journal = try await journalWithOneRun()
        let cases: [([String], Int32, String)] = [
            (["submit", "NoSuchFlow", "--input", "{}"], 2, "error: unknown workflow type 'NoSuchFlow'; known types: ChunkFlow, CrashFlow, DocumentFlow, Family, Flaky, Gather, LineageFlow, LineageParent, ModelCallFlow, Nap, PooledFlow, ReviewClaim, Shuffle, StreamFlow, Transfer"),
            (["submit", "CrashFlow", "--input", "{\"tag\": "], 2, "error: --input is not valid JSON"),
            (["submit", "CrashFlow", "--input", "@/nonexistent/input.json"], 2, "error: cannot read input file /nonexistent/input.json"),
            (["runs", "show", "no-such-run"], 2, "error: no run with run ID or workflow ID 'no-such-run'"),
            (["history", "no-such-run"], 2, "error: no run with run ID or workflow ID 'no-such-run'"),
            (["runs", "list", "--status", "sleeping"], 64, "unknown status 'sleeping'"),
        ]
        for (arguments, status, message) in cases {
            for binary in [durable, app] {
                let result = try await runCommand(binary, arguments + ["--journal", journal])
                #expect(result.status == status, "\(arguments): \(result.stderr)")
                #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
                #expect(result.stderr.split(separator: "\n").count <= 2, "\(arguments): \(result.stderr)")
            }
        }
        let appOnly = try await runCommand(app, ["submit", "CrashFlow", "--input", #"{"label":1}"#, "--journal", journal])
        #expect(appOnly.status == 2)
        #expect(appOnly.stderr.contains("error: input is not a valid CrashFlow input (Input): missing key 'tag'"))
        let absent = siblingJournal(of: journal, "missing")
        let missing = try await runCommand(durable, ["runs", "list", "--journal", absent])
        #expect(missing.status == 3)
        #expect(missing.stderr.contains("error: no journal at \(absent)"), "\(missing.stderr)")
    }

    @Test func inspectionCommandsPrintTheRun() async throws {
        let journal = try await journalWithOneRun()
        let list = try await runCommand(durable, ["runs", "list", "--json", "--journal", journal])
        let runs = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(runs.count == 1)
        #expect(runs.first?["workflowID"] as? String == "cli-1")
        #expect(runs.first?["status"] as? String == "completed")

        let show = try await runCommand(durable, ["runs", "show", "cli-1", "--json", "--journal", journal])
        let run = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        #expect(run["eventCount"] as? Int == 20)
        #expect((run["input"] as? [String: Any])?["tag"] as? String == "cli")
        let activities = try #require(run["activities"] as? [[String: Any]])
        #expect(activities.count == 9)
        #expect(activities.allSatisfy { $0["state"] as? String == "completed" && $0["attempts"] as? Int == 1 })
        #expect(activities.first?["activityType"] as? String == "Step")
        let human = try await runCommand(durable, ["runs", "show", "cli-1", "--journal", journal])
        #expect(human.stdout.contains("SEQ  ACTIVITY  STATE      ATTEMPTS"))

        let history = try await runCommand(durable, ["history", "cli-1", "--journal", journal])
        #expect(history.status == 0)
        #expect(history.stdout.contains("ActivityScheduled"))
        #expect(history.stdout.split(separator: "\n").count == 22)

        let replay = try await runCommand(app, ["replay", "cli-1", "--journal", journal])
        #expect(replay.status == 0)
        #expect(replay.stdout.contains("20 events replayed, the code matches the history"))
        let noCode = try await runCommand(durable, ["replay", "cli-1", "--journal", journal])
        #expect(noCode.status == 64, "the code-less durable binary has no replay command")
    }

    @Test func runsShowAndHistoryNameEachAttemptsSlotAndWhetherItWasWarm() async throws {
        let journal = temporaryJournal()
        let result = try await runCommand(app, ["run", "PooledFlow", "--input", "2", "--id", "pooled", "--journal", journal])
        try #require(result.status == 0, "run failed: \(result.stderr)")
        let show = try await runCommand(durable, ["runs", "show", "pooled", "--json", "--journal", journal])
        let run = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        let attempts = try #require(run["activities"] as? [[String: Any]]).map { $0["lastAttempt"] as? [String: Any] }
        #expect(attempts.map { $0?["slot"] as? String } == ["Pooled#1", "Pooled#1"])
        #expect(attempts.map { $0?["cold"] as? Bool } == [true, false], "the first call warmed the slot, the second found it warm")
        #expect((attempts.first??["warmUpMs"] as? Double ?? 0) >= 20)
        #expect(attempts.allSatisfy { ($0?["runMs"] as? Double ?? 0) >= 5 })

        let human = try await runCommand(durable, ["runs", "show", "pooled", "--journal", journal])
        // A line reads "slot Pooled#1 cold, [queue 0.1 ms, ]warm-up 24.1 ms, run 6.2 ms".
        let rows = human.stdout.split(separator: "\n")
        #expect(human.stdout.contains("LAST ATTEMPT"))
        #expect(rows.contains { $0.contains("slot Pooled#1 cold, ") && $0.contains("warm-up ") && $0.contains("run ") })
        #expect(rows.contains { $0.contains("slot Pooled#1 warm, ") && !$0.contains("warm-up ") && $0.contains("run ") })
        let history = try await runCommand(durable, ["history", "pooled", "--journal", journal])
        let completed = history.stdout.split(separator: "\n").filter { $0.contains("ActivityCompleted") }
        #expect(completed.count == 2)
        #expect(completed.first.map { $0.contains("[slot Pooled#1 cold, ") && $0.contains("warm-up ") } == true)
        #expect(completed.last?.contains("[slot Pooled#1 warm, ") == true)
    }

    @Test func anExportedHistoryReplaysFromItsFileAndAChangedOneDoesNot() async throws {
        let journal = try await journalWithOneRun()
        let file = temporaryPath() + ".json"
        let export = try await runCommand(durable, ["history", "export", "cli-1", "-o", file, "--journal", journal])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(export.stdout.contains("wrote 20 events of run"))
        let document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        #expect(document["format"] as? String == "durable.history")
        #expect((document["run"] as? [String: Any])?["workflowType"] as? String == "CrashFlow")
        #expect((document["events"] as? [Any])?.count == 20)

        // Replayed by the app's code from the file alone: no journal needed.
        let replay = try await runCommand(app, ["replay", "--file", file, "--journal", "/nonexistent/journal.sqlite"])
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(replay.stdout.contains("20 events replayed, the code matches the history"))

        // History that the code would not have made: the first activity renamed.
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let changed = try #require(text.range(of: #""name" : "Step""#))
        try text.replacingCharacters(in: changed, with: #""name" : "Stamp""#).write(toFile: file, atomically: true, encoding: .utf8)
        let mismatch = try await runCommand(app, ["replay", "--file", file])
        #expect(mismatch.status == 1)
        #expect(mismatch.stderr.contains("Stamp"), "\(mismatch.stderr)")

        try "{}".write(toFile: file, atomically: true, encoding: .utf8)
        let bad = try await runCommand(app, ["replay", "--file", file])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("error: history file \(file) is not a Durable history"), "\(bad.stderr)")
        let both = try await runCommand(app, ["replay", "cli-1", "--file", file])
        #expect(both.status == 64)
    }

    /// `history export -o` into a directory, or into a folder that does not exist, says so plainly.
    @Test func historyExportSaysPlainlyWhyItCannotWrite() async throws {
        let journal = try await journalWithOneRun()
        let folder = temporaryPath() + ".d"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let cases = [(folder, "error: cannot write \(folder): is a directory"),
                     (folder + "/no/such/file.json", "error: cannot write \(folder)/no/such/file.json: no such directory \(folder)/no/such")]
        for (path, message) in cases {
            let export = try await runCommand(durable, ["history", "export", "cli-1", "-o", path, "--journal", journal])
            #expect(export.status == 2, "\(export.stderr)")
            #expect(export.stderr == message + "\n", "\(export.stderr)")
        }
    }

    /// An `--input @file` over the payload limit is refused before it is read, and nothing is recorded.
    @Test func anInputFileOverThePayloadLimitIsRefused() async throws {
        let journal = try await journalWithOneRun()
        let file = temporaryPath("big") + ".json"
        // A JSON string one byte over the limit, quotes included.
        try Data("\"".utf8 + [UInt8](repeating: UInt8(ascii: "x"), count: DurableLimits.maximumPayloadBytes - 1) + "\"".utf8)
            .write(to: URL(fileURLWithPath: file))
        let submit = try await runCommand(durable, ["submit", "CrashFlow", "--input", "@" + file, "--id", "big-1", "--journal", journal])
        #expect(submit.status == 2, "\(submit.stderr)")
        #expect(submit.stderr == "error: input file \(file) is \(DurableLimits.maximumPayloadBytes + 1) bytes, over the limit of "
            + "\(DurableLimits.maximumPayloadBytes) bytes (16 MiB) a payload may have; pass a reference instead\n", "\(submit.stderr)")
        let list = try await runCommand(durable, ["runs", "list", "--json", "--journal", journal])
        #expect(!list.stdout.contains("big-1"))
    }

    /// `durable submit` from one process, a worker in another picks the run up; `--wait` prints the result.
    @Test func submittedRunIsPickedUpByARunningWorker() async throws {
        let journal = try await journalWithOneRun()
        let input = #"{"tag":"sub"}"#
        let first = try await runCommand(durable, ["submit", "CrashFlow", "--input", input, "--id", "sub-1", "--journal", journal])
        let second = try await runCommand(durable, ["submit", "CrashFlow", "--input", input, "--id", "sub-1", "--journal", journal])
        let runID = first.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(first.status == 0 && runID.count == 36)
        #expect(second.stdout.hasPrefix("\(runID) (workflow ID sub-1 was already open)"))

        let worker = try Child(app, ["worker", "--journal", journal], environment: ["STEP_MS": "1"])
        defer { worker.kill(SIGKILL) }
        // A second workflow ID, submitted while the worker runs, waited for. (sub-1 again would be refused
        // once its run has completed: the default reuse policy.)
        let waited = try await runCommand(
            durable, ["submit", "CrashFlow", "--input", input, "--id", "sub-2", "--wait", "--journal", journal])
        #expect(waited.status == 0, "\(waited.stderr)")
        #expect(waited.stdout.contains("sub-a!,sub-side!"))
        worker.kill(SIGTERM)
        let exit = try await worker.wait()
        #expect(exit.status == 0)
        #expect(worker.output.contains("run \(runID) completed"))
        #expect(worker.output.contains("worker stopped cleanly"))
    }
}
