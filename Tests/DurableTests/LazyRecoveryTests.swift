import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import Testing

// Lazy recovery: a worker starting on a journal with many waiting runs resumes only the runs with work
// in flight, is ready at once, and replays a waiting run only when something wakes it.

@Suite(.serialized, .timeLimit(.minutes(3))) struct LazyRecoveryTests {
    func engine(_ path: String, capacity: Int) async throws -> Engine {
        let engine = try await makeEngine(path)
        engine.register(CacheWaiter.self)
        engine.register(CacheSleeper.self)
        engine.worker.instanceCacheCapacity = capacity
        return engine
    }

    @Test func aNewWorkerResumesOnlyRunsWithWorkInFlightAndWakesTheOthersWhenSignalled() async throws {
        let path = temporaryJournalPath()
        let first = try await engine(path, capacity: 10)
        let waiting = 120
        for i in 0..<waiting { _ = try await first.start(CacheWaiter.self, input: "r\(i)", id: "wait-\(i)") }
        let busy = [try await first.start(SlowFlow.self, input: 1500, id: "busy-0").runID,
                    try await first.start(SlowFlow.self, input: 1500, id: "busy-1").runID]
        let sleeper = try await first.start(CacheSleeper.self, input: 1500, id: "sleeper").runID
        try await eventually("the first worker keeps at most its capacity live") {
            first.worker.liveRunCount <= 10 + busy.count
        }
        await first.shutdown()  // the busy runs' activities are cancelled and wait for a worker

        let second = try await engine(path, capacity: 10)
        let report = try await second.recover()
        #expect(Set(report.resumed) == Set(busy), "only the runs with an activity in flight are replayed")
        #expect(second.worker.liveRunCount == busy.count)
        // Ready for new work at once.
        let fresh = try await second.start(CacheWaiter.self, input: "new", id: "fresh")
        try await second.signal("fresh", name: "go", "!")
        #expect(try await fresh.result() == "NEW!")
        // A waiting run is replayed when its signal comes, not before.
        for i in 0..<5 { try await second.signal("wait-\(i)", name: "go", "+") }
        for i in 0..<5 {
            let run = try await second.describe("wait-\(i)").run.runID
            #expect(try await second.client.outcome(of: run) == .completed(Data("\"R\(i)+\"".utf8)))
        }
        // The sleeper's timer fires from the due-time index.
        #expect(try await second.client.outcome(of: sleeper) == .completed(Data("\"woke\"".utf8)))
        for run in busy { _ = try await second.client.outcome(of: run) }
        let open = try await second.journal.runs(RunFilter(statuses: [.running]))
        #expect(open.count == waiting - 5)
        #expect(second.worker.liveRunCount <= 10, "the others were never replayed here")
        await second.shutdown()
    }

    /// A worker process with a small cache is SIGKILLed while its runs wait; a new worker process
    /// replays none of them until they are signalled, then completes exactly those.
    @Test func aSigkilledWorkersWaitingRunsAreWokenOneByOneByTheNext() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath("lazy-kill")
        let environment = ["DURABLE_INSTANCE_CACHE": "5"]
        let first = try Child(worker, ["worker", "--quiet", "--journal", journal], environment: environment)
        let client = try await Engine(journal: JournalConfiguration(journal))
        let count = 30
        for i in 0..<count { _ = try await client.client.start(Gather.self, input: 1, id: "g-\(i)") }
        try await eventually("all runs wait, at most 5 of them live in the worker") {
            let running = try await client.journal.runs(RunFilter(statuses: [.running]))
            let busy = try await client.journal.runsToResume()
            return running.count == count && busy.isEmpty && running.filter { $0.leaseOwner != nil }.count <= 5
        }
        let firstOwners = Set(try await client.journal.runs(RunFilter(statuses: [.running])).compactMap(\.leaseOwner))
        first.kill(SIGKILL)
        let exit = try await first.wait()
        try #require(exit.reason == .uncaughtSignal, "the first worker was not killed: \(first.output)")

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal], environment: environment)
        let signalled = [0, 3, 7, 12, 29]
        for i in signalled { try await client.signal("g-\(i)", name: "item", "x\(i)") }
        for i in signalled {
            try await eventually("g-\(i) completed in the second worker") {
                try await !client.describe("g-\(i)").run.status.isOpen
            }
            #expect(try await client.describe("g-\(i)").outcome == .completed(Data("\"x\(i)\"".utf8)))
        }
        let running = try await client.journal.runs(RunFilter(statuses: [.running]))
        #expect(running.count == count - signalled.count)
        #expect(running.allSatisfy { $0.leaseOwner == nil || firstOwners.contains($0.leaseOwner!) },
                "the second worker took (and replayed) no run that was not signalled")
        second.kill(SIGTERM)
        let stopped = try await second.wait()
        #expect(stopped.reason == .exit && stopped.status == 0, "the second worker did not stop cleanly: \(second.output)")
        await client.shutdown()
    }
}
