import Durable
import DurableTestSupport
import Foundation
import GRDB
import MetricsTestKit
import Synchronization
import Testing

/// Timeouts, heartbeats, cancellation and pools, on real journals in this process.
@Suite(.timeLimit(.minutes(2))) struct WorkerRuntimeTests: ProbeSuite {
    let log = ProbeLog()
    let metrics = TestMetrics()
    let factoryCalls = Counter()

    /// An engine with ``ProbeFlow`` and ``CancelFlow``; `pool` registers Probe in a pool.
    func engine(_ name: String = #function, pool: PoolOptions? = nil, worker: WorkerOptions = WorkerOptions()) async throws -> Engine {
        try await probeEngine(name, pool: pool, worker: worker) { $0.register(CancelFlow.self) }
    }

    // MARK: - Timeouts

    @Test func startToCloseTimeoutIsRetriedAndRecordedWithItsAttempt() async throws {
        let engine = try await engine()
        // Margins are wide: the suite runs beside crash tests that load both cores.
        let plan = ProbePlan(
            steps: [.init(sleepMs: 10_000), .init()], options: options(startToClose: .milliseconds(600), attempts: 3))
        let (outcomes, events) = try await run(engine, [plan])
        #expect(outcomes == ["ok a2"])
        let failed = events.filter { $0.kind == .activityAttemptFailed }
        #expect(failed.map(\.attempt) == [1])
        #expect(failed.first?.failure?.type == "StartToCloseTimeout")
        #expect(failed.first?.failure?.limitMs == 600)
        #expect(events.first { $0.kind == .activityCompleted }?.attempt == 2)
        await engine.shutdown()
    }

    @Test func lastStartToCloseTimeoutReachesWorkflowCodeAsItsOwnType() async throws {
        let engine = try await engine()
        let plan = ProbePlan(steps: [.init(sleepMs: 10_000)], options: options(startToClose: .milliseconds(300), attempts: 2))
        let (outcomes, events) = try await run(engine, [plan])
        #expect(outcomes == ["StartToCloseTimeout a2"])
        #expect(events.filter { $0.kind == .activityAttemptFailed }.map(\.attempt) == [1])
        #expect(events.first { $0.kind == .activityFailed }?.failure?.type == "StartToCloseTimeout")
        await engine.shutdown()
    }

    @Test func heartbeatTimeoutFiresWhenHeartbeatsStopAndTheNextAttemptResumes() async throws {
        let engine = try await engine()
        // Attempt 1 reports progress 1, 2, 3 and then hangs; attempt 2 resumes from 3.
        let plan = ProbePlan(
            steps: [.init(sleepMs: 10_000, heartbeats: 3, heartbeatEveryMs: 20), .init(heartbeats: 1)],
            options: options(heartbeat: .milliseconds(600), attempts: 2))
        let started = ContinuousClock.now
        let (outcomes, events) = try await run(engine, [plan])
        #expect(outcomes == ["ok a2 resumed 3"])
        #expect(ContinuousClock.now - started < .seconds(8), "the 10 s attempt was not cut off by the heartbeat timeout")
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "HeartbeatTimeout")
        #expect(failure.attemptDetails?.heartbeat == "3")
        #expect(events.contains { $0.kind == .activityHeartbeat && $0.attempt == 1 })
        #expect(log.entries.map(\.resumed) == [nil, 3])
        await engine.shutdown()
    }

    @Test func scheduleToStartTimeoutEndsAnAttemptThatWaitsForAFullPool() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 1))
        await engine.warmUp()
        let holder = ProbePlan(label: "holder", steps: [.init(sleepMs: 1_500)])
        let waiter = ProbePlan(label: "waiter", options: options(scheduleToStart: .milliseconds(300), attempts: 5))
        let (outcomes, events) = try await run(engine, [holder, waiter])
        #expect(outcomes == ["ok a1", "ScheduleToStartTimeout a1"])
        // Not retried: another attempt would wait in the same queue.
        #expect(!events.contains { $0.kind == .activityAttemptFailed })
        #expect(log.entries.map(\.label) == ["holder"])
        await engine.shutdown()
    }

    @Test func scheduleToCloseTimeoutCutsOffARunningAttemptAndIsRecordedWithItsNumber() async throws {
        let engine = try await engine()
        // Attempt 1 fails at once, attempt 2 runs past the deadline.
        let plan = ProbePlan(
            steps: [.init(fail: true), .init(sleepMs: 20_000)],
            options: options(scheduleToClose: .milliseconds(1_500), attempts: 0, backoff: .milliseconds(100)))
        let started = ContinuousClock.now
        let (outcomes, events) = try await run(engine, [plan])
        #expect(ContinuousClock.now - started < .seconds(15), "the deadline, not the 20 s attempt, ended it")
        #expect(outcomes == ["ScheduleToCloseTimeout a2"])
        #expect(events.filter { $0.kind == .activityAttemptFailed }.map(\.attempt) == [1])
        let failed = try #require(events.first { $0.kind == .activityFailed })
        #expect(failed.attempt == 2)
        #expect(failed.failure?.type == "ScheduleToCloseTimeout")
        #expect(failed.failure?.limitMs == 1_500)
        #expect(log.entries.map(\.attempt) == [1, 2])
        await engine.shutdown()
    }

    @Test func scheduleToCloseDeadlinePassedWhileNoWorkerRanEndsTheActivityWithoutAnotherAttempt() async throws {
        let path = temporaryJournalPath()
        let plan = ProbePlan(steps: [.init(sleepMs: 20_000)], options: options(scheduleToClose: .seconds(1), attempts: 3))
        let first = try await Engine(journal: JournalConfiguration(path))
        first.register(ProbeFlow.self)
        first.register(Probe(log: log))
        let handle = try await first.start(ProbeFlow.self, input: [plan])
        while log.entries.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        await first.shutdown()  // records nothing more, as a crash would
        try await Task.sleep(for: .milliseconds(1_200))

        let second = try await Engine(journal: JournalConfiguration(path))
        second.register(ProbeFlow.self)
        second.register(Probe(log: log))
        try await second.recover()
        #expect(try await second.outcome(of: handle.runID) == .completed(Data(#"["ScheduleToCloseTimeout a1"]"#.utf8)))
        #expect(log.entries.map(\.attempt) == [1], "no attempt started after the deadline")
        let events = try await second.history(handle.runID).1
        #expect(!events.contains { $0.kind == .activityAttemptFailed })
        let failed = try #require(events.first { $0.kind == .activityFailed })
        #expect(failed.attempt == 1)
        #expect(failed.failure?.type == "ScheduleToCloseTimeout")
        await second.shutdown()
    }

    @Test func noRetryIsScheduledWhoseDelayWouldEndAfterTheScheduleToCloseDeadline() async throws {
        let engine = try await engine()
        // Delays 200, 400, 800 ms put attempt 4 at about 1.4 s; the next delay (1.6 s) would end at
        // about 3.0 s, after the 2.9 s deadline, so attempt 4's own failure ends the activity.
        let plan = ProbePlan(
            steps: [.init(fail: true)],
            options: ActivityOptions(
                startToClose: .seconds(10), scheduleToClose: .milliseconds(2_900),
                retry: .exponential(initial: .milliseconds(200), coefficient: 2, maxAttempts: 0)))
        let (outcomes, events) = try await run(engine, [plan])
        #expect(outcomes == ["failed ApplicationError a4"])
        #expect(events.filter { $0.kind == .activityAttemptFailed }.map(\.attempt) == [1, 2, 3])
        let failed = try #require(events.first { $0.kind == .activityFailed })
        #expect(failed.attempt == 4)
        #expect(failed.failure?.type == "ApplicationError")
        #expect(failed.failure?.retryable == false)
        #expect(!events.contains { $0.failure?.type == "ScheduleToCloseTimeout" })
        await engine.shutdown()
    }

    // MARK: - Cancellation

    @Test func workflowCancelsARunningActivityAndTheOutcomeIsRecorded() async throws {
        let engine = try await engine()
        let long = ProbePlan(label: "long", steps: [.init(sleepMs: 10_000)], options: options(attempts: 3))
        let started = ContinuousClock.now
        let handle = try await engine.start(CancelFlow.self, input: long)
        #expect(try await handle.result() == "trigger,cancelled")
        #expect(ContinuousClock.now - started < .seconds(7), "the 10 s attempt was not cut short")
        let events = try await engine.history(handle.runID).1
        let kinds = events.map(\.kind)
        #expect(kinds.contains(.activityCancelRequested))
        let cancelled = try #require(events.first { $0.kind == .activityCancelled })
        #expect(cancelled.failure?.type == "Cancelled")
        #expect(cancelled.attempt == 1)
        // The cancel request is a decision of the workflow: the history replays.
        #expect(try await engine.replay(handle.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func cancelledActivityWhoseCodeIgnoresCancellationEndsAtItsTimeoutWithoutRetrying() async throws {
        let engine = try await engine()
        // The code ignores cancellation; start-to-close ends it, and the cancel request means no retry
        // (not another attempt after a 20 s delay).
        let long = ProbePlan(
            label: "long", steps: [.init(sleepMs: 5_000, ignoreCancel: true)],
            options: options(startToClose: .milliseconds(800), attempts: 3, backoff: .seconds(20)))
        let started = ContinuousClock.now
        let handle = try await engine.start(CancelFlow.self, input: long)
        #expect(try await handle.result() == "trigger,cancelled")
        #expect(ContinuousClock.now - started < .seconds(4.5), "ended at the timeout, not after the 5 s code")
        let events = try await engine.history(handle.runID).1
        #expect(!events.contains { $0.kind == .activityAttemptFailed })
        #expect(events.first { $0.kind == .activityCancelled }?.failure?.type == "StartToCloseTimeout")
        await engine.shutdown()
    }

    @Test(.enabled(if: TestBackend.isSQLite, "cuts the history back in the SQLite file, as a crash would"))
    func cancelRecordedBeforeACrashDuringARetryDelayIsHonouredAfterTheRestart() async throws {
        let path = temporaryJournalPath()
        // A run whose long activity failed once and waits 20 s for its retry when the workflow cancels it.
        // The trigger takes 200 ms, so that the failure (at once) is recorded before the cancel.
        let long = ProbePlan(
            label: "long", steps: [.init(fail: true), .init()], triggerMs: 200,
            options: options(attempts: 3, backoff: .seconds(20)))
        let first = try await Engine(journal: JournalConfiguration(path))
        first.register(CancelFlow.self)
        first.register(Probe(log: log))
        let handle = try await first.start(CancelFlow.self, input: long)
        #expect(try await handle.result() == "trigger,cancelled")
        let events = try await first.history(handle.runID).1
        await first.shutdown()
        let longFailed = try #require(events.first { $0.kind == .activityAttemptFailed })  // only "long" fails
        let (longSeq, failedAt) = (longFailed.seq, longFailed.index)
        let requestedAt = try #require(events.first { $0.kind == .activityCancelRequested }?.index)
        #expect(failedAt < requestedAt, "the cancel request came during the retry delay")
        // Cut the journal back to the moment after the cancel request was committed, as a crash would.
        let cut = try #require(events.first { $0.kind == .activityCancelRequested }?.index) + 1
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "DELETE FROM events WHERE idx >= ?", arguments: [cut])
            try db.execute(sql: "UPDATE runs SET status = 'running', closed_at = NULL")
        }
        try queue.close()

        let second = try await Engine(journal: JournalConfiguration(path))
        second.register(CancelFlow.self)
        second.register(Probe(log: log))
        let started = ContinuousClock.now
        try await second.recover()
        let outcome = try await second.outcome(of: handle.runID)
        #expect(outcome == .completed(Data(#""trigger,cancelled""#.utf8)))
        #expect(ContinuousClock.now - started < .seconds(10), "the retry delay was not waited out")
        #expect(log.entries.filter { $0.label == "long" }.map(\.attempt) == [1])
        let cancelled = try #require(try await second.history(handle.runID).1.first { $0.kind == .activityCancelled })
        #expect(cancelled.seq == longSeq)
        #expect(cancelled.attempt == 1, "recorded with the last attempt issued")
        await second.shutdown()
    }

    @Test func manyQueuedAttemptsOfOneRunDoNotNestOnOneStack() async throws {
        // Attempts that finish without suspending, queued for a one-slot pool: each slot hand-over
        // starts a new task (before the fix, each ran inside the previous one's release: 2,500 deep
        // crashed the process).
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath(), durability: .fast))
        engine.register(ProbeFlow.self)
        engine.register(Probe.self, pool: .warm(min: 1, max: 1)) { [log] in Probe(log: log) }
        await engine.warmUp()
        let plans = (0..<3_000).map { ProbePlan(label: "q\($0)") }
        let (outcomes, events) = try await run(engine, plans)
        #expect(outcomes.count == 3_000 && outcomes.allSatisfy { $0 == "ok a1" })
        #expect(events.filter { $0.kind == .activityCompleted }.count == 3_000)
        await engine.shutdown()
    }

    // MARK: - Pools

    @Test func poolWarmsItsMinimumBeforeWorkArrivesAndReusesWarmSlots() async throws {
        let engine = try await engine(pool: .warm(min: 2, max: 3))
        await engine.warmUp()
        #expect(factoryCalls.count == 2)
        #expect(try metrics.expectCounter("durable_pool_cold_starts_total", [("pool", "Probe")]).totalValue == 2)
        // Two attempts that overlap (each runs 200 ms), so each takes one of the two warm slots; instant
        // ones could run one after the other on the same slot.
        let overlapping = ProbePlan(steps: [.init(sleepMs: 200)])
        let (outcomes, events) = try await run(engine, [overlapping, overlapping])
        #expect(outcomes == ["ok a1", "ok a1"])
        #expect(factoryCalls.count == 2)
        let details = events.filter { $0.kind == .activityCompleted }.compactMap(\.attemptDetails)
        #expect(details.map(\.cold) == [false, false])
        #expect(Set(details.compactMap(\.slot)) == ["Probe#1", "Probe#2"])
        #expect(details.allSatisfy { $0.runMs != nil })
        #expect(try metrics.expectCounter("durable_pool_warm_hits_total", [("pool", "Probe")]).totalValue == 2)
        #expect(try metrics.expectTimer("durable_pool_run_seconds", [("pool", "Probe")]).values.count == 2)
        await engine.shutdown()
    }

    @Test func slotIsRecycledAfterMaximumUsesAndAfterAFailure() async throws {
        let engine = try await engine(pool: .warm(min: 0, max: 1, maxUses: 2))
        var slots: [String] = []
        for _ in 0..<4 {
            let (outcomes, _) = try await run(engine, [ProbePlan()])
            #expect(outcomes == ["ok a1"])
            slots.append(log.entries.last?.slot ?? "")
        }
        #expect(slots == ["Probe#1", "Probe#1", "Probe#2", "Probe#2"])
        // A failed attempt's slot is replaced: the retry runs on a new one.
        let flaky = ProbePlan(steps: [.init(fail: true), .init()], options: options(attempts: 2))
        let (outcomes, events) = try await run(engine, [flaky])
        #expect(outcomes == ["ok a2"])
        let used = events.filter { $0.kind == .activityAttemptFailed || $0.kind == .activityCompleted }
            .compactMap { $0.attemptDetails?.slot }
        #expect(used == ["Probe#3", "Probe#4"])
        #expect(factoryCalls.count == 4)
        // Two slots reached maximumUses and one failed: three replaced.
        #expect(try metrics.expectCounter("durable_pool_recycled_total", [("pool", "Probe")]).totalValue == 3)
        await engine.shutdown()
    }

    @Test func attemptsWaitingInAPoolReplacedByANewRegistrationMoveToTheNewPool() async throws {
        let engine = try await engine(pool: .warm(min: 0, max: 1))
        let plans = ["a", "b"].map { label in
            ProbePlan(label: label, steps: [.init(sleepMs: 500)], options: options(attempts: 3))
        }
        let handle = try await engine.start(ProbeFlow.self, input: plans)
        while log.entries.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        // One attempt runs in the only slot, the other waits for it; then the activity is registered again.
        engine.register(Probe.self, pool: .warm(min: 0, max: 2)) { [log] in Probe(log: log) }
        let outcomes = try await handle.result().sorted()
        #expect(outcomes == ["ok a1", "ok a2"])
        let failed = try await engine.history(handle.runID).1.filter { $0.kind == .activityAttemptFailed }
        #expect(failed.map { $0.failure?.type } == ["PoolStopped"], "the waiting attempt was told, and retried")
        await engine.shutdown()
    }

    @Test func idleSlotsAboveTheMinimumAreEvicted() async throws {
        let engine = try await engine(pool: .warm(min: 0, max: 2, idleTimeout: .milliseconds(100)))
        _ = try await run(engine, [ProbePlan()])
        try await Task.sleep(for: .milliseconds(400))
        #expect(try metrics.expectCounter("durable_pool_evicted_total", [("pool", "Probe")]).totalValue == 1)
        let (_, events) = try await run(engine, [ProbePlan()])
        #expect(events.first { $0.kind == .activityCompleted }?.attemptDetails?.cold == true)
        #expect(factoryCalls.count == 2)
        await engine.shutdown()
    }

    @Test func poolAndWorkerLimitsBoundConcurrency() async throws {
        let plans = (0..<6).map { ProbePlan(label: "c\($0)", steps: [.init(sleepMs: 60)]) }
        let pooled = try await engine("pooled", pool: .warm(min: 0, max: 3))
        #expect(try await run(pooled, plans).outcomes.allSatisfy { $0 == "ok a1" })
        #expect(log.mostAtOnce == 3)
        await pooled.shutdown()

        let otherLog = ProbeLog()
        let limited = try await Engine(
            journal: JournalConfiguration(temporaryJournalPath("limited")), worker: WorkerOptions(maximumConcurrentActivities: 2))
        limited.register(ProbeFlow.self)
        limited.register(Probe(log: otherLog))
        #expect(try await run(limited, plans).outcomes.allSatisfy { $0 == "ok a1" })
        #expect(otherLog.mostAtOnce == 2)
        await limited.shutdown()
    }
}
