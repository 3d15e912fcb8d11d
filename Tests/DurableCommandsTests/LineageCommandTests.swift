import Durable
import DurableTestSupport
import Foundation
import Testing

/// `durable lineage`, run as a user would, on runs of ``LineageFlow`` (its ``Score`` activity serves
/// model `scorer`, version `TEST_MODEL_VERSION`).
@Suite(.timeLimit(.minutes(2))) struct LineageCommandTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    /// A journal with runs lin-1 and lin-3 served by scorer@1, lin-2 by scorer@2, and cli-0 (a CrashFlow
    /// run) by no model.
    func journalWithLineage() async throws -> String {
        let journal = temporaryJournal()
        let crash = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"cli"}"#, "--id", "cli-0", "--journal", journal],
            environment: ["STEP_MS": "1"])
        try #require(crash.status == 0, "run failed: \(crash.stderr)")
        for (id, version) in [("lin-1", "1"), ("lin-2", "2"), ("lin-3", "1")] {
            let result = try await runCommand(
                app, ["run", "LineageFlow", "--input", #""claim \#(id)""#, "--id", id, "--journal", journal],
                environment: ["TEST_MODEL_VERSION": version])
            try #require(result.status == 0, "run failed: \(result.stderr)")
        }
        return journal
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// SHA-256 by `sha256sum`, independent of the engine's code.
    func sha256sum(_ text: String) async throws -> String {
        let path = temporaryPath("bytes")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let result = try await runCommand("/usr/bin/sha256sum", [path])
        return String(result.stdout.prefix(64))
    }

    @Test func lineageOfARunNamesTheModelOfEachDecisionWithItsHashes() async throws {
        let journal = try await journalWithLineage()
        // The payloads exactly as journaled, from the history export.
        let export = try json(try await runCommand(durable, ["history", "export", "lin-1", "--journal", journal]).stdout)
        let events = try #require(export["events"] as? [[String: Any]])
        let scheduled = events.filter { $0["kind"] as? String == "ActivityScheduled" }.compactMap { $0["data"] as? String }
        let completed = events.filter { $0["kind"] as? String == "ActivityCompleted" }.compactMap { $0["data"] as? String }
        try #require(scheduled.count == 2 && completed.count == 2)

        let result = try await runCommand(durable, ["lineage", "lin-1", "--json", "--journal", journal])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try json(result.stdout)
        #expect(object["workflowID"] as? String == "lin-1")
        let attempts = try #require(object["attempts"] as? [[String: Any]])
        #expect(attempts.count == 2)
        for (index, attempt) in attempts.enumerated() {
            #expect(attempt["activityType"] as? String == "Score")
            #expect(attempt["seq"] as? Int == index + 1)
            #expect(attempt["attempt"] as? Int == 1)
            #expect(attempt["outcome"] as? String == "completed")
            let model = try #require(attempt["model"] as? [String: Any])
            #expect(model["name"] as? String == "scorer")
            #expect(model["version"] as? String == "1")
            #expect(model["metadata"] as? [String: String] == ["prompt": "p-7"])
            #expect((model["weightsSHA256"] as? String)?.count == 64)
            #expect(attempt["inputSHA256"] as? String == (try await sha256sum(scheduled[index])))
            #expect(attempt["outputSHA256"] as? String == (try await sha256sum(completed[index])))
            #expect(attempt["runMs"] is Double)
        }

        let text = try await runCommand(app, ["lineage", "lin-1", "--journal", journal])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("run ") == true && lines.first?.contains("workflow ID lin-1  LineageFlow  completed") == true)
        #expect(lines.count == 5, "\(text.stdout)")
        #expect(lines[1].hasPrefix("#") && lines[1].contains("MODEL") && lines[1].contains("INPUT"))
        let inputPrefix = String(try await sha256sum(scheduled[0]).prefix(12))
        #expect(lines[2].contains("Score") && lines[2].contains("scorer@1") && lines[2].contains(inputPrefix)
            && lines[2].contains("prompt=p-7"), "\(lines[2])")
        #expect(lines[4] == "2 of 2 attempt(s) recorded a model; hashes are SHA-256, first 12 hex digits (--json: whole)")

        let plain = try await runCommand(durable, ["lineage", "cli-0", "--journal", journal])
        #expect(plain.status == 0)
        let plainLines = plain.stdout.split(separator: "\n")
        #expect(plainLines.last?.hasPrefix("0 of \(plainLines.count - 3) attempt(s) recorded a model") == true, "\(plain.stdout)")
        #expect(plainLines.dropFirst(2).dropLast().allSatisfy { $0.contains(" Step ") && $0.contains(" completed  -  ") })

        // runs show and history name the model where they show an attempt.
        let show = try await runCommand(durable, ["runs", "show", "lin-2", "--journal", journal])
        #expect(show.stdout.contains("model scorer@2"), "\(show.stdout)")
        let history = try await runCommand(durable, ["history", "lin-2", "--journal", journal])
        #expect(history.stdout.contains("[run ") && history.stdout.contains("model scorer@2]"), "\(history.stdout)")
        let historyJSON = try await runCommand(durable, ["history", "lin-2", "--json", "--journal", journal])
        #expect(historyJSON.stdout.contains(#""modelVersion" : "2""#) || historyJSON.stdout.contains(#""modelVersion":"2""#))
    }

    @Test func lineageOfARunFollowsTheChildRunsItStarted() async throws {
        let journal = temporaryJournal()
        let result = try await runCommand(
            app, ["run", "LineageParent", "--input", #""claim fam""#, "--id", "fam-1", "--journal", journal],
            environment: ["TEST_MODEL_VERSION": "3"])
        try #require(result.status == 0, "run failed: \(result.stderr)")

        let lineage = try await runCommand(durable, ["lineage", "fam-1", "--json", "--journal", journal])
        #expect(lineage.status == 0, "\(lineage.stderr)")
        let object = try json(lineage.stdout)
        let own = try #require(object["attempts"] as? [[String: Any]])
        #expect(own.count == 1)
        let children = try #require(object["children"] as? [[String: Any]])
        #expect(children.count == 1)
        let child = try #require(children.first)
        #expect(child["workflowID"] as? String == "fam-1/child")
        #expect(child["workflowType"] as? String == "LineageFlow")
        #expect(child["parentSeq"] as? Int != nil)
        let childAttempts = try #require(child["attempts"] as? [[String: Any]])
        #expect(childAttempts.count == 2)
        for attempt in own + childAttempts {
            let model = attempt["model"] as? [String: Any]
            #expect(model?["name"] as? String == "scorer" && model?["version"] as? String == "3", "\(attempt)")
        }
        // The child's decisions are the ones on its own input.
        let childInput = try await sha256sum(#""claim fam (child)""#)
        #expect(childAttempts.first?["inputSHA256"] as? String == childInput)

        let text = try await runCommand(durable, ["lineage", "fam-1", "--journal", journal])
        let lines = text.stdout.split(separator: "\n").map(String.init)
        let childHeading = try #require(lines.firstIndex { $0.hasPrefix("child run ") && $0.contains("fam-1/child") }, "\(text.stdout)")
        #expect(lines[..<childHeading].contains("1 of 1 attempt(s) recorded a model; hashes are SHA-256, first 12 hex digits (--json: whole)"))
        #expect(lines[childHeading...].contains("2 of 2 attempt(s) recorded a model; hashes are SHA-256, first 12 hex digits (--json: whole)"))
        // The child, asked for alone, has no children.
        let alone = try json(try await runCommand(durable, ["lineage", "fam-1/child", "--json", "--journal", journal]).stdout)
        #expect(alone["children"] == nil && (alone["attempts"] as? [Any])?.count == 2)
    }

    @Test func lineageOfAModelVersionFindsExactlyTheRunsItTouched() async throws {
        let journal = try await journalWithLineage()
        func touched(_ arguments: [String]) async throws -> (ids: [String], object: [String: Any]) {
            let result = try await runCommand(durable, ["lineage"] + arguments + ["--json", "--journal", journal])
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            let object = try json(result.stdout)
            let runs = try #require(object["runs"] as? [[String: Any]])
            return (runs.compactMap { $0["workflowID"] as? String }, object)
        }
        let version1 = try await touched(["--model", "scorer@1"])
        #expect(version1.ids == ["lin-3", "lin-1"], "newest first")
        #expect(version1.object["scanned"] as? Int == 4)
        #expect(version1.object["limitReached"] as? Bool == false)
        #expect(version1.object["version"] as? String == "1")
        let runs = try #require(version1.object["runs"] as? [[String: Any]])
        #expect(runs.first?["attempts"] as? Int == 2)
        #expect(runs.first?["activities"] as? [String] == ["Score"])
        #expect(try await touched(["--model", "scorer@2"]).ids == ["lin-2"])
        let anyVersion = try await touched(["--model", "scorer"])
        #expect(anyVersion.ids == ["lin-3", "lin-2", "lin-1"])
        #expect((anyVersion.object["runs"] as? [[String: Any]])?[1]["versions"] as? [String] == ["2"])
        #expect(try await touched(["--model", "scorer@3"]).ids.isEmpty)
        #expect(try await touched(["--model", "scorer@1", "--since", "2999-01-01"]).ids.isEmpty)
        let limited = try await touched(["--model", "scorer", "--limit", "2"])
        #expect(limited.ids == ["lin-3", "lin-2"])
        #expect(limited.object["limitReached"] as? Bool == true)

        let text = try await runCommand(durable, ["lineage", "--model", "scorer@1", "--journal", journal])
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(text.stdout)")
        #expect(lines[0].hasPrefix("RUN ID") && lines[1].contains("lin-3") && lines[2].contains("lin-1"))
        #expect(lines[3] == "2 of 4 run(s) scanned were served by model scorer@1")
        let capped = try await runCommand(durable, ["lineage", "--model", "scorer", "--limit", "1", "--journal", journal])
        #expect(capped.stdout.hasSuffix("1 of 1 run(s) scanned were served by model scorer (--limit 1 reached: older runs were not scanned)\n"))
    }

    @Test func lineageShowsTheModelAProcessPoolWorkerReportedInItsReadyLine() async throws {
        // The fixture's ready line says "model": "fixture"; FixtureModel declares none.
        let journal = temporaryJournal()
        let run = try await runCommand(
            app, ["run", "ModelCallFlow", "--input", #"{"op":"echo"}"#, "--id", "pool-1", "--journal", journal],
            environment: ["TEST_PROCESS_POOL": "1"])
        try #require(run.status == 0, "run failed: \(run.stderr)")
        let result = try await runCommand(durable, ["lineage", "pool-1", "--json", "--journal", journal])
        let attempts = try #require(try json(result.stdout)["attempts"] as? [[String: Any]])
        let attempt = try #require(attempts.first)
        #expect(attempts.count == 1)
        #expect((attempt["model"] as? [String: Any])?["name"] as? String == "fixture")
        #expect((attempt["model"] as? [String: Any])?["version"] as? String == "")
        #expect(attempt["slot"] as? String == "FixtureModel#1" || attempt["slot"] as? String == "FixtureModel#2")
        #expect(attempt["pid"] is Int)
        // Warm or cold: the pool's warm-up and the first attempt race (under load the attempt may
        // start the slot itself); either way it is recorded.
        #expect(attempt["cold"] is Bool)
        #expect((attempt["outputSHA256"] as? String)?.count == 64)
        let text = try await runCommand(durable, ["lineage", "pool-1", "--journal", journal])
        #expect(text.stdout.contains("FixtureModel  1        completed  fixture "), "\(text.stdout)")
        let touched = try await runCommand(durable, ["lineage", "--model", "fixture", "--json", "--journal", journal])
        #expect((try json(touched.stdout)["runs"] as? [[String: Any]])?.compactMap { $0["workflowID"] as? String } == ["pool-1"])
    }

    @Test func badLineageArgumentsGiveOneClearLine() async throws {
        let journal = try await journalWithLineage()
        let cases: [([String], Int32, String)] = [
            ([], 64, "give a run ID or workflow ID, or --model NAME[@VERSION]"),
            (["lin-1", "--model", "scorer"], 64, "give a run ID or workflow ID, or --model, not both"),
            (["lin-1", "--limit", "5"], 64, "--since and --limit go with --model only"),
            (["--model", "@1"], 64, "the model name before @ is empty"),
            (["--model", "scorer@"], 64, "the version after @ is empty"),
            (["--model", ""], 64, "must not be empty"),
            (["--model", "scorer", "--limit", "-1"], 64, "must be 0…1000000"),
            (["--model", "scorer", "--since", "yesterday"], 64, "--since"),
            (["no-such-run"], 2, "error: no run with run ID or workflow ID 'no-such-run'"),
        ]
        for (arguments, status, message) in cases {
            let result = try await runCommand(durable, ["lineage"] + arguments + ["--journal", journal])
            #expect(result.status == status, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count <= 2, "\(arguments): \(result.stderr)")
        }
        let missing = try await runCommand(durable, ["lineage", "lin-1", "--journal", journal + ".absent"])
        #expect(missing.status == 3, "\(missing.stderr)")
    }
}
