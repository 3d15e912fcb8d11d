import DurableTestSupport
import Foundation
import Testing

/// `runs show` warns about an open run whose history is past the continue-as-new threshold.
@Suite(.timeLimit(.minutes(2))) struct LongHistoryCommandTests {
    /// `durable` and a journal with `long-1` (past the threshold) and `short-1` (below it).
    func journalWithRuns() async throws -> (durable: String, journal: String) {
        (try productPath("durable"), try await journalWithLongAndShortRuns())
    }

    @Test func runsShowWarnsOfAHistoryPastTheThresholdAndNotBelowIt() async throws {
        let (durable, journal) = try await journalWithRuns()
        let long = try await runCommand(durable, ["runs", "show", "long-1", "--journal", journal])
        #expect(long.status == 0, "\(long.stderr)")
        let warning = long.stdout.split(separator: "\n").first { $0.hasPrefix("warning:") }.map(String.init) ?? ""
        #expect(warning.contains("1 events and 10,485,762 bytes of payloads"), "\(long.stdout)")
        #expect(warning.contains("10,000 events or 10 MB"), "\(warning)")
        #expect(warning.contains("ctx.continueAsNew(with:)"), "\(warning)")
        let short = try await runCommand(durable, ["runs", "show", "short-1", "--journal", journal])
        #expect(short.status == 0, "\(short.stderr)")
        #expect(!short.stdout.contains("warning:"), "\(short.stdout)")
    }

    @Test func runsShowJSONCarriesTheWarningOrNull() async throws {
        let (durable, journal) = try await journalWithRuns()
        func show(_ id: String) async throws -> [String: Any] {
            let shown = try await runCommand(durable, ["runs", "show", id, "--json", "--journal", journal])
            try #require(shown.status == 0, "\(shown.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
        }
        let long = try await show("long-1")
        #expect((long["historyWarning"] as? String)?.contains("ctx.continueAsNew(with:)") == true)
        #expect(long["historyPayloadBytes"] as? Int == 10 * 1024 * 1024 + 2)
        let short = try await show("short-1")
        #expect(short["historyWarning"] is NSNull, "\(short["historyWarning"] ?? "missing")")
        #expect(short["historyPayloadBytes"] as? Int == 5)
    }
}
