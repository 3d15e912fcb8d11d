@testable import Durable
import DurableTestSupport
import Foundation
import MetricsTestKit
import Testing

/// The rate limiter's machine alone, on a clock the tests move: buckets, order, keys, debt,
/// cancellation, stopping and pruning.
@Suite struct RateLimiterStateMachineTests {
    typealias Machine = RateLimiterStateMachine<String>
    let ms: UInt64 = 1_000_000

    /// Requests `name` at `now`; returns the names granted by that request.
    func ask(_ machine: inout Machine, _ name: String, key: String? = nil, cost: Int = 1, at now: UInt64) -> [String] {
        machine.request(ticket: name.hashValue, key: key, cost: cost, now: now, waiter: name).step.granted.map(\.waiter)
    }

    @Test func aBurstGoesAtOnceAndTheRestAtTheRate() {
        var machine = Machine(pool: .perSecond(10, burst: 2), key: nil, now: 0)
        #expect(ask(&machine, "a", at: 0) == ["a"])
        #expect(ask(&machine, "b", at: 0) == ["b"])
        let third = machine.request(ticket: 3, key: nil, cost: 1, now: 0, waiter: "c")
        #expect(third.step.granted.isEmpty && !third.atOnce)
        #expect(third.step.wake == 100 * ms)  // one unit every 100 ms
        #expect(machine.tick(now: 99 * ms).granted.isEmpty)
        let step = machine.tick(now: 100 * ms)
        #expect(step.granted.map(\.waiter) == ["c"])
        #expect(step.granted.first?.waited == 100 * ms)
        #expect(step.wake == nil && step.waiting == 0)
    }

    @Test func aCostlyAttemptIsNotPassedByCheaperOnesWhileThePoolIsShort() {
        var machine = Machine(pool: .perSecond(10, burst: 5), key: nil, now: 0)
        #expect(ask(&machine, "a", cost: 4, at: 0) == ["a"])  // 1 unit left
        #expect(ask(&machine, "big", cost: 3, at: 0).isEmpty)
        #expect(ask(&machine, "small", cost: 1, at: 0).isEmpty)  // 1 unit is there, but "big" is first
        #expect(machine.tick(now: 199 * ms).granted.isEmpty)
        #expect(machine.tick(now: 200 * ms).granted.map(\.waiter) == ["big"])
        #expect(machine.tick(now: 300 * ms).granted.map(\.waiter) == ["small"])
    }

    @Test func keysAreLimitedApartAndAnExhaustedKeyHoldsOnlyItsOwnAttempts() {
        var machine = Machine(pool: nil, key: .perSecond(10, burst: 1), now: 0)
        #expect(ask(&machine, "a1", key: "a", at: 0) == ["a1"])
        #expect(ask(&machine, "a2", key: "a", at: 0).isEmpty)
        #expect(ask(&machine, "a3", key: "a", at: 0).isEmpty)
        #expect(ask(&machine, "b1", key: "b", at: 0) == ["b1"])  // passes a2 and a3
        #expect(ask(&machine, "none", at: 0) == ["none"])  // no key, and no pool limit
        #expect(machine.tick(now: 100 * ms).granted.map(\.waiter) == ["a2"])
        #expect(machine.tick(now: 200 * ms).granted.map(\.waiter) == ["a3"])
    }

    @Test func aCostAboveTheBurstTakesAFullBucketAndLeavesItInDebt() {
        var machine = Machine(pool: .perSecond(10, burst: 2), key: nil, now: 0)
        #expect(ask(&machine, "huge", cost: 5, at: 0) == ["huge"])  // 2 there: -3 after
        let next = machine.request(ticket: 2, key: nil, cost: 1, now: 0, waiter: "next")
        #expect(next.step.wake == 400 * ms)  // from -3 to 1 at 10 a second
        #expect(machine.tick(now: 400 * ms).granted.map(\.waiter) == ["next"])
    }

    @Test func cancellingTheFirstWaiterLetsTheNextOneGo() {
        var machine = Machine(pool: .perSecond(10, burst: 3), key: nil, now: 0)
        #expect(ask(&machine, "a", cost: 2, at: 0) == ["a"])
        #expect(ask(&machine, "big", cost: 3, at: 0).isEmpty)
        #expect(ask(&machine, "small", cost: 1, at: 0).isEmpty)
        let (waiter, step) = machine.cancel(ticket: "big".hashValue, now: 0)
        #expect(waiter == "big")
        #expect(step.granted.map(\.waiter) == ["small"])
        #expect(machine.cancel(ticket: "big".hashValue, now: 0).0 == nil)  // not waiting any more
    }

    @Test func stoppingReturnsTheWaitersAndGrantsEveryLaterRequest() {
        var machine = Machine(pool: .perMinute(1), key: nil, now: 0)
        #expect(ask(&machine, "a", at: 0) == ["a"])
        #expect(ask(&machine, "b", at: 0).isEmpty)
        #expect(machine.stop() == ["b"])
        #expect(machine.waitingCount == 0)
        #expect(ask(&machine, "c", at: 0) == ["c"])
    }

