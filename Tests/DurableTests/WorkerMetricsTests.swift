import Durable
import DurableTestSupport
import Foundation
import MetricsTestKit
import Testing

/// The engine's own metrics (runs, activity attempts, journal commits, idle pool slots), through the
/// `TestMetrics` factory given to the engine: no process-wide bootstrap.
@Suite(.timeLimit(.minutes(2))) struct WorkerMetricsTests: ProbeSuite {
    let log = ProbeLog()
    let metrics = TestMetrics()
    let factoryCalls = Counter()
    let probe = ("activity_type", "Probe")

    /// An engine with ``ProbeFlow`` and ``Failing``; `pool` registers Probe in a pool.
    func engine(_ name: String = #function, pool: PoolOptions? = nil) async throws -> Engine {
        try await probeEngine(name, pool: pool) { $0.register(Failing.self) }
    }

    func closed(_ type: String, _ outcome: String) throws -> Int64 {
        try metrics.expectCounter("durable_runs_closed_total", [("workflow_type", type), ("outcome", outcome)]).totalValue
    }

    func attempts(_ outcome: String) throws -> Int64 {
        try metrics.expectCounter("durable_activity_attempts_total", [probe, ("outcome", outcome)]).totalValue
    }

    @Test func runsAreCountedByWorkflowTypeWhenStartedAndByOutcomeWhenClosed() async throws {
        let engine = try await engine()
        let (outcomes, _) = try await run(engine, [ProbePlan()])
        #expect(outcomes == ["ok a1"])
        let failing = try await engine.start(Failing.self, input: "x")
        await #expect(throws: (any Error).self) { try await failing.result() }

        for type in ["ProbeFlow", "Failing"] {
            #expect(try metrics.expectCounter("durable_runs_started_total", [("workflow_type", type)]).totalValue == 1)
        }
        #expect(try closed("ProbeFlow", "completed") == 1)
        #expect(try closed("Failing", "failed") == 1)
        // Every outcome's counter exists from the type's registration on (a series at 0, not a gap).
        for outcome in ["failed", "cancelled", "terminated", "continued_as_new"] {
            #expect(try closed("ProbeFlow", outcome) == 0)
        }
        #expect(try closed("Failing", "completed") == 0)
        #expect(try metrics.expectCounter("durable_runs_held_total", [("workflow_type", "ProbeFlow")]).totalValue == 0)
        await engine.shutdown()
    }

    @Test func anAttemptThatFailsOnceThenSucceedsCountsOneFailedAndOneCompleted() async throws {
        let engine = try await engine()
        let plan = ProbePlan(steps: [.init(fail: true), .init(sleepMs: 30)], options: options(attempts: 2))
        let (outcomes, _) = try await run(engine, [plan])
        #expect(outcomes == ["ok a2"])
        #expect(try attempts("failed") == 1)
        #expect(try attempts("completed") == 1)
        for outcome in ["timed_out", "cancelled", "stopped"] { #expect(try attempts(outcome) == 0) }
        // The code's time per attempt, in order: the failure at once, then the 30 ms success.
        let times = try metrics.expectTimer("durable_activity_attempt_seconds", [probe]).values
        #expect(times.count == 2)
        #expect(times.last.map { $0 >= 30_000_000 } == true, "\(times)")
        #expect(try metrics.expectTimer("durable_activity_schedule_to_start_seconds", [probe]).values.count == 2)
        await engine.shutdown()
    }

    @Test func scheduleToStartCountsTheWaitForAFullPool() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 1))
        await engine.warmUp()
        let holder = ProbePlan(label: "holder", steps: [.init(sleepMs: 400)])
        let waiter = ProbePlan(label: "waiter")
        let (outcomes, _) = try await run(engine, [holder, waiter])
        #expect(outcomes == ["ok a1", "ok a1"])
        // One attempt started at once on the warm slot; the other waited for it, about 400 ms.
        let waits = try metrics.expectTimer("durable_activity_schedule_to_start_seconds", [probe]).values.sorted()
        #expect(waits.count == 2)
        #expect(waits.first.map { $0 < 300_000_000 } == true, "\(waits)")
        #expect(waits.last.map { $0 >= 300_000_000 } == true, "\(waits)")
        await engine.shutdown()
    }

    @Test func everyCommittedBatchIsTimedAndItsEventsCounted() async throws {
        let engine = try await engine()
        let (_, events) = try await run(engine, [ProbePlan(label: "a"), ProbePlan(label: "b")])
        let commits = try metrics.expectTimer("durable_journal_commit_seconds").values
        let sizes = try metrics.expectRecorder("durable_journal_batch_events").values
        #expect(!commits.isEmpty)
        #expect(commits.count == sizes.count)
        #expect(commits.allSatisfy { $0 > 0 })
        // The run's whole history went through these batches, each of them at least one event.
        #expect(Int(sizes.reduce(0, +)) == events.count)
        #expect(sizes.allSatisfy { $0 >= 1 })
        await engine.shutdown()
    }

    @Test func poolReportsItsIdleSlots() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 2))
        await engine.warmUp()
        let pool = [("pool", "Probe")]
        #expect(try metrics.expectGauge("durable_pool_slots_idle", pool).lastValue == 1)
        let busy = ProbePlan(steps: [.init(sleepMs: 200)])
        let (outcomes, _) = try await run(engine, [busy, busy])
        #expect(outcomes == ["ok a1", "ok a1"])
        let idle = try metrics.expectGauge("durable_pool_slots_idle", pool).values
        #expect(idle.contains(0), "both slots were busy at once: \(idle)")
        #expect(idle.last == 2)
        await engine.shutdown()
    }

    @Test func noLabelValueIsARunIDOrAWorkflowID() async throws {
        let engine = try await engine(pool: .warm(min: 0, max: 1))
        let plan = ProbePlan(steps: [.init(fail: true), .init()], options: options(attempts: 2))
        let handle = try await engine.start(ProbeFlow.self, input: [plan], id: "claim-1042")
        _ = try await handle.result()
        let failing = try await engine.start(Failing.self, input: "x", id: "claim-1043")
        _ = try? await failing.result()
        let identifiers: Set<String> = [handle.runID, failing.runID, "claim-1042", "claim-1043"]

        let dimensions = metrics.counters.flatMap(\.dimensions) + metrics.timers.flatMap(\.dimensions)
            + metrics.recorders.flatMap(\.dimensions)
        #expect(!dimensions.isEmpty)
        #expect(dimensions.allSatisfy { !identifiers.contains($0.1) }, "\(dimensions.filter { identifiers.contains($0.1) })")
        // Only registered names and fixed words.
        #expect(Set(dimensions.map(\.0)).isSubset(of: ["workflow_type", "activity_type", "outcome", "pool"]))
        await engine.shutdown()
    }
}
