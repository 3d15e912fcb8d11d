import DurableBackends
import DurableJournal
import DurableTestSupport
import Foundation
import GRDB
import Testing

/// The journal backends the conformance suite runs against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// A fresh, empty journal location, or `nil` when this backend cannot be tested here (PostgreSQL
    /// without `DURABLE_TEST_POSTGRES_URL`; on CI that is a failure, never a silent skip).
    func freshLocation(_ name: String = #function) -> String? {
        let tag = name.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(30) + "_"
            + UUID().uuidString.prefix(8).lowercased()
        switch self {
        case .sqlite:
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("durable-storage-tests-\(getpid())")
            try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            return folder.appendingPathComponent("\(tag).sqlite").path
        case .postgres:
            guard let url = ProcessInfo.processInfo.environment["DURABLE_TEST_POSTGRES_URL"], !url.isEmpty else {
                if ProcessInfo.processInfo.environment["CI"] != nil {
                    Issue.record("DURABLE_TEST_POSTGRES_URL is not set: the PostgreSQL backend is not tested (Scripts/test.sh sets it)")
                } else {
                    print("note: DURABLE_TEST_POSTGRES_URL is not set; skipping the PostgreSQL case of \(name)")
                }
                return nil
            }
            return url + (url.contains("?") ? "&" : "?") + "schema=t_" + tag
        }
    }
}

/// Opens a journal at `location` for the worker `owner` (leases last `leaseMs`), or without a lease.
func openJournal(_ location: String, owner: String? = nil, leaseMs: Int64 = 5_000) async throws -> any Journal {
    try await JournalConfiguration(location, durability: .fast)
        .open(lease: owner.map { LeaseSettings(owner: $0, durationMs: leaseMs) })
}

let t0 = Date(journalMillis: Date().journalMillis)

func started(_ type: String = "Flow", input: String = #"{"n":1}"#, meta: Data? = nil) -> EventDraft {
    EventDraft(HistoryEvent(index: 0, kind: .workflowStarted, time: t0, name: type, data: Data(input.utf8), meta: meta))
}

func completed(_ index: Int, _ result: String, seq: Int = 1) -> EventDraft {
    EventDraft(HistoryEvent(index: index, kind: .activityCompleted, time: t0, seq: seq, attempt: 1, data: Data(result.utf8)))
}

/// A batch that writes a new run with its `WorkflowStarted` event (running and leased to the writer,
/// or pending).
func newRun(_ runID: String, workflowID: String? = nil, status: RunStatus = .running, meta: Data? = nil) -> JournalBatch {
    JournalBatch(
        run: RunRef(runID: runID),
        newRun: .init(workflowID: workflowID ?? runID, workflowType: "Flow", seed: 42, status: status, createdAt: t0),
        events: [started(meta: meta)])
}

func result(_ journal: any Journal, _ batch: JournalBatch) async -> Result<Void, any Error> {
    do {
        try await journal.append(batch)
        return .success(())
    } catch {
        return .failure(error)
    }
}