    @Test func fullKeyBucketsArePrunedSoManyKeysDoNotGrowWithoutBound() {
        var machine = Machine(pool: nil, key: .perSecond(100, burst: 1), now: 0)
        for i in 0..<1025 { #expect(ask(&machine, "k\(i)", key: "k\(i)", at: 0) == ["k\(i)"]) }
        // Past 1,024 buckets the machine looked: none was full again, so it waits for twice as many.
        #expect(machine.keyBucketCount == 1025)
        // A second later those are full again: when the count passes 2,050, they are dropped.
        for i in 0..<1026 { #expect(ask(&machine, "n\(i)", key: "n\(i)", at: 1_000 * ms) == ["n\(i)"]) }
        #expect(machine.keyBucketCount == 1026, "only the new keys' buckets, not 2,051")
    }

    @Test func outOfRangeLimitsAreRaisedToTheLeastAllowed() {
        let limit = RateLimit(0, per: .zero, burst: -3)
        #expect(limit.units == 1 && limit.interval == .milliseconds(1) && limit.burst == 1)
        #expect(RateLimit.perMinute(120).unitsPerSecond == 2)
        #expect(RateLimit.perSecond(5).burst == 5)
    }
}

/// Rate limits in a running engine: attempts wait for capacity before their slot, the wait counts in
/// schedule-to-start, and the limits and waits are in metrics.
@Suite(.timeLimit(.minutes(2))) struct RateLimitEngineTests: ProbeSuite {
    let log = ProbeLog()
    let metrics = TestMetrics()
    let factoryCalls = Counter()
    let pool = [("pool", "Probe")]

    func engine(_ name: String = #function, pool: PoolOptions) async throws -> Engine {
        try await probeEngine(name, pool: pool) { _ in }
    }

    @Test func attemptsBeyondThePoolsRateWaitAndTheWaitIsInScheduleToStart() async throws {
        let engine = try await engine(pool: .warm(min: 2, max: 8, rateLimit: .perSecond(5, burst: 1)))
        await engine.warmUp()
        let (outcomes, _) = try await run(engine, (0..<4).map { ProbePlan(label: "p\($0)") })
        #expect(outcomes == Array(repeating: "ok a1", count: 4))
        // One went at once; three waited, one every 200 ms: the last about 600 ms.
        #expect(try metrics.expectCounter("durable_pool_rate_limited_total", pool).totalValue == 3)
        let waits = try metrics.expectTimer("durable_pool_rate_limit_wait_seconds", pool).values.sorted()
        #expect(waits.count == 3)
        #expect(waits.last.map { $0 >= 550_000_000 } == true, "\(waits)")
        let toStart = try metrics.expectTimer("durable_activity_schedule_to_start_seconds", [("activity_type", "Probe")])
        #expect(toStart.values.max().map { $0 >= 550_000_000 } == true, "\(toStart.values)")
        #expect(try metrics.expectGauge("durable_pool_rate_limit_units_per_second", pool).lastValue == 5)
        #expect(try metrics.expectGauge("durable_pool_rate_limit_waiting", pool).lastValue == 0)
        await engine.shutdown()
    }

    @Test func eachKeyHasItsOwnLimit() async throws {
        let engine = try await engine(pool: .warm(min: 2, max: 8, keyRateLimit: .perSecond(2, burst: 1)))
        await engine.warmUp()
        let plans = ["a", "a", "b", "b"].enumerated().map { ProbePlan(label: "p\($0)", rateKey: $1) }
            + [ProbePlan(label: "nokey")]
        let (outcomes, _) = try await run(engine, plans)
        #expect(outcomes == Array(repeating: "ok a1", count: 5))
        // The second of each key waited about 500 ms; the others, and the one without a key, did not.
        #expect(try metrics.expectCounter("durable_pool_rate_limited_total", pool).totalValue == 2)
        let waits = try metrics.expectTimer("durable_pool_rate_limit_wait_seconds", pool).values
        #expect(waits.count == 2 && waits.allSatisfy { $0 >= 450_000_000 }, "\(waits)")
        #expect(try metrics.expectGauge("durable_pool_key_rate_limit_units_per_second", pool).lastValue == 2)
        await engine.shutdown()
    }

    @Test func anAttemptThatWaitsLongerThanItsScheduleToStartTimesOut() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 4, rateLimit: .perMinute(1)))
        await engine.warmUp()
        let plan = ProbePlan(options: options(scheduleToStart: .milliseconds(200)))
        let (outcomes, _) = try await run(engine, [plan, plan])
        #expect(outcomes.sorted() == ["ScheduleToStartTimeout a1", "ok a1"])
        #expect(log.entries.count == 1)  // the one that timed out never ran
        #expect(try metrics.expectGauge("durable_pool_rate_limit_waiting", pool).lastValue == 0)
        await engine.shutdown()
    }

    @Test func costsCountUnitsAndShutdownReleasesAnAttemptStillWaiting() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 4, rateLimit: .perMinute(10)))
        await engine.warmUp()
        // The first takes all 10 units; the second needs 1 more, six seconds away.
        let first = try await engine.start(ProbeFlow.self, input: [ProbePlan(label: "first", rateCost: 10)])
        #expect(try await first.result() == ["ok a1"])
        let second = try await engine.start(ProbeFlow.self, input: [ProbePlan(label: "second")])
        try await Task.sleep(for: .milliseconds(200))
        #expect(try metrics.expectGauge("durable_pool_rate_limit_waiting", pool).lastValue == 1)
        #expect(log.entries.map(\.label) == ["first"])
        let started = ContinuousClock.now
        await engine.shutdown()  // would hang if the waiting attempt were never released
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await engine.describe(second.runID).run.status == .running)  // left open for the next worker
    }
}
