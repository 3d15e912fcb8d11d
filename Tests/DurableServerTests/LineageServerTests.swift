import DurableServer
import DurableTestSupport
import Foundation
import Testing

/// Model lineage through the HTTP API: a run's activities and history carry the model each attempt
/// ran on, as `runs show --json` and `history --json` do.
@Suite(.timeLimit(.minutes(2))) struct LineageServerTests {
    @Test func runAndHistoryRoutesNameTheModelOfEachAttempt() async throws {
        let server = try await ServerProcess(environment: ["TEST_MODEL_VERSION": "7"])
        let runID = try await server.start("LineageFlow", input: "claim")
        let result = try await server.request("GET", "/v1/runs/\(runID)/result?wait=20s", role: .reader)
        #expect(result.json["status"] as? String == "completed", "\(result.text)")

        let run = try await server.request("GET", "/v1/runs/\(runID)", role: .reader)
        let activities = try #require(run.json["activities"] as? [[String: Any]])
        #expect(activities.count == 2)
        for activity in activities {
            let attempt = try #require(activity["lastAttempt"] as? [String: Any], "\(run.text)")
            #expect(attempt["model"] as? String == "scorer")
            #expect(attempt["modelVersion"] as? String == "7")
            #expect(attempt["modelMetadata"] as? [String: String] == ["prompt": "p-7"])
            #expect((attempt["inputSHA256"] as? String)?.count == 64)
            #expect((attempt["outputSHA256"] as? String)?.count == 64)
        }

        let history = try await server.request("GET", "/v1/runs/\(runID)/history", role: .reader)
        let events = try #require(history.json["events"] as? [[String: Any]])
        let completed = events.filter { $0["kind"] as? String == "ActivityCompleted" }
        #expect(completed.count == 2)
        #expect(completed.allSatisfy { ($0["attemptDetails"] as? [String: Any])?["modelVersion"] as? String == "7" })
        _ = try await server.stop()
    }
}