/// One suite, every backend: what the engine relies on a journal for.
@Suite(.timeLimit(.minutes(2))) struct JournalConformanceTests {
    @Test(arguments: Backend.allCases) func appendedBatchesReadBackInOrder(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        let big = "\"" + String(repeating: "claims ", count: 20_000) + "\""
        try await journal.append(newRun("r1", workflowID: "order-1"))
        try await journal.append(JournalBatch(run: RunRef(runID: "r1"), events: [completed(1, #""a""#), completed(2, big, seq: 2)]))
        try await journal.append(JournalBatch(
            run: RunRef(runID: "r1"), events: [EventDraft(HistoryEvent(index: 3, kind: .workflowCompleted, time: t0, data: Data("1".utf8)))],
            statusChange: .init(status: .completed)))

        let run = try #require(try await journal.findRun("order-1"))
        #expect(run.runID == "r1" && run.status == .completed && run.seed == 42 && run.closedAt != nil)
        #expect(run.leaseOwner == nil, "a closed run holds no lease")
        let events = try await journal.history(run, from: 0)
        #expect(events.map(\.index) == [0, 1, 2, 3])
        #expect(events.map(\.kind) == [.workflowStarted, .activityCompleted, .activityCompleted, .workflowCompleted])
        #expect(events[2].data == Data(big.utf8), "a 140 KB payload reads back whole")
        #expect(events[0].time == t0 && events[0].name == "Flow")
        #expect(try await journal.history(run, from: 2).map(\.index) == [2, 3])
        #expect(try await journal.eventCount(run) == 4)
        #expect(try await journal.runs(RunFilter(statuses: [.completed])).map(\.runID) == ["r1"])
        #expect(try await journal.runs(RunFilter(workflowIDPrefix: "order-")).count == 1)
        #expect(try await journal.runs(RunFilter(workflowIDPrefix: "other")).isEmpty)
        #expect(try await journal.countRuns(RunFilter()) == [.completed: 1])
        #expect(try await journal.findRun("nope") == nil)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func runsArePagedAfterAGivenRunInEitherOrder(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        for n in 1...5 { try await journal.append(newRun("r\(n)", workflowID: "page-\(n)")) }
        try await journal.append(newRun("x1", workflowID: "other-1"))
        func page(after: String?, oldestFirst: Bool) async throws -> [String] {
            try await journal.runs(RunFilter(workflowIDPrefix: "page-", oldestFirst: oldestFirst, limit: 2, afterRunID: after)).map(\.runID)
        }
        #expect(try await page(after: nil, oldestFirst: false) == ["r5", "r4"])
        #expect(try await page(after: "r4", oldestFirst: false) == ["r3", "r2"])
        #expect(try await page(after: "r2", oldestFirst: false) == ["r1"])
        #expect(try await page(after: "r1", oldestFirst: false).isEmpty)
        #expect(try await page(after: "r2", oldestFirst: true) == ["r3", "r4"])
        #expect(try await page(after: "x1", oldestFirst: false) == ["r5", "r4"], "a cursor outside the filter pages by its place")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func aSecondOpenRunWithTheSameWorkflowIDIsRefused(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        try await journal.append(newRun("r1", workflowID: "claim-7"))
        let error = try #require(await result(journal, newRun("r2", workflowID: "claim-7")).failure as? JournalError)
        #expect(error.workflowIDInUse?.runID == "r1", "\(error)")
        #expect(try await journal.findRun("r2") == nil, "the refused batch wrote nothing")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func aBatchThatFailsInAGroupCommitFailsAlone(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        try await journal.append(newRun("r0", workflowID: "taken"))
        let commitsBefore = journal.commitCount
        // Handed over at once, so that they share transactions: every third is refused.
        let outcomes = await withTaskGroup(of: (Int, Result<Void, any Error>).self) { group in
            for i in 1...30 {
                group.addTask { (i, await result(journal, newRun("r\(i)", workflowID: i % 3 == 0 ? "taken" : "w\(i)"))) }
            }
            return await group.reduce(into: [Int: Result<Void, any Error>]()) { $0[$1.0] = $1.1 }
        }
        for i in 1...30 {
            if i % 3 == 0 {
                let error = outcomes[i]?.failure as? JournalError
                #expect(error?.workflowIDInUse?.runID == "r0", "r\(i): \(String(describing: error))")
                #expect(try await journal.findRun("r\(i)") == nil)
            } else {
                #expect(outcomes[i]?.failure == nil, "r\(i): \(String(describing: outcomes[i]?.failure))")
                #expect(try await journal.history(try #require(try await journal.findRun("r\(i)")), from: 0).count == 1)
            }
        }
        #expect(journal.commitCount - commitsBefore < 30, "the batches were committed in groups")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func fencingRefusesAWriterThatLostItsLease(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let a = try await openJournal(location, owner: "worker-a", leaseMs: 100)
        let b = try await openJournal(location, owner: "worker-b", leaseMs: 5_000)
        try await a.append(newRun("r1"))
        try await Task.sleep(for: .milliseconds(200))  // A stalls past its lease
        let seen = try #require(try await b.findRun("r1"))
        #expect(seen.leaseOwner == "worker-a")
        #expect(try await b.runsToTakeOver(deadOwners: []).map(\.runID) == ["r1"])
        #expect(try await b.acquireLease(runID: "r1", expected: RunLease(of: seen)))

        let late = await result(a, JournalBatch(run: RunRef(runID: "r1"), events: [completed(1, #""from A""#)]))
        let error = try #require(late.failure as? JournalError)
        #expect("\(error)".contains("worker-b"), "\(error)")
        try await b.append(JournalBatch(run: RunRef(runID: "r1"), events: [completed(1, #""from B""#)]))
        let lateStatus = await result(a, JournalBatch(run: RunRef(runID: "r1"), statusChange: .init(status: .failed, error: "A")))
        #expect(lateStatus.failure != nil, "A cannot end the run either")
        let events = try await b.history(try #require(try await b.findRun("r1")), from: 0)
        #expect(events.map(\.index) == [0, 1], "no gap, nothing of A's")
        #expect(events[1].data == Data(#""from B""#.utf8))
        await a.close()
        await b.close()
    }

    @Test(arguments: Backend.allCases) func runsToTakeOverAreFoundAmongManyLiveLeases(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let a = try await openJournal(location, owner: "worker-a", leaseMs: 60_000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 { group.addTask { try await a.append(newRun("live-\(i)")) } }
            try await group.waitForAll()
        }
        let gone = try await openJournal(location, owner: "worker-gone", leaseMs: 50)
        try await gone.append(newRun("orphan"))
        try await a.releaseLease(runID: "live-7")
        try await Task.sleep(for: .milliseconds(100))
        let b = try await openJournal(location, owner: "worker-b")
        // 300 live leases of worker-a come first by age; a limit far below that still finds the two.
        #expect(Set(try await b.runsToTakeOver(deadOwners: [], limit: 5).map(\.runID)) == ["orphan", "live-7"])
        #expect(try await a.runsToTakeOver(deadOwners: [], limit: 5).map(\.runID).contains("orphan"))
        #expect(try await b.runsToTakeOver(deadOwners: ["worker-a"], limit: 20).count == 20)
        #expect(try await b.runsToTakeOver(deadOwners: ["worker-a"], limit: 1_000).count == 301)
        for journal in [a, gone, b] { await journal.close() }
    }

    @Test(arguments: Backend.allCases) func takeoverIsACompareAndSet(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let a = try await openJournal(location, owner: "worker-a", leaseMs: 50)
        try await a.append(newRun("r1"))
        try await Task.sleep(for: .milliseconds(100))
        let takers = try await withThrowingTaskGroup(of: (any Journal).self) { group in
            for name in ["worker-b", "worker-c", "worker-d"] { group.addTask { try await openJournal(location, owner: name) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let seen = try #require(try await takers[0].findRun("r1"))
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for taker in takers { group.addTask { try await taker.acquireLease(runID: "r1", expected: RunLease(of: seen)) } }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wins == 1, "exactly one of three workers takes the run over")
        let holder = try #require(try await a.findRun("r1")?.leaseOwner)
        #expect(["worker-b", "worker-c", "worker-d"].contains(holder))
        for journal in takers { await journal.close() }
        await a.close()
    }

    @Test(arguments: Backend.allCases) func aPendingRunIsClaimedByOneWorkerOnly(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let client = try await openJournal(location)
        try await client.append(newRun("p1", status: .pending))
        let workers = [try await openJournal(location, owner: "worker-b"), try await openJournal(location, owner: "worker-c")]
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for worker in workers {
                group.addTask {
                    guard (try? await worker.claimPendingRuns(workflowTypes: ["Flow"], limit: 8))?.map(\.runID) == ["p1"]
                    else { return false }
                    return (try? await worker.append(JournalBatch(run: RunRef(runID: "p1"), events: [completed(1, #""claimed""#)])))
                        != nil
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        let run = try #require(try await client.findRun("p1"))
        #expect(run.status == .running && ["worker-b", "worker-c"].contains(run.leaseOwner ?? ""))
        #expect(try await client.history(run, from: 0).map(\.index) == [0, 1])
        for journal in workers + [client] { await journal.close() }
    }

    @Test(arguments: Backend.allCases) func theChangeFeedWakesAWaiterWhenAnotherProcessCommits(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let worker = try await openJournal(location, owner: "worker-a")
        let client = try await openJournal(location)
        try await worker.append(newRun("r1"))
        var changes = worker.changes().makeAsyncIterator()
        _ = await changes.next()  // the first element comes at once
        let waiter = Task { await changes.next() != nil }
        try await Task.sleep(for: .milliseconds(50))
        _ = try await client.sendSignal(toRun: "r1", name: "review", data: Data("true".utf8))
        let sent = ContinuousClock.now
        #expect(await waiter.value)
        // (Scripts/test.sh runs this suite with the timing-bounded ones, apart from the busy suites.)
        #expect(ContinuousClock.now - sent < .milliseconds(900), "woken by the commit, not by the 1-2 s poll")
        await worker.close()
        await client.close()
    }

    @Test(arguments: Backend.allCases) func signalsAreDeliveredOnceAndInOrder(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let worker = try await openJournal(location, owner: "worker-a")
        try await worker.append(newRun("r1", workflowID: "claim-1"))
        _ = try await worker.sendSignal(toRun: "claim-1", name: "first", data: Data("1".utf8))
        _ = try await worker.sendSignal(toRun: "r1", name: "second", data: Data("2".utf8))
        let queued = try await worker.queuedSignals()
        #expect(queued.map(\.name) == ["first", "second"] && queued.map(\.runID) == ["r1", "r1"])
        #expect(queued[0].id < queued[1].id && queued[0].data == Data("1".utf8))
        #expect(try await worker.queuedSignals(including: { _, name in name == "second" }).map(\.name) == ["second"])

        let received = EventDraft(HistoryEvent(index: 1, kind: .signalReceived, time: t0, name: "first", data: Data("1".utf8)))
        try await worker.append(JournalBatch(run: RunRef(runID: "r1"), events: [received], deliveredSignal: queued[0].id))
        let again = EventDraft(HistoryEvent(index: 2, kind: .signalReceived, time: t0, name: "first", data: Data("1".utf8)))
        let twice = await result(worker, JournalBatch(run: RunRef(runID: "r1"), events: [again], deliveredSignal: queued[0].id))
        #expect(twice.failure != nil, "a signal is delivered once")
        #expect(try await worker.queuedSignalNames(runID: "r1") == ["second"])
        let run = try #require(try await worker.findRun("r1"))
        #expect(try await worker.history(run, from: 0).map(\.index) == [0, 1], "the refused delivery wrote nothing")

        // Continuing as new takes the queued signal along; ending the next run drops it.
        var next = JournalBatch(
            run: RunRef(runID: "r1"),
            events: [EventDraft(HistoryEvent(index: 2, kind: .workflowContinuedAsNew, time: t0, name: "r2"))],
            statusChange: .init(status: .continuedAsNew))
        next.continuation = ("r2", .init(workflowID: "claim-1", workflowType: "Flow", seed: 1, status: .pending, createdAt: t0),
                             started())
        try await worker.append(next)
        #expect(try await worker.queuedSignalNames(runID: "r2") == ["second"])
        #expect(try await worker.findRun("claim-1")?.runID == "r2", "the workflow ID names its newest run")
        #expect(try await worker.claimPendingRuns(workflowTypes: ["Flow"], limit: 8).map(\.runID) == ["r2"])
        try await worker.append(JournalBatch(
            run: RunRef(runID: "r2"),
            events: [EventDraft(HistoryEvent(index: 1, kind: .workflowCompleted, time: t0, data: Data("0".utf8)))],
            statusChange: .init(status: .completed)))
        #expect(try await worker.queuedSignals().isEmpty)
        await worker.close()
    }

    @Test(arguments: Backend.allCases) func aSignalToAClosedRunIsRefused(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        try await journal.append(newRun("r1"))
        try await journal.append(JournalBatch(
            run: RunRef(runID: "r1"), events: [EventDraft(HistoryEvent(index: 1, kind: .workflowCompleted, time: t0))],
            statusChange: .init(status: .completed)))
        await #expect(throws: JournalError.self) { try await journal.sendSignal(toRun: "r1", name: "late", data: nil) }
        let error = try #require(await #expect(throws: JournalError.self) {
            try await journal.sendSignal(toRun: "r1", name: "late", data: nil, operation: "signals")
        })
        #expect(error.isRunClosed)
        await #expect(throws: JournalError.self) { try await journal.sendSignal(toRun: "nobody", name: "x", data: nil) }
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func anEndingChildTellsItsOpenParent(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        try await journal.append(newRun("parent"))
        try await journal.append(newRun("child"))
        var end = JournalBatch(
            run: RunRef(runID: "child"), events: [EventDraft(HistoryEvent(index: 1, kind: .workflowCompleted, time: t0))],
            statusChange: .init(status: .completed))
        end.notice = RunNotice(runID: "parent", name: "durable.child", payload: Data(#"{"seq":3}"#.utf8))
        try await journal.append(end)
        let queued = try await journal.queuedSignals()
        #expect(queued.map(\.runID) == ["parent"] && queued.first?.name == "durable.child")
        #expect(queued.first?.data == Data(#"{"seq":3}"#.utf8))
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func terminatingAnUndrivenRunIsACompareAndSet(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        try await journal.append(newRun("parent"))
        try await journal.append(newRun("r1"))
        _ = try await journal.sendSignal(toRun: "r1", name: "pending", data: nil)
        let run = try #require(try await journal.findRun("r1"))
        let notice = RunNotice(runID: "parent", name: "durable.child", payload: Data("{}".utf8))
        #expect(try await !journal.terminateRun("r1", reason: "stale", expected: RunLease("someone-else", 1), notice: notice))
        #expect(try await journal.terminateRun("r1", reason: "duplicate claim", expected: RunLease(of: run), notice: notice))
        #expect(try await !journal.terminateRun("r1", reason: "again", expected: RunLease(nil, nil), notice: nil))
        let ended = try #require(try await journal.findRun("r1"))
        #expect(ended.status == .terminated && ended.error == "duplicate claim")
        let events = try await journal.history(ended, from: 0)
        #expect(events.map(\.kind) == [.workflowStarted, .workflowTerminated])
        #expect(events.last?.data == Data("duplicate claim".utf8))
        #expect(try await journal.queuedSignals().map(\.runID) == ["parent"], "the run's own signals are dropped")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func pruneAndCompactKeepOpenRuns(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        for id in ["open", "done-1", "done-2"] {
            try await journal.append(newRun(id))
            try await journal.append(JournalBatch(run: RunRef(runID: id), events: (1...30).map { completed($0, "\"step \($0)\"", seq: $0) }))
        }
        for id in ["done-1", "done-2"] {
            try await journal.append(JournalBatch(
                run: RunRef(runID: id), events: [EventDraft(HistoryEvent(index: 31, kind: .workflowCompleted, time: t0))],
                statusChange: .init(status: .completed)))
        }
        let before = try await journal.history(try #require(try await journal.findRun("done-2")), from: 0)
        let report = try await journal.compact()
        #expect(report.packedRuns == 2 && report.skippedRuns == 0)
        #expect(try await journal.history(try #require(try await journal.findRun("done-2")), from: 0) == before)
        #expect(try await journal.history(try #require(try await journal.findRun("done-2")), from: 29).map(\.index) == [29, 30, 31])
        #expect(try await journal.stats().packedRuns == 2)
        #expect(try await journal.check().isHealthy)

        let dry = try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(60), dryRun: true)
        #expect(dry.runs == 2 && dry.events == 64)
        #expect(try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(-3_600)).runs == 0)
        let deleted = try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(60))
        #expect(deleted.runs == 2 && deleted.events == 64)
        let left = try await journal.runs(RunFilter())
        #expect(left.map(\.runID) == ["open"])
        #expect(try await journal.history(left[0], from: 0).count == 31)
        #expect(try await journal.check().isHealthy)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func anImportedRunReadsBackIdentically(_ backend: Backend) async throws {
        guard let location = backend.freshLocation(), let other = Backend.sqlite.freshLocation() else { return }
        let source = try await openJournal(other, owner: "worker-a")
        try await source.append(newRun("r1", workflowID: "claim-9", meta: Data(#"{"parentRunID":"p","parentSeq":2}"#.utf8)))
        try await source.append(JournalBatch(run: RunRef(runID: "r1"), events: [completed(1, #"{"ok":true}"#)]))
        _ = try await source.sendSignal(toRun: "r1", name: "review", data: Data("1".utf8))
        let run = try #require(try await source.findRun("r1"))
        let destination = try await openJournal(location, owner: "worker-b")
        try await destination.importRun(run, events: try await source.history(run, from: 0), signals: try await source.queuedSignals())
        let copied = try #require(try await destination.findRun("claim-9"))
        #expect(copied.runID == run.runID && copied.status == run.status && copied.seed == run.seed)
        #expect(copied.createdAt == run.createdAt && copied.leaseOwner == nil)
        #expect(try await destination.history(copied, from: 0) == (try await source.history(run, from: 0)))
        #expect(try await destination.queuedSignals().map(\.name) == ["review"])
        await #expect(throws: JournalError.self) { try await destination.importRun(run, events: [], signals: []) }
        // The copy goes on where the source stopped, under the destination's fencing.
        #expect(try await destination.acquireLease(runID: "r1", expected: RunLease(nil, nil)))
        try await destination.append(JournalBatch(run: RunRef(runID: "r1"), events: [completed(2, "2", seq: 2)]))
        await source.close()
        await destination.close()
    }

    @Test(arguments: Backend.allCases) func aJournalOfANewerFormatIsRefusedUntouched(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        try await journal.append(newRun("r1"))
        await journal.close()
        switch backend {
        case .sqlite:
            try setUserVersion(99, of: location)
        case .postgres:
            try psql(location, "UPDATE \(try schemaName(location)).meta SET value = '99' WHERE key = 'format_version'")
        }
        let error = try #require(await #expect(throws: JournalError.self) { try await openJournal(location, owner: "worker-b") })
        #expect(error.isNewerFormat, "\(error)")
        #expect("\(error)".contains("99"))
        let missing = try #require(await #expect(throws: JournalError.self) {
            try await JournalConfiguration(backend.freshLocation() ?? "", createIfMissing: false).open(lease: nil)
        })
        #expect("\(missing)".contains("no journal at"), "\(missing)")
    }

    @Test func aFormat1PostgreSQLSchemaIsUpgradedInPlace() async throws {
        guard let location = Backend.postgres.freshLocation() else { return }
        let first = try await openJournal(location, owner: "worker-a", leaseMs: 50)
        try await first.append(newRun("r1"))
        try await first.append(JournalBatch(run: RunRef(runID: "r1"), events: [completed(1, "1")]))
        await first.close()
        try await Task.sleep(for: .milliseconds(100))  // its lease expires
        // The schema taken back to format 1: no takeover indexes.
        let schema = try schemaName(location)
        try psql(location, """
            DROP INDEX \(schema).runs_running_expiry; DROP INDEX \(schema).runs_running_owner;
            DROP TABLE \(schema).audit; DROP FUNCTION \(schema).audit_append_only;
            DROP TABLE \(schema).blob_refs; DROP TABLE \(schema).blobs;
            UPDATE \(schema).meta SET value = '1' WHERE key = 'format_version'
            """)
        let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
            + "WHERE schemaname = '\(schema)' AND indexname LIKE 'runs_running_%'"
        #expect(try psql(location, indexes) == "")

        // A command that only reads upgrades it too (it is an older journal, not a missing one).
        let reader = try await JournalConfiguration(location, createIfMissing: false).open(lease: nil)
        await reader.close()
        let journal = try await openJournal(location, owner: "worker-b")
        #expect(try await journal.stats().formatVersion == 5)
        #expect(try psql(location, indexes) == "runs_running_expiry,runs_running_owner")
        let run = try #require(try await journal.findRun("r1"))
        #expect(try await journal.history(run, from: 0).map(\.index) == [0, 1])
        #expect(try await journal.runsToTakeOver(deadOwners: []).map(\.runID) == ["r1"])
        #expect(try await journal.acquireLease(runID: "r1", expected: RunLease(of: run)))
        #expect(try await journal.check().integrity == ["ok"])
        // Format 3's audit log, with its trigger.
        #expect(try await journal.appendAudit(AuditDraft(actor: "a", source: "s", action: "x", target: "t", outcome: "ok")).seq == 1)
        #expect(try runPsql(location, "DELETE FROM \(schema).audit").stderr.contains("append-only"))
        await journal.close()
    }

    @Test func anUnreachableServerIsAClearErrorNotAHang() async throws {
        let started = ContinuousClock.now
        let error = try #require(await #expect(throws: JournalError.self) {
            try await openJournal("postgres://durable@127.0.0.1:1/durable")
        })
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect("\(error)".contains("cannot reach PostgreSQL at 127.0.0.1:1/durable"), "\(error)")
        await #expect(throws: JournalError.self) { try await openJournal("postgres://durable@127.0.0.1/db?schema=Bad-Name") }
    }
}

/// Sets `PRAGMA user_version` of a SQLite file (GRDB's blocking API, outside any async context).
func setUserVersion(_ version: Int, of path: String) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA user_version = \(version)") }
    try queue.close()
}

/// Runs SQL with `psql` against the database of a journal URL and expects it to succeed.
/// - Returns: what it printed.
@discardableResult
func psql(_ location: String, _ sql: String) throws -> String {
    let result = try runPsql(location, sql)
    #expect(result.status == 0, "psql \(sql): \(result.stderr)")
    return result.stdout
}

/// Runs raw SQL against the journal's storage, the way a tool with access to it would; returns the
/// error text when the database refuses it (nil when it ran).
func rawSQL(_ backend: Backend, _ location: String, _ sql: String) async throws -> String? {
    switch backend {
    case .sqlite:
        let queue = try DatabaseQueue(path: location)
        defer { try? queue.close() }
        do {
            try await queue.writeWithoutTransaction { db in try db.execute(sql: sql) }
            return nil
        } catch let error as DatabaseError {
            return error.message ?? "\(error)"
        }
    case .postgres:
        let result = try runPsql(location, "SET search_path = \(try schemaName(location)); \(sql)")
        return result.status == 0 ? nil : result.stderr
    }
}

/// The schema a PostgreSQL journal URL names.
func schemaName(_ location: String) throws -> String {
    String(location[try #require(location.range(of: "schema=")).upperBound...])
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
