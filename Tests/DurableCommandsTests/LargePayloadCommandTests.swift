import DurableTestSupport
import Foundation
import Testing

/// Large payloads stored out of line, through the commands an operator runs: a document passed
/// between activities is stored once, and export, replay, copy, check and prune handle it.
@Suite(.timeLimit(.minutes(2))) struct LargePayloadCommandTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    func stats(_ journal: String) async throws -> [String: Any] {
        let result = try await runCommand(durable, ["journal", "stats", "--json", "--journal", journal])
        try #require(result.status == 0, "\(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    @Test func aDocumentIsStoredOnceAndExportReplayCopyCheckAndPruneHandleIt() async throws {
        let journal = temporaryJournal()
        for id in ["doc-1", "doc-2"] {  // the same 300 KB document in both runs
            let run = try await runCommand(app, ["run", "DocumentFlow", "--input", "300000", "--id", id, "--journal", journal])
            try #require(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("600000"), "\(run.stdout)")
        }
        var counts = try await stats(journal)
        #expect(counts["outOfLinePayloads"] as? Int == 1, "one document, six events in two runs refer to it: \(counts)")
        #expect((counts["outOfLineBytes"] as? Int ?? 0) > 300_000)

        let check = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(check.status == 0 && check.stdout.contains(", 1 payloads stored out of line"), "\(check.stdout)\(check.stderr)")

        let file = temporaryPath() + ".json"
        let export = try await runCommand(durable, ["history", "export", "doc-1", "-o", file, "--journal", journal])
        #expect(export.status == 0, "\(export.stderr)")
        let exported = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(exported.count > 900_000, "the file holds the document itself, three times: \(exported.count) bytes")
        let fromFile = try await runCommand(app, ["replay", "--file", file, "--journal", "/nonexistent/journal.sqlite"])
        #expect(fromFile.status == 0 && fromFile.stdout.contains("the code matches the history"), "\(fromFile.stdout)\(fromFile.stderr)")
        let all = try await runCommand(app, ["replay", "--all", "--journal", journal])
        #expect(all.status == 0 && all.stdout.contains("2 match, 0 mismatch"), "\(all.stdout)\(all.stderr)")

        let copy = siblingJournal(of: journal, "copy")
        let copied = try await runCommand(durable, ["journal", "copy", "--from", journal, "--to", copy])
        #expect(copied.status == 0, "\(copied.stderr)")
        #expect(try await stats(copy)["outOfLinePayloads"] as? Int == 1, "the copy stores the document out of line too")
        let again = temporaryPath() + ".json"
        _ = try await runCommand(durable, ["history", "export", "doc-1", "-o", again, "--journal", copy])
        #expect(try Data(contentsOf: URL(fileURLWithPath: again)) == exported, "the copy's history exports byte for byte")

        let pruned = try await runCommand(durable, ["journal", "prune", "--older-than", "0s", "--journal", journal])
        #expect(pruned.status == 0 && pruned.stdout.hasPrefix("deleted 2 closed runs"), "\(pruned.stdout)\(pruned.stderr)")
        counts = try await stats(journal)
        #expect(counts["outOfLinePayloads"] as? Int == 0 && counts["outOfLineBytes"] as? Int == 0, "\(counts)")
        #expect(try await runCommand(durable, ["journal", "check", "--journal", journal]).status == 0)
    }

    @Test func aBadSizeInTheEnvironmentIsOneClearLine() async throws {
        let journal = temporaryJournal()
        let result = try await runCommand(
            durable, ["runs", "list", "--journal", journal], environment: ["DURABLE_LARGE_PAYLOAD_BYTES": "lots"])
        #expect(result.status == 2, "bad input: \(result.stderr)")
        #expect(result.stderr == "error: DURABLE_LARGE_PAYLOAD_BYTES is 'lots': expected a number of bytes from 1024 to 16777216\n")
    }
}
