import DurableJournal
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct AttemptDetailsTests {
    @Test(arguments: [
        AttemptDetails(),
        AttemptDetails(queueMs: 0.012, runMs: 1234.5678),
        AttemptDetails(slot: "Score \"fraud\"#2", cold: true, queueMs: 3, warmUpMs: 512.25, runMs: 5, pid: 4242,
                       heartbeat: #"{"page":3,"note":"a\\b\n\ttab\u{01}"}"#),
    ])
    func handWrittenJSONDecodesToTheSameDetails(_ details: AttemptDetails) throws {
        let decoded = try JSONDecoder().decode(AttemptDetails.self, from: details.json)
        var expected = details
        // Durations are kept to the microsecond.
        expected.queueMs = details.queueMs.map { ($0 * 1000).rounded() / 1000 }
        expected.runMs = details.runMs.map { ($0 * 1000).rounded() / 1000 }
        #expect(decoded == expected)
    }
}
