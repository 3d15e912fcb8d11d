import DurableJournal
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct AttemptDetailsTests {
    @Test(arguments: [
        AttemptDetails(),
        AttemptDetails(queueMs: 0.012, runMs: 1234.5678),
        AttemptDetails(slot: "Score \"fraud\"#2", cold: true, queueMs: 3, warmUpMs: 512.25, runMs: 5, pid: 4242,
                       heartbeat: #"{"page":3,"note":"a\\b\n\ttab\u{01}"}"#),
        AttemptDetails(runMs: 2, model: "fraud \"v\"", modelVersion: "2026.11", weightsSHA256: String(repeating: "a1", count: 32),
                       modelMetadata: ["prompt": "sha:9f", "z\nkey": "tab\there", "empty": ""],
                       inputSHA256: String(repeating: "0b", count: 32), outputSHA256: String(repeating: "c3", count: 32)),
        AttemptDetails(model: "m", modelVersion: "", modelMetadata: [:], inputSHA256: String(repeating: "d", count: 64)),
    ])
    func handWrittenJSONDecodesToTheSameDetails(_ details: AttemptDetails) throws {
        let decoded = try JSONDecoder().decode(AttemptDetails.self, from: details.json)
        var expected = details
        // Durations are kept to the microsecond.
        expected.queueMs = details.queueMs.map { ($0 * 1000).rounded() / 1000 }
        expected.runMs = details.runMs.map { ($0 * 1000).rounded() / 1000 }
        #expect(decoded == expected)
    }

    @Test func detailsJournaledBeforeLineageReadUnchanged() throws {
        let old = Data(#"{"cold":false,"pid":4242,"queueMs":0.1,"runMs":12.5,"slot":"PyModel#1"}"#.utf8)
        let details = try JSONDecoder().decode(AttemptDetails.self, from: old)
        #expect(details == AttemptDetails(slot: "PyModel#1", cold: false, queueMs: 0.1, runMs: 12.5, pid: 4242))
        #expect(details.model == nil && details.modelLabel == nil && details.inputSHA256 == nil)
        #expect(details.summary == "slot PyModel#1 warm, pid 4242, queue 0.1 ms, run 12.5 ms")
    }

    @Test func modelIsNamedInTheSummaryAndTheWeightsDigestCoversEveryFile() {
        var details = AttemptDetails(runMs: 5)
        details.record(model: ModelIdentity(name: "ocr", version: "5", weights: ["b.onnx": "22", "a.onnx": "11"], metadata: [:]))
        #expect(details.summary == "run 5.0 ms, model ocr@5")
        #expect(details.modelMetadata == nil, "empty metadata is not journaled")
        let same = ModelIdentity(name: "x", version: "", weights: ["a.onnx": "11", "b.onnx": "22"])
        #expect(details.weightsSHA256 == same.weightsSHA256)
        #expect(details.weightsSHA256 != ModelIdentity(name: "x", version: "", weights: ["a.onnx": "11", "b.onnx": "23"]).weightsSHA256)
        #expect(same.label == "x")
    }
}
