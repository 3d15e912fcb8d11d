import DurableServer
import DurableTestSupport
import Foundation
import Testing

/// `GET /v1/runs/{id}` carries the long-history warning as `runs show --json` does.
@Suite(.timeLimit(.minutes(2))) struct LongHistoryServerTests {
    @Test func aRunPastTheThresholdHasAHistoryWarningAndAShortOneNull() async throws {
        let journal = try await journalWithLongAndShortRuns()
        let server = try await ServerProcess(codeless: true, journal: journal)
        let long = try await server.request("GET", "/v1/runs/long-1", role: .reader)
        #expect(long.status == 200, "\(long.text.prefix(500))")
        #expect((long.json["historyWarning"] as? String)?.contains("ctx.continueAsNew(with:)") == true)
        let short = try await server.request("GET", "/v1/runs/short-1", role: .reader)
        #expect(short.status == 200, "\(short.text)")
        #expect(short.json["historyWarning"] is NSNull, "\(short.text)")
    }
}
