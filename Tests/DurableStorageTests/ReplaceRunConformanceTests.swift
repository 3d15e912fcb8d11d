import DurableJournal
import DurableTestSupport
import Foundation
import Testing

/// ``Journal/replaceRun(_:with:events:signals:)``, what a reset of an undriven open run writes: the end
/// of one run and the start of the next, both or neither.
@Suite struct ReplaceRunConformanceTests {
    @Test(arguments: Backend.allCases) func aRunIsEndedAndItsReplacementRecordedTogetherOrNotAtAll(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        try await journal.append(newRun("source", workflowID: "claim-7"))
        try await journal.append(JournalBatch(run: RunRef(runID: "source"), events: [completed(1, "\"one\"")]))
        _ = try await journal.sendSignal(toRun: "source", name: "pending", data: nil)
        let source = try #require(try await journal.findRun("source"))
        let kept = Array(try await journal.history(source, from: 0).prefix(1))
        let replacement = RunRecord(
            runID: "replacement", workflowID: "claim-7", workflowType: "Flow", status: .running,
            createdAt: t0, updatedAt: t0, closedAt: nil, seed: 42, error: nil)
        let requeued = [QueuedSignal(id: 0, runID: "replacement", name: "review", data: Data("true".utf8), sentAt: t0)]

        // A lease that is not the run's any more: nothing is written.
        let stale = RunTermination(runID: "source", reason: "reset", expected: RunLease("someone-else", 1), notice: nil)
        #expect(try await !journal.replaceRun(stale, with: replacement, events: kept, signals: requeued))
        #expect(try await journal.findRun("replacement") == nil)
        #expect(try await journal.findRun("source")?.status == .running)

        let termination = RunTermination(runID: "source", reason: "reset to event 1", expected: RunLease(of: source), notice: nil)
        #expect(try await journal.replaceRun(termination, with: replacement, events: kept, signals: requeued))
        let ended = try #require(try await journal.findRun("source"))
        #expect(ended.status == .terminated && ended.error == "reset to event 1")
        #expect(try await journal.history(ended, from: 0).map(\.kind) == [.workflowStarted, .activityCompleted, .workflowTerminated])
        let new = try #require(try await journal.findRun("claim-7"))
        #expect(new.runID == "replacement" && new.status == .running && new.leaseOwner == nil)
        #expect(try await journal.history(new, from: 0).map(\.kind) == [.workflowStarted])
        #expect(try await journal.queuedSignals().map { "\($0.runID) \($0.name)" } == ["replacement review"])

        // A closed run is not ended again, and nothing else is recorded.
        let again = RunRecord(
            runID: "third", workflowID: "claim-7", workflowType: "Flow", status: .running,
            createdAt: t0, updatedAt: t0, closedAt: nil, seed: 42, error: nil)
        #expect(try await !journal.replaceRun(
            RunTermination(runID: "source", reason: "again", expected: RunLease(nil, nil), notice: nil),
            with: again, events: kept, signals: []))
        #expect(try await journal.findRun("third") == nil)
        await journal.close()
    }
}
