import Durable
import DurableTestSupport
import Foundation
import Testing

/// Partial output in `durable history`, run as a user would: `ActivityOutput` events, and those of an
/// attempt that failed marked discarded (text and JSON).
@Suite(.timeLimit(.minutes(2))) struct PartialOutputCommandTests {
    @Test func historyMarksTheFailedAttemptsPartialOutputDiscarded() async throws {
        let durable = try productPath("durable")
        let app = try productPath("durable-test-worker")
        let journal = temporaryJournal()
        let input = #"{"tokens":["ap","pro","ved"],"ms":30,"failAfter":2}"#
        let run = try await runCommand(app, ["run", "StreamFlow", "--input", input, "--id", "stream-1", "--journal", journal])
        try #require(run.status == 0, "run failed: \(run.stderr)")
        #expect(run.stdout.contains("approved"))

        let json = try await runCommand(durable, ["history", "stream-1", "--json", "--journal", journal])
        #expect(json.status == 0, "\(json.stderr)")
        let events = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        let outputs = events.filter { $0["kind"] as? String == "ActivityOutput" }
        let byAttempt = Dictionary(grouping: outputs) { $0["attempt"] as? Int ?? 0 }
        #expect(byAttempt[1]?.flatMap { $0["data"] as? [String] ?? [] } == ["ap", "pro"])
        #expect(byAttempt[2]?.flatMap { $0["data"] as? [String] ?? [] } == ["ap", "pro", "ved"])
        #expect(byAttempt[1]?.allSatisfy { $0["discarded"] as? Bool == true } == true, "\(outputs)")
        #expect(byAttempt[2]?.allSatisfy { $0["discarded"] == nil } == true, "\(outputs)")

        let text = try await runCommand(durable, ["history", "stream-1", "--journal", journal])
        let lines = text.stdout.split(separator: "\n").filter { $0.contains("ActivityOutput") }
        #expect(lines.count == outputs.count)
        #expect(lines.filter { $0.contains("(discarded)") }.count == byAttempt[1]?.count, "\(text.stdout)")
    }
}
