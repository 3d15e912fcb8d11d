import Durable
import Foundation
import MetricsTestKit
import Synchronization
import Testing

/// Worker-runtime behaviours the other suites leave out: a heartbeat timeout without any heartbeat,
/// error type names that are not retried, pool metrics, slot replacement after a timeout, the pool's
/// warm-up timeout, and a worker that warms its pools before it takes work.
@Suite(.timeLimit(.minutes(2))) struct ActivityRuntimeCoverageTests: ProbeSuite {
    let log = ProbeLog()
    let metrics = TestMetrics()
    let factoryCalls = Counter()
    let pool = [("pool", "Probe")]

    /// An engine with ``ProbeFlow`` and ``HeartbeatCatchFlow``; `pool` registers Probe in a pool whose
    /// factory takes 30 ms.
    func engine(_ name: String = #function, pool: PoolOptions? = nil) async throws -> Engine {
        try await probeEngine(name, pool: pool) { $0.register(HeartbeatCatchFlow.self) }
    }

    /// The plan label of each activity sequence number, from the ActivityScheduled events.
    func labels(_ events: [HistoryEvent]) -> [Int: String] {
        var labels: [Int: String] = [:]
        for event in events where event.kind == .activityScheduled {
            labels[event.seq] = event.data.flatMap { try? JSONDecoder().decode(ProbePlan.self, from: $0) }?.label
        }
        return labels
    }

    /// The events that end an attempt, each carrying that attempt's details.
    func attemptEnds(_ events: [HistoryEvent]) -> [HistoryEvent] {
        events.filter { [.activityAttemptFailed, .activityCompleted, .activityFailed, .activityCancelled].contains($0.kind) }
    }

    // MARK: - Heartbeat timeouts

    @Test func heartbeatTimeoutFiresForAnAttemptThatNeverHeartbeatsCountedFromItsStart() async throws {
        let engine = try await engine()
        let plan = ProbePlan(steps: [.init(sleepMs: 10_000), .init()], options: options(heartbeat: .seconds(1), attempts: 2))
        let started = ContinuousClock.now
        let (outcomes, events) = try await run(engine, [plan])
        #expect(outcomes == ["ok a2"])
        #expect(ContinuousClock.now - started < .seconds(8), "the 10 s attempt was not cut off by the heartbeat timeout")
        let failed = events.filter { $0.kind == .activityAttemptFailed }
        #expect(failed.map(\.attempt) == [1])
        let failure = try #require(failed.first?.failure)
        #expect(failure.type == "HeartbeatTimeout")
        #expect(failure.limitMs == 1_000)
        #expect(failure.retryable == true)
        let details = try #require(failed.first?.attemptDetails)
        #expect(details.heartbeat == nil)
        // The first heartbeat was due 1 s after the code started, not earlier.
        #expect(try #require(details.runMs) >= 999)
        #expect(!events.contains { $0.kind == .activityHeartbeat })
        #expect(events.first { $0.kind == .activityCompleted }?.attempt == 2)
        #expect(log.entries.map(\.attempt) == [1, 2])
        await engine.shutdown()
    }

    @Test func heartbeatTimeoutDoesNotCountTheWaitForAPoolSlot() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 1))
        await engine.warmUp()
        // The waiter queues behind the holder for about 2 s, more than its 1 s heartbeat timeout,
        // then heartbeats every 50 ms while it runs.
        let holder = ProbePlan(label: "holder", steps: [.init(sleepMs: 2_000)])
        let waiter = ProbePlan(
            label: "waiter", steps: [.init(heartbeats: 4, heartbeatEveryMs: 50)],
            options: options(heartbeat: .seconds(1)))
        let (outcomes, events) = try await run(engine, [holder, waiter])
        #expect(outcomes == ["ok a1", "ok a1"])
        #expect(!events.contains { $0.kind == .activityAttemptFailed || $0.kind == .activityFailed })
        let seqs = labels(events)
        let waited = try #require(events.first { $0.kind == .activityCompleted && seqs[$0.seq] == "waiter" })
        #expect(try #require(waited.attemptDetails?.queueMs) >= 1_000)
        await engine.shutdown()
    }

    @Test func lastHeartbeatTimeoutReachesWorkflowCodeAsItsOwnType() async throws {
        let engine = try await engine()
        let plan = ProbePlan(steps: [.init(sleepMs: 10_000)], options: options(heartbeat: .milliseconds(400), attempts: 2))
        let handle = try await engine.start(HeartbeatCatchFlow.self, input: plan)
        let outcome = try await handle.result()
        let events = try await engine.history(handle.runID).1
        let final = try #require(events.first { $0.kind == .activityFailed })
        #expect(outcome == "HeartbeatTimeout after 0.4 seconds in attempt 2 of Probe seq \(final.seq)")
        #expect(final.attempt == 2)
        #expect(final.failure?.type == "HeartbeatTimeout")
        #expect(final.failure?.limitMs == 400)
        #expect(final.failure?.retryable == false)
        let retried = events.filter { $0.kind == .activityAttemptFailed }
        #expect(retried.map(\.attempt) == [1])
        #expect(retried.map { $0.failure?.type } == ["HeartbeatTimeout"])
        #expect(log.entries.map(\.attempt) == [1, 2])
        await engine.shutdown()
    }

    // MARK: - Retry policy

    @Test func errorTypesListedAsNonRetryableEndTheActivityAtTheFirstAttempt() async throws {
        let calls = CallLog()
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(ErrorThrowerFlow.self)
        engine.register(ErrorThrower(log: calls))
        // QuotaExceeded is a Swift error type listed by name; PaymentDeclined an ApplicationError type
        // listed by name (itself retryable); TransientGlitch is not listed.
        let handle = try await engine.start(ErrorThrowerFlow.self, input: ["quota", "glitch", "declined"])
        #expect(try await handle.result() == ["QuotaExceeded after 1", "TransientGlitch after 3", "PaymentDeclined after 1"])
        #expect(calls.entries == ["quota a1", "glitch a1", "glitch a2", "glitch a3", "declined a1"])
        let events = try await engine.history(handle.runID).1
        let retried = events.filter { $0.kind == .activityAttemptFailed }
        #expect(retried.map(\.attempt) == [1, 2])
        #expect(retried.allSatisfy { $0.failure?.type == "TransientGlitch" && $0.failure?.retryable == true })
        let failed = events.filter { $0.kind == .activityFailed }
        #expect(failed.map { $0.failure?.type } == ["QuotaExceeded", "TransientGlitch", "PaymentDeclined"])
        #expect(failed.map(\.attempt) == [1, 3, 1])
        #expect(failed.allSatisfy { $0.failure?.retryable == false })
        await engine.shutdown()
    }

    // MARK: - Pools

    @Test func poolMetricsRecordQueueWaitsSlotsInUseAndFailures() async throws {
        let engine = try await engine(pool: .warm(min: 0, max: 2))
        // Two holders fill the pool for 800 ms; two waiters queue behind them and fail once they run:
        // w1 is retried (after 200 ms) and succeeds, w2 has no retry. Five attempts, two failures.
        let plans = [
            ProbePlan(label: "h1", steps: [.init(sleepMs: 800)]),
            ProbePlan(label: "h2", steps: [.init(sleepMs: 800)]),
            ProbePlan(label: "w1", steps: [.init(fail: true), .init()], options: options(attempts: 2, backoff: .milliseconds(200))),
            ProbePlan(label: "w2", steps: [.init(fail: true)]),
        ]
        let (outcomes, events) = try await run(engine, plans)
        #expect(outcomes == ["ok a1", "ok a1", "ok a2", "failed ApplicationError a1"])
        let ends = attemptEnds(events)
        #expect(ends.count == 5)

        // One queue wait per attempt: the values are the attempts' recorded queue waits.
        let waits = try metrics.expectTimer("durable_pool_queue_wait_seconds", pool).values
        #expect(waits.count == 5)
        let waitMicros = waits.map { Int((Double($0) / 1e3).rounded()) }.sorted()
        let recordedMicros = ends.compactMap { $0.attemptDetails?.queueMs }.map { Int(($0 * 1000).rounded()) }.sorted()
        #expect(recordedMicros.count == 5)
        if waitMicros.count == recordedMicros.count {
            #expect(zip(waitMicros, recordedMicros).allSatisfy { abs($0 - $1) <= 1 }, "\(waitMicros) vs \(recordedMicros)")
        }
        // The first attempts of the waiters waited for a holder to end (a warm-up and 800 ms).
        let seqs = labels(events)
        func queueMs(_ label: String, _ attempt: Int) throws -> Double {
            try #require(ends.first { seqs[$0.seq] == label && $0.attempt == attempt }?.attemptDetails?.queueMs)
        }
        let waiters = [try queueMs("w1", 1), try queueMs("w2", 1)]
        let holders = [try queueMs("h1", 1), try queueMs("h2", 1)]
        #expect(waiters.allSatisfy { $0 >= 400 }, "\(waiters)")
        #expect(holders.allSatisfy { holder in waiters.allSatisfy { holder < $0 } }, "holders \(holders), waiters \(waiters)")

        // Up to the pool's maximum, and back to 0 once the pool is idle.
        let inUse = try metrics.expectGauge("durable_pool_slots_in_use", pool)
        #expect(inUse.values.max() == 2)
        #expect(inUse.values.allSatisfy { (0...2).contains($0) })
        #expect(inUse.lastValue == 0)

        #expect(try metrics.expectCounter("durable_pool_failures_total", pool).totalValue == 2)
        #expect(events.filter { $0.kind == .activityAttemptFailed || $0.kind == .activityFailed }.count == 2)
        #expect(try metrics.expectTimer("durable_pool_run_seconds", pool).values.count == 5)
        await engine.shutdown()
    }

    @Test func slotIsReplacedAfterAStartToCloseTimeoutEvenWithoutRecyclingAfterFailures() async throws {
        let engine = try await engine(pool: .warm(min: 0, max: 1, recycleAfterFailure: false))
        let hung = ProbePlan(
            steps: [.init(sleepMs: 10_000), .init()], options: options(startToClose: .seconds(1), attempts: 2))
        let (outcomes, events) = try await run(engine, [hung])
        #expect(outcomes == ["ok a2"])
        let timedOut = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(timedOut.attempt == 1)
        #expect(timedOut.failure?.type == "StartToCloseTimeout")
        #expect(timedOut.attemptDetails?.slot == "Probe#1")
        let completed = try #require(events.first { $0.kind == .activityCompleted })
        #expect(completed.attempt == 2)
        #expect(completed.attemptDetails?.slot == "Probe#2")
        #expect(completed.attemptDetails?.cold == true)
        #expect(log.entries.map(\.slot) == ["Probe#1", "Probe#2"])
        #expect(try metrics.expectCounter("durable_pool_recycled_total", pool).totalValue == 1)
        #expect(factoryCalls.count == 2)

        // A plain failure keeps its slot in this pool: the timeout above is what replaced Probe#1.
        let flaky = ProbePlan(steps: [.init(fail: true), .init()], options: options(attempts: 2))
        let (flakyOutcomes, flakyEvents) = try await run(engine, [flaky])
        #expect(flakyOutcomes == ["ok a2"])
        #expect(attemptEnds(flakyEvents).compactMap { $0.attemptDetails?.slot } == ["Probe#2", "Probe#2"])
        #expect(try metrics.expectCounter("durable_pool_recycled_total", pool).totalValue == 1)
        #expect(factoryCalls.count == 2)
        await engine.shutdown()
    }

    @Test func factorySlowerThanTheWarmUpTimeoutFailsTheAttemptWithARetryableSlotWarmUpFailed() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()), metrics: metrics)
        engine.register(ProbeFlow.self)
        let calls = Tally()
        // The first warm-up would take a minute, the next ones no time; the pool allows 2 s (a margin
        // for a loaded machine, where the fast factory's task may wait a while for a thread).
        engine.register(Probe.self, pool: .warm(min: 0, max: 1, warmUpTimeout: .seconds(2))) { [log] in
            if calls.next() == 1 { try await Task.sleep(for: .seconds(60)) }
            return Probe(log: log)
        }
        let started = ContinuousClock.now
        let (outcomes, events) = try await run(engine, [ProbePlan(options: options(attempts: 2, backoff: .milliseconds(500)))])
        #expect(outcomes == ["ok a2"])
        #expect(ContinuousClock.now - started < .seconds(30), "the attempt waited for the slow factory")
        let failed = events.filter { $0.kind == .activityAttemptFailed }
        #expect(failed.map(\.attempt) == [1])
        let failure = try #require(failed.first?.failure)
        #expect(failure.type == "SlotWarmUpFailed")
        #expect(failure.retryable == true)
        #expect(failure.message.contains("pool Probe could not warm a slot"))
        #expect(failure.message.contains("warm-up timeout"))
        // The attempt never got a slot and its code never ran.
        #expect(failed.first?.attemptDetails?.slot == nil)
        #expect(failed.first?.attemptDetails?.runMs == nil)
        let completed = try #require(events.first { $0.kind == .activityCompleted })
        #expect(completed.attempt == 2)
        #expect(completed.attemptDetails?.cold == true)
        #expect(log.entries.map(\.attempt) == [2])
        #expect(calls.count == 2)
        #expect(try metrics.expectCounter("durable_pool_warm_up_failures_total", pool).totalValue == 1)
        #expect(try metrics.expectCounter("durable_pool_cold_starts_total", pool).totalValue == 1)
        #expect(try metrics.expectCounter("durable_pool_failures_total", pool).totalValue == 1)
        await engine.shutdown()
    }

    @Test
    func slotsInUseFallsBackToZeroAfterAFailedWarmUp() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()), metrics: metrics)
        engine.register(ProbeFlow.self)
        engine.register(Probe.self, pool: .warm(min: 0, max: 1)) { () async throws -> Probe in
            throw ApplicationError("model file missing")
        }
        let (outcomes, events) = try await run(engine, [ProbePlan()])
        #expect(outcomes == ["failed SlotWarmUpFailed a1"])
        #expect(events.first { $0.kind == .activityFailed }?.failure?.message.contains("model file missing") == true)
        #expect(try metrics.expectCounter("durable_pool_warm_up_failures_total", pool).totalValue == 1)
        // No slot runs or warms for an attempt any more.
        let inUse = try metrics.expectGauge("durable_pool_slots_in_use", pool)
        #expect(inUse.values.first == 1)
        #expect(inUse.lastValue == 0)
        await engine.shutdown()
    }

    @Test
    func slotsInUseCountsAnAttemptHandedASpareThatWarmedWhileItWaited() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()), metrics: metrics)
        engine.register(ProbeFlow.self)
        engine.register(Probe.self, pool: .warm(min: 1, max: 1)) { [log, factoryCalls] in
            factoryCalls.increment()
            try await Task.sleep(for: .milliseconds(300))
            return Probe(log: log)
        }
        // The pool's one slot is warming as a spare when the attempt asks: it waits, then gets it.
        let warming = Task { await engine.warmUp() }
        let deadline = ContinuousClock.now + .seconds(10)
        while factoryCalls.count == 0 {
            try #require(ContinuousClock.now < deadline, "the pool never started warming")
            try await Task.sleep(for: .milliseconds(5))
        }
        let (outcomes, events) = try await run(engine, [ProbePlan()])
        await warming.value
        #expect(outcomes == ["ok a1"])
        let details = try #require(events.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(details.slot == "Probe#1")
        #expect(details.cold == false)
        #expect(factoryCalls.count == 1)
        // The slot ran the attempt: the gauge reached 1 before falling back to 0.
        let inUse = try metrics.expectGauge("durable_pool_slots_in_use", pool)
        #expect(inUse.values.max() == 1, "\(inUse.values)")
        #expect(inUse.lastValue == 0)
        await engine.shutdown()
    }

    @Test func runWorkerWarmsThePoolMinimumBeforeItClaimsTheFirstRun() async throws {
        let path = temporaryJournalPath()
        let submitter = try await Engine(journal: JournalConfiguration(path))
        let (runID, _) = try await submitter.submit(
            workflowType: WarmStampFlow.name, input: try JSONEncoder().encode(["a", "b"]))
        await submitter.shutdown()

        let stamps = CallLog()
        let worker = try await Engine(journal: JournalConfiguration(path))
        worker.register(WarmStampFlow.self)
        // Room for two more slots: an attempt that came during the warm-up would warm a slot of its own.
        worker.register(WarmStamp.self, pool: .warm(min: 1, max: 3)) {
            stamps.record("warm start")
            try await Task.sleep(for: .milliseconds(300))
            stamps.record("warm end, run " + ((try? await worker.describe(runID).run.status.rawValue) ?? "?"))
            return WarmStamp(stamps: stamps)
        }
        let loop = Task { try await worker.runWorker() }
        let deadline = ContinuousClock.now + .seconds(20)
        while try await worker.describe(runID).run.status.isOpen {
            try #require(ContinuousClock.now < deadline, "the submitted run was never completed")
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(try await worker.describe(runID).outcome == .completed(Data(#""a,b""#.utf8)))
        // The run was still pending (not claimed) when the slot was warm.
        #expect(stamps.entries == ["warm start", "warm end, run pending", "run a on WarmStamp#1", "run b on WarmStamp#1"])
        let details = try await worker.history(runID).1.filter { $0.kind == .activityCompleted }.compactMap(\.attemptDetails)
        #expect(details.map(\.cold) == [false, false])
        loop.cancel()
        await worker.shutdown()
        _ = try? await loop.value
    }
}

// MARK: - Workflows and activities of these tests

/// Calls ``Probe`` once and reports a ``HeartbeatTimeout`` caught by its own type, with its fields.
struct HeartbeatCatchFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: ProbePlan) async throws -> String {
        do {
            let output = try await ctx.execute(Probe.self, input, options: input.options)
            return "ok a\(output.attempt)"
        } catch let timeout as HeartbeatTimeout {
            return "HeartbeatTimeout after \(timeout.limit) in attempt \(timeout.attempt) of \(timeout.activityType) seq \(timeout.sequence)"
        } catch let timeout as any ActivityTimeoutError {
            return "another timeout: \(timeout)"
        } catch let failure as ActivityFailure {
            return "ActivityFailure \(failure.cause.type)"
        }
    }
}

struct QuotaExceeded: Error {}
struct TransientGlitch: Error {}

/// Throws the error its input names: `quota`, `glitch`, or `declined` (an ``ApplicationError`` of
/// type `PaymentDeclined`, not marked non-retryable).
struct ErrorThrower: Activity {
    let log: CallLog
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        log.record("\(input) a\(ctx.attempt)")
        switch input {
        case "quota": throw QuotaExceeded()
        case "glitch": throw TransientGlitch()
        case "declined": throw ApplicationError("card declined", type: "PaymentDeclined")
        default: return input
        }
    }
}

