import Durable
import DurableJournal
import DurableTestSupport
import DurableTesting
import Foundation
import Testing

// The bounded instance cache: an idle run evicted from memory (capacity 0 evicts at every idle
// moment) is rebuilt by replay when something wakes it, and its history is the one an uncached run
// of the same code records.

/// A child that runs an activity, sleeps, and returns.
struct CacheChild: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let upper = try await ctx.execute(Transform.self, input)
        try await ctx.sleep(for: .seconds(3600))
        return upper + "!"
    }
}

/// Every primitive that leaves a run waiting, one after another, then (round 0) continue-as-new.
struct CacheProbe: Workflow {
    struct Output: Codable, Sendable, Equatable {
        var round: Int
        var steps: [String]
        var draws: [UInt64]
    }

    func run(_ ctx: WorkflowContext, input: Int) async throws -> Output {
        var steps: [String] = []
        ctx.setQueryHandler("steps") { steps }
        steps.append(try await ctx.execute(Transform.self, "a\(input)"))  // an activity
        try await ctx.sleep(for: .seconds(3600))  // a timer
        steps.append("slept")
        let go = try await ctx.waitForSignal(String.self, named: "go", timeout: .seconds(10 * 3600))  // a signal, with a deadline
        steps.append("go:\(go)")
        do {  // a signal deadline that passes
            _ = try await ctx.waitForSignal(String.self, named: "never", timeout: .seconds(3600))
            steps.append("never came?")
        } catch is WorkflowTimeout {
            steps.append("timed out")
        }
        steps.append(try await ctx.executeChild(CacheChild.self, "c\(input)"))  // a child
        // An activity side by side with a timer that fires well after it (the order is the code's, not a race's).
        async let left = ctx.execute(Transform.self, "l\(input)")
        async let nap: Void = ctx.sleep(for: .seconds(2 * 3600))
        steps.append(try await left)
        try await nap
        var random = ctx.random
        let draws = [random.next(), UInt64(ctx.now.timeIntervalSince1970 * 1000), UInt64(ctx.uuid().hashValue.magnitude)]
        steps.append(ctx.patched("cache-probe") ? "patched" : "old")
        let more = try await ctx.waitForSignal(String.self, named: "more")  // a signal without deadline
        steps.append("more:\(more)")
        if input == 0 { throw ctx.continueAsNew(with: 1) }
        return Output(round: input, steps: steps, draws: draws)
    }
}

/// Sleeps `input` milliseconds (a durable timer), then returns.
struct CacheSleeper: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        try await ctx.sleep(for: .milliseconds(input))
        return "woke"
    }
}

/// Waits for `go`, then runs an activity.
struct CacheWaiter: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        let value = try await ctx.waitForSignal(String.self, named: "go")
        return try await ctx.execute(Transform.self, input + value)
    }
}

/// What a history says, without the times and the values that differ from run to run (random draws,
/// run IDs): kinds, sequence numbers, names, and the payloads of activities and signals.
func historyShape(_ events: [HistoryEvent]) -> [String] {
    events.map { event in
        // (A continuation's name is the next run's ID, new each time.)
        var line = "\(event.kind.name) seq \(event.seq) \(event.kind == .workflowContinuedAsNew ? "" : event.name ?? "")"
        switch event.kind {
        case .activityScheduled, .activityCompleted, .signalReceived:
            line += " " + String(decoding: event.data ?? Data(), as: UTF8.self)
        default:
            break
        }
        return line
    }
}

