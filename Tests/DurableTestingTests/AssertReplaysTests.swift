import Durable
import DurableTesting
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct AssertReplaysTests {
    /// Recorded by `Renewal` before the "check-payment-first" change (its first reminder attempt failed).
    var recordedBeforeTheChange: URL {
        get throws {
            try #require(Bundle.module.url(
                forResource: "renewal-before-check-payment", withExtension: "json", subdirectory: "Histories"))
        }
    }

    @Test func aHistoryRecordedBeforeAPatchedChangeReplaysThroughTheNewCode() throws {
        let report = try assertReplays(history: try recordedBeforeTheChange, workflow: Renewal.self)
        #expect(report.eventCount == 7)
        #expect(report.decisions.contains { $0.contains("SendReminder") })
        #expect(!report.decisions.contains { $0.contains("CheckPayment") }, "the old history stays on the old branch")
    }

    @Test func anUnpatchedChangeIsReportedAtTheFirstDivergingEvent() throws {
        let url = try recordedBeforeTheChange
        let error = try #require(throws: ReplayMismatch.self) {
            try assertReplays(history: url, workflow: UnpatchedRenewal.self)
        }
        #expect(error.description.contains(url.path))
        #expect(error.description.contains("event 3"), "\(error)")
        #expect(error.description.contains("SendReminder") && error.description.contains("CheckPayment"), "\(error)")
    }

    @Test func anExportedHistoryKeepsEveryEventExactly() async throws {
        let env = try await TestEnvironment()
        env.register(Renewal.self)
        env.stub(CheckPayment.self, returning: true)
        let run = try await env.engine.start(Renewal.self, input: "cy")
        #expect(try await run.result() == "cy paid")
        let (record, events) = try await env.engine.history(run.runID)
        let path = env.journalLocation + ".history.json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try HistoryExport(run: record, events: events).encoded().write(to: URL(fileURLWithPath: path))

        let (readRun, readEvents) = try HistoryExport.read(from: path).decoded(path: path)
        #expect(readEvents == events)
        #expect(readRun.seed == record.seed && readRun.runID == record.runID)
        try assertReplays(history: path, workflow: Renewal.self)
        await env.close()
    }

    @Test func unreadableHistoriesAreRefusedWithTheFileAndTheReason() throws {
        let original = try String(contentsOf: try recordedBeforeTheChange, encoding: .utf8)
        let cases: [(String, String)] = [
            ("{\"events\": [", "is not a JSON object"),
            (#"{"format": "something.else", "version": 1}"#, "is not a Durable history"),
            (original.replacingOccurrences(of: #""version" : 1"#, with: #""version" : 9"#),
             "is history format version 9, from a newer Durable; this build reads up to version 2"),
            (original.replacingOccurrences(of: #""kind" : "TimerFired""#, with: #""kind" : "TimerRang""#),
             "event 2 (index 2) has unknown kind 'TimerRang'"),
            (original.replacingOccurrences(of: #""seed" : ""#, with: #""seed" : "x"#), "is not an unsigned 64-bit integer"),
            (original.replacingOccurrences(of: #""workflowType" : "Renewal""#, with: #""workflowType" : "Approval""#),
             "is a history of workflow type Approval, not Renewal"),
        ]
        for (text, reason) in cases {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID()).json").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            let error = try #require(throws: JournalError.self) { try assertReplays(history: path, workflow: Renewal.self) }
            #expect(error.description.hasPrefix("history file \(path) "), "\(error)")
            #expect(error.description.contains(reason), "\(error)")
        }
        #expect(throws: JournalError.self) { try assertReplays(history: "/nonexistent/h.json", workflow: Renewal.self) }
    }
}
