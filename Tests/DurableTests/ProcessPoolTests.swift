import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What the Python fixture (`Tests/Fixtures/model_worker.py`) is asked to do; `first` replaces the
/// fields for attempt 1 only.
struct ModelRequest: Codable, Sendable {
    struct First: Codable, Sendable {
        var op: String
        var ms: Int?
        var count: Int?
        var stderr: String?
        var then_sleep_ms: Int?
        var bytes: Int?
    }

    var op: String
    var value: String?
    var ms: Int?
    var count: Int?
    var bytes: Int?
    var announce: Bool?
    var first: First?
}

struct ModelReply: Codable, Sendable {
    struct Step: Codable, Sendable { var step: Int }
    var value: String?
    var pid: Int32?
    var steps: Int?
    var resumedFrom: Step?
}

/// The fixture, declared for workflow code: it runs in a process pool.
struct PyModel: ActivityDeclaration {
    typealias Input = ModelRequest
    typealias Output = ModelReply
}

/// Calls the model once with the options in the input; reports the outcome as text.
struct ModelFlow: Workflow {
    struct Input: Codable, Sendable {
        var request: ModelRequest
        var options = ActivityOptions(startToClose: .seconds(10), retry: .none)
        var cancelAfterTrigger = false
    }

    func run(_ ctx: WorkflowContext, input: Input) async throws -> String {
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                do {
                    let reply = try await ctx.execute(PyModel.self, input.request, options: input.options)
                    return "ok pid \(reply.pid ?? 0)" + (reply.resumedFrom.map { " resumed \($0.step)" } ?? "")
                } catch is CancellationError {
                    return "cancelled"
                } catch let timeout as any ActivityTimeoutError {
                    return "\(type(of: timeout).kind.errorType)"
                } catch let failure as ActivityFailure {
                    return "failed \(failure.cause.type)"
                }
            }
            if input.cancelAfterTrigger {
                group.addTask {
                    _ = try await ctx.execute(PyModel.self, ModelRequest(op: "sleep", ms: 200))
                    return "trigger"
                }
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

private let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/model_worker.py").path

private func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

/// The pids the fixture's processes wrote to their `PID_FILE`, in start order.
func pidsWritten(_ path: String) -> [Int32] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
}

/// Process pools through the engine, with the real Python worker.
@Suite(.timeLimit(.minutes(2))) struct ProcessPoolTests {
    func engine(
        _ name: String = #function, pool: PoolOptions = .warm(min: 1, max: 2), grace: Duration = .seconds(2),
        lineLimit: Int = 64 << 20
    ) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath(name)))
        engine.register(ModelFlow.self)
        engine.register(PyModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixture], pool: pool, terminationGrace: grace, lineLimit: lineLimit))
        return engine
    }

    func run(_ engine: Engine, _ input: ModelFlow.Input) async throws -> (String, [HistoryEvent]) {
        let handle = try await engine.start(ModelFlow.self, input: input)
        let outcome = try await handle.result()
        return (outcome, try await engine.history(handle.runID).1)
    }

    func retrying(_ attempts: Int, startToClose: Duration = .seconds(10), heartbeat: Duration? = nil) -> ActivityOptions {
        ActivityOptions(
            startToClose: startToClose, heartbeatTimeout: heartbeat,
            retry: .exponential(initial: .milliseconds(10), maxAttempts: attempts))
    }

    @Test func warmProcessAnswersAndAttemptDetailsNameIt() async throws {
        let engine = try await engine()
        await engine.warmUp()
        #expect(engine.poolSummary == "PyModel 1/2")
        let (outcome, events) = try await run(engine, .init(request: ModelRequest(op: "echo", value: "hi")))
        let details = try #require(events.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(details.cold == false)
        #expect(details.slot == "PyModel#1")
        let pid = try #require(details.pid)
        #expect(outcome == "ok pid \(pid)")
        #expect(isAlive(pid))
        await engine.shutdown()
        #expect(!isAlive(pid), "shutdown leaves no process behind")
    }

    @Test func crashedProcessIsReplacedAndItsStderrIsInTheFailure() async throws {
        let engine = try await engine()
        let request = ModelRequest(op: "echo", first: .init(op: "crash", stderr: "CUDA out of memory"))
        let (outcome, events) = try await run(engine, .init(request: request, options: retrying(2)))
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "WorkerProcessError")
        #expect(failure.failure?.message.contains("CUDA out of memory") == true)
        #expect(failure.failure?.message.contains("exited with status 3") == true)
        let crashed = try #require(failure.attemptDetails?.pid)
        let completed = try #require(events.first { $0.kind == .activityCompleted }?.attemptDetails?.pid)
        #expect(crashed != completed)
        #expect(outcome == "ok pid \(completed)")
        await engine.shutdown()
    }

    @Test func timedOutProcessIsKilledAndReplacedAndItsStderrIsInTheFailure() async throws {
        let engine = try await engine()
        // The process writes to stderr at once, then hangs; the 1.5 s leaves the reader thread time to
        // take the line in on a loaded machine.
        let request = ModelRequest(op: "echo", first: .init(op: "sleep", ms: 30_000, stderr: "loading shard 3 of 8"))
        let (outcome, events) = try await run(engine, .init(
            request: request, options: retrying(2, startToClose: .milliseconds(1_500))))
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "StartToCloseTimeout")
        let message = failure.failure?.message ?? ""
        #expect(message.hasSuffix("; stderr: loading shard 3 of 8"), "\(message)")
        let hung = try #require(failure.attemptDetails?.pid)
        #expect(outcome.hasPrefix("ok pid "))
        #expect(!outcome.hasSuffix(" \(hung)"))
        let deadline = ContinuousClock.now + .seconds(5)
        while isAlive(hung), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!isAlive(hung), "the process that timed out is gone")
        await engine.shutdown()
    }

    @Test func anErrorResponseKeepsItsProcessForTheRetry() async throws {
        // recycleAfterFailure is on (the default): an answered error does not count, the process is healthy.
        let engine = try await engine(pool: .warm(min: 1, max: 2))
        await engine.warmUp()
        let request = ModelRequest(op: "echo", first: .init(op: "fail"))
        let (outcome, events) = try await run(engine, .init(request: request, options: retrying(2)))
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "ModelError")
        let failedPid = try #require(failure.attemptDetails?.pid)
        #expect(outcome == "ok pid \(failedPid)", "the retry ran in the same process")
        #expect(engine.poolSummary == "PyModel 1/2", "no replacement was started")
        await engine.shutdown()
    }

    @Test func aLineLongerThanTheLimitFailsTheAttemptAndTheProcessIsReplaced() async throws {
        let engine = try await engine(lineLimit: 100_000)
        let request = ModelRequest(op: "echo", first: .init(op: "flood", ms: 30_000, bytes: 1_000_000))
        let (outcome, events) = try await run(engine, .init(request: request, options: retrying(2)))
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "WorkerProcessError")
        #expect(failure.failure?.message.contains("a line longer than 100000 bytes") == true)
        let flooded = try #require(failure.attemptDetails?.pid)
        #expect(outcome.hasPrefix("ok pid "))
        #expect(outcome != "ok pid \(flooded)")
        #expect(!isAlive(flooded))
        await engine.shutdown()
    }

    @Test func shutdownReturnsOnlyOnceABusyProcessHasExited() async throws {
        let engine = try await engine(pool: .warm(min: 1, max: 1), grace: .milliseconds(800))
        await engine.warmUp()
        let handle = try await engine.start(ModelFlow.self, input: .init(
            request: ModelRequest(op: "ignore_term", ms: 30_000, announce: true)))
        // The process heartbeats its pid once it ignores SIGTERM.
        var pid: Int32?
        let deadline = ContinuousClock.now + .seconds(20)
        while pid == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            if let beat = try await engine.history(handle.runID).1.first(where: { $0.kind == .activityHeartbeat })?.data,
               let details = try JSONSerialization.jsonObject(with: beat) as? [String: Any] {
                pid = (details["pid"] as? NSNumber)?.int32Value
            }
        }
        let busy = try #require(pid)
        let started = ContinuousClock.now
        await engine.shutdown()
        #expect(!isAlive(busy), "SIGTERM was ignored; shutdown waited for the SIGKILL after the grace period")
        #expect(ContinuousClock.now - started >= .milliseconds(700))
    }

    @Test func aTimedOutProcessIsGoneBeforeItsReplacementStarts() async throws {
        // One slot; the process ignores SIGTERM, so it lives through the 800 ms grace after its timeout.
        let engine = try await engine(pool: .warm(min: 1, max: 1), grace: .milliseconds(800))
        await engine.warmUp()
        let request = ModelRequest(op: "echo", first: .init(op: "ignore_term", ms: 30_000))
        let (outcome, events) = try await run(engine, .init(
            request: request, options: retrying(2, startToClose: .milliseconds(500))))
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "StartToCloseTimeout")
        let hung = try #require(failure.attemptDetails?.pid)
        #expect(!isAlive(hung))
        let retry = try #require(events.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(outcome == "ok pid \(retry.pid ?? 0)")
        #expect(retry.cold == true)
        // The retry waited for the slot until the old process was killed, then warmed a new one.
        #expect((retry.queueMs ?? 0) >= 600, "the replacement started \(retry.queueMs ?? 0) ms after the timeout")
        await engine.shutdown()
    }

    @Test func shutdownStopsAProcessThatIsStillLoadingItsModel() async throws {
        let pids = temporaryPath() + ".pids"
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(PyModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixture], environment: ["WARMUP_MS": "30000", "PID_FILE": pids],
            pool: .warm(min: 1, max: 1)))
        let warming = Task { await engine.warmUp() }
        let deadline = ContinuousClock.now + .seconds(20)
        while pidsWritten(pids).isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let loading = try #require(pidsWritten(pids).first)
        let started = ContinuousClock.now
        await engine.shutdown()
        #expect(ContinuousClock.now - started < .seconds(10), "shutdown did not wait for the 30 s model load")
        #expect(!isAlive(loading), "the process still loading its model was stopped before shutdown returned")
        await warming.value
    }

    @Test func idleProcessKilledFromOutsideIsReplacedAtOnceAndNeverHandedOut() async throws {
        let pids = temporaryPath() + ".pids"
        func started() -> [Int32] { pidsWritten(pids) }
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(ModelFlow.self)
        engine.register(PyModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixture], environment: ["PID_FILE": pids], pool: .warm(min: 1, max: 1)))
        await engine.warmUp()
        let first = try #require(started().first)
        kill(first, SIGKILL)
        // The pool notices the exit and warms a replacement before any attempt asks for one.
        let deadline = ContinuousClock.now + .seconds(20)
        while started().count < 2 || engine.poolSummary != "PyModel 1/1", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let replacement = try #require(started().last)
        #expect(replacement != first)
        #expect(engine.poolSummary == "PyModel 1/1")
        let (outcome, events) = try await run(engine, .init(request: ModelRequest(op: "echo")))
        #expect(outcome == "ok pid \(replacement)")
        let details = try #require(events.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(details.cold == false, "the attempt found the replacement warm")
        #expect(!events.contains { $0.kind == .activityAttemptFailed || $0.kind == .activityFailed })
        await engine.shutdown()
    }

    @Test func underMixedFailuresNoMoreProcessesLiveThanTheMaximumAndNoneOutliveShutdown() async throws {
        // 24 runs at once through a 3-slot pool. Each first attempt echoes, or crashes, answers with an
        // error, breaks the protocol, hangs past its timeout, or hangs ignoring SIGTERM (so its process
        // lives through the grace period); the retry echoes. Meanwhile the test counts live processes.
        let pids = temporaryPath() + ".pids"
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(ModelFlow.self)
        engine.register(PyModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixture], environment: ["PID_FILE": pids], pool: .warm(min: 1, max: 3),
            terminationGrace: .milliseconds(300)))
        await engine.warmUp()
        let firsts: [ModelRequest.First?] = [
            nil, .init(op: "crash"), .init(op: "fail"), .init(op: "malformed"),
            .init(op: "sleep", ms: 30_000), .init(op: "ignore_term", ms: 30_000),
        ]
        let options = retrying(3, startToClose: .milliseconds(800))
        var handles: [WorkflowHandle<ModelFlow>] = []
        for i in 0..<24 {
            let request = ModelRequest(op: "echo", value: "\(i)", first: firsts[i % firsts.count])
            handles.append(try await engine.start(ModelFlow.self, input: .init(request: request, options: options)))
        }
        let sampler = Task {
            var most = 0
            while !Task.isCancelled {
                most = max(most, pidsWritten(pids).filter(isAlive).count)
                try? await Task.sleep(for: .milliseconds(2))
            }
            return most
        }
        for handle in handles {
            let outcome = try await handle.result()
            #expect(outcome.hasPrefix("ok pid "), "\(handle.runID): \(outcome)")
        }
        sampler.cancel()
        let most = await sampler.value
        #expect(most <= 3, "at most maximumSlots processes alive at once; saw \(most)")
        #expect(pidsWritten(pids).count >= 10, "failed processes were replaced")
        await engine.shutdown()
        #expect(pidsWritten(pids).filter(isAlive).isEmpty, "no process outlives the shutdown")
    }

    @Test func aWorkerThatCannotStartIsReportedAndItsAttemptsFailClearly() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(ModelFlow.self)
        engine.register(PyModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixture], environment: ["EXIT_BEFORE_READY": "1"], pool: .warm(min: 1, max: 1)))
        await engine.warmUp()
        let summary = try #require(engine.poolSummary)
        #expect(summary.hasPrefix("PyModel 0/1 (warm-up failed: "))
        #expect(summary.contains("cannot load model"))
        let (outcome, events) = try await run(engine, .init(request: ModelRequest(op: "echo")))
        #expect(outcome == "failed SlotWarmUpFailed")
        #expect(events.first { $0.kind == .activityFailed }?.failure?.message.contains("cannot load model") == true)
        await engine.shutdown()
    }

    @Test func malformedResponseFailsTheAttemptNotTheWorker() async throws {
        let engine = try await engine()
        let (outcome, events) = try await run(engine, .init(request: ModelRequest(op: "malformed")))
        #expect(outcome == "failed WorkerProcessError")
        let failure = try #require(events.first { $0.kind == .activityFailed }?.failure)
        #expect(failure.message.contains("this is not json"))
        // The pool still serves: a new process answers the next run.
        let (next, _) = try await run(engine, .init(request: ModelRequest(op: "echo")))
        #expect(next.hasPrefix("ok pid "))
        await engine.shutdown()
    }

    @Test func heartbeatTimeoutOnAProcessAndTheRetryResumesFromItsDetails() async throws {
        let engine = try await engine()
        let request = ModelRequest(
            op: "heartbeat", count: 1, first: .init(op: "stall_heartbeats", ms: 20, count: 3, then_sleep_ms: 30_000))
        let (outcome, events) = try await run(engine, .init(
            request: request, options: retrying(2, heartbeat: .milliseconds(600))))
        let failure = try #require(events.first { $0.kind == .activityAttemptFailed })
        #expect(failure.failure?.type == "HeartbeatTimeout")
        #expect(outcome.hasSuffix("resumed 2"))
        await engine.shutdown()
    }

    @Test func cancellingAProcessActivitySendsSIGTERMThenSIGKILL() async throws {
        // The process handles SIGTERM: it stops at once.
        // Two warm processes: the long call and the trigger both start at once.
        let polite = try await engine("polite", pool: .warm(min: 2, max: 2))
        await polite.warmUp()
        let (outcome, events) = try await run(polite, .init(
            request: ModelRequest(op: "sleep", ms: 30_000), cancelAfterTrigger: true))
        #expect(outcome == "trigger,cancelled")
        let cancelled = try #require(events.first { $0.kind == .activityCancelled })
        let pid = try #require(cancelled.attemptDetails?.pid)
        #expect(!isAlive(pid))
        await polite.shutdown()

        // The process ignores SIGTERM: SIGKILL follows after the grace period.
        let stubborn = try await engine("stubborn", pool: .warm(min: 2, max: 2), grace: .milliseconds(400))
        await stubborn.warmUp()
        let started = ContinuousClock.now
        let (outcome2, events2) = try await run(stubborn, .init(
            request: ModelRequest(op: "ignore_term", ms: 30_000), cancelAfterTrigger: true))
        #expect(outcome2 == "trigger,cancelled")
        #expect(ContinuousClock.now - started < .seconds(10))
        let details = try #require(events2.first { $0.kind == .activityCancelled }?.attemptDetails)
        let pid2 = try #require(details.pid)
        #expect(!isAlive(pid2))
        // The attempt ended only after the 200 ms trigger and the 400 ms grace: SIGTERM alone did not stop it.
        #expect((details.runMs ?? 0) >= 550)
        await stubborn.shutdown()
    }
}
