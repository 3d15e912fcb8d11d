import DurableServer
import DurableTestSupport
import Foundation
import Testing

/// `GET /v1/runs/{id}` carries the long-history warning as `runs show --json` does.
@Suite(.timeLimit(.minutes(2))) struct LongHistoryServerTests {
    @Test func aRunPastTheThresholdHasAHistoryWarningAndAShortOneNull() async throws {
        let journal = temporaryJournal()
        let created = try await runCommand(  // the code-less `durable` opens only a journal that exists
            try productPath("durable-test-worker"),
            ["run", "CrashFlow", "--input", #"{"tag":"op-1"}"#, "--id", "op-1", "--journal", journal],
            environment: ["STEP_MS": "1"])
        try #require(created.status == 0, "\(created.stderr)")
        let input = temporaryPath("long-input") + ".json"
        try Data(("\"" + String(repeating: "x", count: 10 * 1024 * 1024) + "\"").utf8)
            .write(to: URL(fileURLWithPath: input))
        let durable = try productPath("durable")
        for (id, value) in [("long-1", "@" + input), ("short-1", "60000")] {
            let submit = try await runCommand(
                durable, ["submit", "Nap", "--input", value, "--id", id, "--journal", journal])
            try #require(submit.status == 0, "\(submit.stderr)")
        }
        let server = try await ServerProcess(codeless: true, journal: journal)
        let long = try await server.request("GET", "/v1/runs/long-1", role: .reader)
        #expect(long.status == 200, "\(long.text.prefix(500))")
        #expect((long.json["historyWarning"] as? String)?.contains("ctx.continueAsNew(with:)") == true)
        let short = try await server.request("GET", "/v1/runs/short-1", role: .reader)
        #expect(short.status == 200, "\(short.text)")
        #expect(short.json["historyWarning"] is NSNull, "\(short.text)")
    }
}
