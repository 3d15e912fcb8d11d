import Durable
import DurableTestSupport
import Foundation
import MetricsTestKit
import Synchronization

import Dispatch

/// What ``Probe`` does in one attempt, chosen per attempt number (the last entry repeats).
struct ProbePlan: Codable, Sendable {
    struct Step: Codable, Sendable {
        var sleepMs = 0
        /// Heartbeats sent first, `heartbeatEveryMs` apart, with details 1, 2, ... (after any resumed value).
        var heartbeats = 0
        var heartbeatEveryMs = 10
        var fail = false
        /// Keep sleeping when cancelled (ignores task cancellation).
        var ignoreCancel = false
    }

    var label = "p"
    /// The key and units the attempt counts against a rate-limited pool's limits.
    var rateKey: String?
    var rateCost = 1
    var steps: [Step] = [Step()]
    /// For ``CancelFlow``: how long its trigger activity takes before the cancel.
    var triggerMs = 0
    var options = ActivityOptions(startToClose: .seconds(10), retry: .none)

    func step(_ attempt: Int) -> Step { steps[min(attempt, steps.count) - 1] }
}

/// An activity whose behaviour the test chooses through its input; logs every attempt.
struct Probe: Activity {
    let log: ProbeLog

    struct Output: Codable, Sendable, Equatable {
        var attempt: Int
        var resumedFrom: Int?
        var slot: String
    }

    static func rateLimitKey(for input: ProbePlan) -> String? { input.rateKey }
    static func rateLimitCost(for input: ProbePlan) -> Int { input.rateCost }

    func run(_ ctx: ActivityContext, input: ProbePlan) async throws -> Output {
        let resumed = ctx.lastHeartbeatDetails(as: Int.self)
        log.started(input.label, attempt: ctx.attempt, slot: ctx.slot, resumed: resumed)
        defer { log.ended(input.label) }
        let step = input.step(ctx.attempt)
        var beat = resumed ?? 0
        for _ in 0..<step.heartbeats {
            beat += 1
            try ctx.heartbeat(beat)
            try await Task.sleep(for: .milliseconds(step.heartbeatEveryMs))
        }
        if step.sleepMs > 0 {
            if step.ignoreCancel {  // a wait that cancellation cannot cut short (and blocks no thread)
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(step.sleepMs)) { done.resume() }
                }
            } else {
                try await Task.sleep(for: .milliseconds(step.sleepMs))
            }
        }
        if step.fail { throw ApplicationError("planned failure in attempt \(ctx.attempt)") }
        return Output(attempt: ctx.attempt, resumedFrom: resumed, slot: ctx.slot)
    }
}

/// What the worker-runtime suites share: the ``Probe`` log, metrics, the pool factory's call count,
/// and an engine, a run and activity options built from them.
protocol ProbeSuite {
    var log: ProbeLog { get }
    var metrics: TestMetrics { get }
    var factoryCalls: Counter { get }
}

extension ProbeSuite {
    /// An engine with ``ProbeFlow`` and the workflows `register` adds; `pool` puts Probe in a pool whose
    /// factory takes 30 ms (a model load, made short).
    func probeEngine(
        _ name: String, pool: PoolOptions?, worker: WorkerOptions = WorkerOptions(), register: (Engine) -> Void
    ) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournal(name)), worker: worker, metrics: metrics)
        engine.register(ProbeFlow.self)
        register(engine)
        if let pool {
            engine.register(Probe.self, pool: pool) { [log, factoryCalls] in
                factoryCalls.increment()
                try await Task.sleep(for: .milliseconds(30))
                return Probe(log: log)
            }
        } else {
            engine.register(Probe(log: log))
        }
        return engine
    }

    func run(_ engine: Engine, _ plans: [ProbePlan]) async throws -> (outcomes: [String], events: [HistoryEvent]) {
        let handle = try await engine.start(ProbeFlow.self, input: plans)
        let outcomes = try await handle.result()
        return (outcomes, try await engine.history(handle.runID).1)
    }

    func options(
        startToClose: Duration? = .seconds(10), scheduleToStart: Duration? = nil, scheduleToClose: Duration? = nil,
        heartbeat: Duration? = nil, attempts: Int = 1, backoff: Duration = .milliseconds(10)
    ) -> ActivityOptions {
        ActivityOptions(
            startToClose: startToClose, scheduleToStart: scheduleToStart, scheduleToClose: scheduleToClose,
            heartbeatTimeout: heartbeat, retry: .exponential(initial: backoff, coefficient: 1, maxAttempts: attempts))
    }
}

/// A counter shared with closures.
final class Counter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// Records attempts as they start and end, with the most that ran at once.
final class ProbeLog: Sendable {
    struct Entry: Sendable, Equatable {
        var label: String
        var attempt: Int
        var slot: String
        var resumed: Int?
    }

    private struct State {
        var entries: [Entry] = []
        var running = 0
        var mostAtOnce = 0
    }

    private let state = Mutex(State())

    func started(_ label: String, attempt: Int, slot: String, resumed: Int?) {
        state.withLock { state in
            state.entries.append(Entry(label: label, attempt: attempt, slot: slot, resumed: resumed))
            state.running += 1
            state.mostAtOnce = max(state.mostAtOnce, state.running)
        }
    }

    func ended(_ label: String) { state.withLock { $0.running -= 1 } }

    var entries: [Entry] { state.withLock { $0.entries } }
    var mostAtOnce: Int { state.withLock { $0.mostAtOnce } }
}

/// Calls ``Probe`` once per plan, all in parallel, and reports each outcome as text, catching each
/// error by its own type: `ok a2`, `StartToCloseTimeout a1`, `HeartbeatTimeout a2`, `failed`, `cancelled`.
struct ProbeFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: [ProbePlan]) async throws -> [String] {
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, plan) in input.enumerated() {
                group.addTask { (i, await Self.call(ctx, plan)) }
            }
            var out = [String](repeating: "", count: input.count)
            for try await (i, text) in group { out[i] = text }
            return out
        }
    }

    static func call(_ ctx: WorkflowContext, _ plan: ProbePlan) async -> String {
        do {
            let output = try await ctx.execute(Probe.self, plan, options: plan.options)
            return "ok a\(output.attempt)" + (output.resumedFrom.map { " resumed \($0)" } ?? "")
        } catch let timeout as ScheduleToStartTimeout {
            return "ScheduleToStartTimeout a\(timeout.attempt)"
        } catch let timeout as StartToCloseTimeout {
            return "StartToCloseTimeout a\(timeout.attempt)"
        } catch let timeout as ScheduleToCloseTimeout {
            return "ScheduleToCloseTimeout a\(timeout.attempt)"
        } catch let timeout as HeartbeatTimeout {
            return "HeartbeatTimeout a\(timeout.attempt)"
        } catch is CancellationError {
            return "cancelled"
        } catch let failure as ActivityFailure {
            return "failed \(failure.cause.type) a\(failure.attempts)"
        } catch {
            return "other \(error)"
        }
    }
}

/// Runs a long ``Probe`` and a short one side by side; when the short one is done, cancels the long one.
struct CancelFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: ProbePlan) async throws -> String {
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { await ProbeFlow.call(ctx, input) }
            group.addTask {
                let trigger = ProbePlan(label: "trigger", steps: [.init(sleepMs: input.triggerMs)])
                _ = try await ctx.execute(Probe.self, trigger, options: .init(retry: .none))
                return "trigger"
            }
            var outcomes: [String] = []
            for try await outcome in group {
                outcomes.append(outcome)
                if outcome == "trigger" { group.cancelAll() }
            }
            return outcomes.joined(separator: ",")
        }
    }
}