/// Calls ``ErrorThrower`` once per input, one after the other, with up to 3 attempts and
/// `QuotaExceeded` and `PaymentDeclined` listed as non-retryable.
struct ErrorThrowerFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: [String]) async throws -> [String] {
        let options = ActivityOptions(
            startToClose: .seconds(10),
            retry: .exponential(
                initial: .milliseconds(10), coefficient: 1, maxAttempts: 3, nonRetryable: ["QuotaExceeded", "PaymentDeclined"]))
        var outcomes: [String] = []
        for name in input {
            do {
                outcomes.append(try await ctx.execute(ErrorThrower.self, name, options: options))
            } catch let failure as ActivityFailure {
                outcomes.append("\(failure.cause.type) after \(failure.attempts)")
            }
        }
        return outcomes
    }
}

/// Records that it ran, and on which slot.
struct WarmStamp: Activity {
    let stamps: CallLog
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        stamps.record("run \(input) on \(ctx.slot)")
        return input
    }
}

/// Calls ``WarmStamp`` once per input, one after the other.
struct WarmStampFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: [String]) async throws -> String {
        var done: [String] = []
        for item in input { done.append(try await ctx.execute(WarmStamp.self, item)) }
        return done.joined(separator: ",")
    }
}

/// A counter that returns each caller its own number.
final class Tally: Sendable {
    private let value = Mutex(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
    var count: Int { value.withLock { $0 } }
}
