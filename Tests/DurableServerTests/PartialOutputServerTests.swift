import DurableServer
import DurableTestSupport
import Foundation
import Testing

/// Partial output through the HTTP API: the history stream carries `ActivityOutput` events as they
/// are recorded, and the history read whole marks a failed attempt's output discarded.
@Suite(.timeLimit(.minutes(2))) struct PartialOutputServerTests {
    @Test func theStreamCarriesPartialOutputAndTheWholeHistoryMarksDiscardedOutput() async throws {
        let server = try await ServerProcess()
        let input: [String: Any] = ["tokens": ["re", "view", "ed"], "ms": 40, "failAfter": 1]
        let runID = try await server.start("StreamFlow", input: input)
        // Server-sent events, followed to the end of the run.
        let stream = try await server.request(
            "GET", "/v1/runs/\(runID)/history", role: .reader, headers: ["Accept": "text/event-stream"])
        #expect(stream.status == 200)
        let outputs = stream.text.components(separatedBy: "event: ActivityOutput").count - 1
        #expect(outputs >= 2, "attempt 1's chunk and attempt 2's: \(stream.text)")
        #expect(stream.text.contains("event: end"))

        let history = try await server.request("GET", "/v1/runs/\(runID)/history", role: .reader)
        let events = try #require(history.json["events"] as? [[String: Any]])
        let partial = events.filter { $0["kind"] as? String == "ActivityOutput" }
        #expect(partial.count == outputs)
        for event in partial {
            let discarded = event["discarded"] as? Bool == true
            #expect(discarded == (event["attempt"] as? Int == 1), "\(event)")
        }
        #expect(partial.filter { $0["attempt"] as? Int == 2 }.flatMap { $0["data"] as? [String] ?? [] } == ["re", "view", "ed"])
        _ = try await server.stop()
    }
}
