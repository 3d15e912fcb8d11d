import Foundation
import Testing

@testable import DurableJournal

@Suite(.timeLimit(.minutes(2))) struct HistoryPackTests {
    /// A history like a real one: a start, 50 steps each scheduled and completed with ~100-byte
    /// JSON payloads, an attempt failure with details, an empty payload, a terminated reason.
    static let history: [HistoryEvent] = {
        let base: Int64 = 1_795_000_000_123  // times are whole milliseconds, as the journal keeps them
        let start = Date(journalMillis: base)
        var events = [HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Claim", data: Data(#"{"claim":1042}"#.utf8))]
        for step in 1...50 {
            let payload = Data(#"{"i":\#(step),"payload":"\#(String(repeating: "x", count: 100))"}"#.utf8)
            events.append(HistoryEvent(
                index: events.count, kind: .activityScheduled, time: Date(journalMillis: base + Int64(step)), seq: step,
                name: "Step", data: Data("\(step)".utf8), meta: Data(#"{"startToCloseMs":600000}"#.utf8)))
            events.append(HistoryEvent(
                index: events.count, kind: .activityCompleted, time: Date(journalMillis: base + 2 * Int64(step)), seq: step,
                attempt: 1, data: payload))
        }
        events.append(HistoryEvent(
            index: events.count, kind: .activityAttemptFailed, time: start, seq: 51, attempt: 2, data: Data(),
            meta: Data(#"{"runMs":0.25}"#.utf8)))
        events.append(HistoryEvent(index: events.count, kind: .workflowTerminated, time: start, data: Data("by hand".utf8)))
        return events
    }()

    @Test func aPackedHistoryDecodesToTheSameEventsAndIsSmaller() throws {
        let (block, payloadBytes) = HistoryPack.encode(Self.history)
        #expect(try HistoryPack.decode(block, runID: "r1") == Self.history)
        #expect(payloadBytes == Self.history.compactMap(\.data).map(\.count).reduce(0, +))
        // What the events table stores in its payload columns: each payload framed (and compressed) on
        // its own, the options and attempt details as they are.
        let rowBytes = Self.history.map { ($0.data.map { PayloadCodec.encode($0).count } ?? 0) + ($0.meta?.count ?? 0) }
            .reduce(0, +)
        #expect(block.count * 2 < rowBytes, "the whole history in \(block.count) bytes against \(rowBytes) in rows")
    }

    @Test func damageAnywhereInTheBlockIsReportedWithTheRun() throws {
        let (block, _) = HistoryPack.encode(Self.history)
        for position in [0, 5, block.count / 2, block.count - 1] {
            var damaged = block
            damaged[position] ^= 0x5A
            let error = try #require(throws: JournalError.self) { try HistoryPack.decode(damaged, runID: "r1") }
            #expect(error.description.hasPrefix("corrupt journal: run r1: packed history:"), "\(error)")
        }
        #expect(throws: JournalError.self) { try HistoryPack.decode(block.prefix(block.count - 3), runID: "r1") }
    }
}