@Suite(.timeLimit(.minutes(3))) struct InstanceCacheTests {
    func engine(capacity: Int?, _ path: String = temporaryJournalPath(#function)) async throws -> Engine {
        let engine = try await makeEngine(path)
        engine.register(CacheProbe.self)
        engine.register(CacheChild.self)
        engine.register(CacheSleeper.self)
        engine.register(CacheWaiter.self)
        if let capacity { engine.worker.instanceCacheCapacity = capacity }
        return engine
    }

    /// Drives one CacheProbe workflow ID through both rounds on a test engine's clock, whose timers
    /// are hours long: they fire only when the clock is moved on. At each idle moment it waits until
    /// the run (and at the child moment, the child) waits, and when `evicting`, until that idle run
    /// has been evicted, before it moves the clock or sends the signal: every idle moment is evicted
    /// exactly once, however long this process stalls (with 100 ms timers, a stall longer than that
    /// let one fire before the eviction, or before the test saw the run wait).
    /// - Returns: the histories of both runs, the result, and the evictions counted at each moment.
    func drive(_ env: TestEnvironment, id: String, evicting: Bool) async throws
        -> ([HistoryEvent], [HistoryEvent], CacheProbe.Output, [Int])
    {
        let engine = env.engine
        var evictions: [Int] = []
        /// Waits for `condition`, then (evicting) for the `idleRuns` waiting runs to be evicted.
        func idle(_ what: String, idleRuns: Int = 1, _ condition: () async throws -> Bool) async throws {
            try await eventually("\(id) \(what)", timeout: .seconds(60), condition)
            guard evicting else { return }
            let expected = (evictions.last ?? 0) + idleRuns
            try await eventually(
                "\(id) evicted while it \(what) (evicted \(engine.worker.evictedRunCount), expected \(expected))",
                timeout: .seconds(60)
            ) {
                engine.worker.evictedRunCount >= expected && engine.worker.liveRunCount == 0
            }
            evictions.append(engine.worker.evictedRunCount)
        }
        func waitingTimers(_ workflowID: String) async throws -> Int {
            try await engine.describe(workflowID).timers.filter { $0.state == .waiting }.count
        }
        let first = try await engine.start(CacheProbe.self, input: 0, id: id)
        var runID = ""
        for round in 0..<2 {
            let previous = runID
            try await idle("sleeps") {
                let description = try await engine.describe(id)
                return description.run.runID != previous && description.timers.count == 1 && description.timers[0].state == .waiting
            }
            runID = try await engine.describe(id).run.runID
            await env.advanceTime(by: .seconds(3600))
            try await idle("waits for go") { try await engine.describe(id).awaitedSignals == ["go"] }
            try await engine.signal(id, name: "go", "yes\(round)")
            try await idle("waits for never") { try await engine.describe(id).awaitedSignals == ["never"] }
            await env.advanceTime(by: .seconds(3600))
            try await idle("waits for its child, which sleeps", idleRuns: 2) {
                guard let child = try await engine.describe(id).children.first(where: { $0.runID != "" }) else { return false }
                return try await waitingTimers(child.workflowID) == 1
            }
            await env.advanceTime(by: .seconds(3600))
            try await idle("naps beside its activity") {
                let description = try await engine.describe(id)
                return description.activities.count == 2 && description.pendingActivities.isEmpty
                    && description.timers.filter { $0.state == .waiting }.count == 1
            }
            await env.advanceTime(by: .seconds(2 * 3600))
            do {
                try await idle("waits for more") { try await engine.describe(id).awaitedSignals == ["more"] }
            } catch {
                let (run, events) = try await engine.history(id)
                throw TestProcessError("\(error); lease \(run.leaseOwner ?? "none"), driven here \(engine.worker.drives(run.runID)), "
                    + "history \(historyShape(events).suffix(4))")
            }
            let steps = try await engine.query(id, name: "steps", as: [String].self)  // live, or by replay when evicted
            #expect(steps.count == 7, "\(steps)")
            try await engine.signal(id, name: "more", "m\(round)")
        }
        let (run, _) = try await engine.history(id)
        guard case .completed(let data) = try await engine.client.outcome(of: run.runID) else {
            throw TestProcessError("the second round did not complete")
        }
        let output = try JSONDecoder().decode(CacheProbe.Output.self, from: data)
        return (try await engine.history(first.runID).1, try await engine.history(run.runID).1, output, evictions)
    }

    /// A test environment with the CacheProbe workflow, its child and its activity, and the given
    /// instance cache capacity (`nil`: the default).
    func probeEnvironment(capacity: Int?, _ name: String = #function) async throws -> TestEnvironment {
        let env = try await TestEnvironment(
            journal: JournalConfiguration(temporaryJournalPath(name)), worker: WorkerOptions(instanceCacheCapacity: capacity))
        env.register(CacheProbe.self)
        env.register(CacheChild.self)
        env.register(Transform(log: CallLog()))
        return env
    }

    @Test func workerOptionsSetTheCapacityAndAnAbsurdOneIsRaisedToZero() async throws {
        let engine = try await Engine(
            journal: JournalConfiguration(temporaryJournalPath()), worker: WorkerOptions(instanceCacheCapacity: 3))
        #expect(engine.worker.instanceCacheCapacity == 3)
        await engine.shutdown()
        #expect(WorkerOptions(instanceCacheCapacity: -5).instanceCacheCapacity == 0)
        #expect(WorkerOptions().instanceCacheCapacity == nil)
    }

    @Test func evictedAtEveryIdleMomentRecordsTheUncachedHistory() async throws {
        let uncached = try await probeEnvironment(capacity: nil)
        let (a0, a1, aOut, _) = try await drive(uncached, id: "probe", evicting: false)
        #expect(uncached.engine.worker.evictedRunCount == 0)
        await uncached.close()

        let env = try await probeEnvironment(capacity: 0)
        let evicting = env.engine
        let (b0, b1, bOut, evictions) = try await drive(env, id: "probe", evicting: true)
        // Idle moments per round: the timer, go, never, the child (and the child's own timer), the
        // side-by-side timer, more: 7 each, every one evicted once; the clock moves or the signal
        // goes only after the eviction, so no wake-up comes before it.
        #expect(evictions == [1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 13, 14], "evictions counted at each idle moment: \(evictions)")
        #expect(evicting.worker.evictedRunCount == 14, "evicted \(evicting.worker.evictedRunCount) times")
        #expect(historyShape(b0) == historyShape(a0))
        #expect(historyShape(b1) == historyShape(a1))
        #expect(bOut.steps == aOut.steps)
        #expect(bOut.round == 1)
        // The evicted run's history replays against the code, decision for decision.
        let probes = try await runIDs(evicting, "probe")
        #expect(probes.count == 2)
        for runID in probes {
            #expect(try await evicting.replay(runID).mismatch == nil)
        }
        #expect(try await evicting.journal.queuedSignals().isEmpty)
        #expect(evicting.worker.liveRunCount == 0, "nothing stays live with capacity 0")
        await env.close()
    }

    func runIDs(_ engine: Engine, _ workflowID: String) async throws -> [String] {
        try await engine.journal.runs(RunFilter(workflowIDPrefix: workflowID)).filter { $0.workflowID == workflowID }.map(\.runID)
    }

    @Test func aTimerOfAnEvictedRunFiresFromTheDueTimeIndex() async throws {
        // A test engine's clock: the hour-long timer cannot come due before the run is idle, however
        // long this process stalls under load, and awaiting the result skips the hour.
        let env = try await TestEnvironment(
            journal: JournalConfiguration(temporaryJournalPath(#function)), worker: WorkerOptions(instanceCacheCapacity: 0))
        let engine = env.engine
        engine.register(CacheSleeper.self)
        let run = try await engine.start(CacheSleeper.self, input: 3_600_000, id: "sleeper")
        try await eventually(
            "the sleeper is evicted (evicted \(engine.worker.evictedRunCount), live \(engine.worker.liveRunCount))"
        ) {
            engine.worker.evictedRunCount == 1 && !engine.worker.drives(run.runID)
        }
        // Its timer is in the index, not in memory.
        let due = try await engine.journal.dueRuns(before: env.now.addingTimeInterval(7200), limit: 10)
        #expect(due.map(\.runID) == [run.runID])
        #expect(try await engine.journal.nextWake(after: Date(timeIntervalSince1970: 0)) != nil)
        #expect(try await engine.journal.findRun(run.runID)?.leaseOwner == nil, "an evicted run's lease is given up")
        #expect(env.skipped == .zero)
        #expect(try await run.result() == "woke")
        #expect(env.skipped >= .seconds(3590), "skipped \(env.skipped)")
        let events = try await engine.history(run.runID).1
        #expect(events.map(\.kind) == [.workflowStarted, .timerStarted, .timerFired, .workflowCompleted])
        #expect(try await engine.journal.dueRuns(before: env.now.addingTimeInterval(7200), limit: 10).isEmpty)
        await env.close()
    }

    @Test func anEvictedRunWakesForASignalACancellationAndATermination() async throws {
        let engine = try await engine(capacity: 0)
        let a = try await engine.start(CacheWaiter.self, input: "a", id: "w-a")
        let b = try await engine.start(CacheWaiter.self, input: "b", id: "w-b")
        let c = try await engine.start(CacheWaiter.self, input: "c", id: "w-c")
        try await eventually("all three evicted") { engine.worker.evictedRunCount == 3 && engine.worker.liveRunCount == 0 }
        try await engine.signal("w-a", name: "go", "!")
        #expect(try await a.result() == "A!")
        try await engine.cancel("w-b", reason: "not needed")
        #expect(try await engine.client.outcome(of: b.runID) == .cancelled("not needed"))
        try await engine.terminate("w-c", reason: "stop")
        #expect(try await engine.client.outcome(of: c.runID) == .terminated("stop"))
        for run in [a.runID, b.runID] { #expect(try await engine.replay(run).mismatch == nil) }
        await engine.shutdown()
    }

    @Test func theLeastRecentlyActiveIdleRunsAreEvictedFirst() async throws {
        let engine = try await engine(capacity: 3)
        var runs: [String] = []
        for i in 0..<6 {
            runs.append(try await engine.start(CacheWaiter.self, input: "\(i)", id: "lru-\(i)").runID)
            try await eventually("run \(i) committed its first activation") {
                try await engine.describe("lru-\(i)").awaitedSignals == ["go"]
            }
        }
        try await eventually("three evicted (\(engine.worker.evictedRunCount), live \(engine.worker.liveRunCount))", timeout: .seconds(5)) {
            engine.worker.evictedRunCount == 3
        }
        #expect(runs.map { engine.worker.drives($0) } == [false, false, false, true, true, true])
        // A woken run is active again: the next eviction takes the oldest idle one (run 3).
        try await engine.signal("lru-0", name: "go", "x")
        try await eventually("run 0 completed") { try await !engine.describe("lru-0").run.status.isOpen }
        try await engine.signal("lru-1", name: "go", "x")
        try await eventually("run 1 completed") { try await !engine.describe("lru-1").run.status.isOpen }
        #expect(engine.worker.liveRunCount <= 3)
        #expect(engine.worker.drives(runs[5]))
        await engine.shutdown()
    }

    @Test func aRunWithAnActivityInFlightIsNeverEvicted() async throws {
        let engine = try await engine(capacity: 0)
        let run = try await engine.start(SlowFlow.self, input: 300, id: "busy")
        try await Task.sleep(for: .milliseconds(100))
        #expect(engine.worker.drives(run.runID), "driven while its activity runs")
        #expect(try await engine.journal.runsToResume().map(\.runID).contains(run.runID), "recorded as busy")
        _ = try await run.result()
        await engine.shutdown()
    }
}
