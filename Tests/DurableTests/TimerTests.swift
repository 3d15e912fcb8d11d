import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Two timers in parallel branches; returns the branches in the order they woke.
struct TwoNaps: Workflow {
    func run(_ ctx: WorkflowContext, input: [Int]) async throws -> [Int] {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for ms in input {
                group.addTask {
                    try await ctx.sleep(for: .milliseconds(ms))
                    return ms
                }
            }
            var woke: [Int] = []
            for try await ms in group { woke.append(ms) }
            return woke
        }
    }
}

/// An activity of `input.activityMs` raced against a timer of `input.limitMs`.
struct Race: Workflow {
    struct Input: Codable, Sendable {
        var activityMs: Int
        var limitMs: Int
    }

    func run(_ ctx: WorkflowContext, input: Input) async throws -> String {
        do {
            let value = try await ctx.withTimeout(.milliseconds(input.limitMs)) {
                try await ctx.execute(Slow.self, input.activityMs, options: .init(retry: .none))
            }
            return "done \(value)"
        } catch let timeout as WorkflowTimeout {
            return "timed out after \(timeout.limit)"
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct TimerTests {
    func engine(_ path: String) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path))
        registerTestWorkflows(engine)
        engine.register(TwoNaps.self)
        engine.register(Race.self)
        engine.register(Slow())
        return engine
    }

    @Test func sleepIsJournaledFiresOnTimeAndReplays() async throws {
        let engine = try await engine(temporaryJournalPath())
        let started = ContinuousClock.now
        let run = try await engine.start(Nap.self, input: 300)
        #expect(try await run.result() == "nap!")
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        let events = try await engine.history(run.runID).1
        let timer = try #require(events.first { $0.kind == .timerStarted })
        let due = try #require(timer.timerDue)
        #expect(abs(due.timeIntervalSince(timer.time) - 0.3) < 0.002)
        let fired = try #require(events.first { $0.kind == .timerFired })
        #expect(fired.seq == timer.seq)
        #expect(fired.time >= due)
        #expect(try await engine.replay(run.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func timerSurvivesARestartAndFiresWhenDueNotLater() async throws {
        let path = temporaryJournalPath()
        let first = try await engine(path)
        let run = try await first.start(Nap.self, input: 2_500)
        try await Task.sleep(for: .milliseconds(100))
        await first.shutdown()  // the timer is journaled, the process "goes away"
        let due = try #require(try await first.history(run.runID).1.first { $0.kind == .timerStarted }?.timerDue)
        #expect(try await first.describe(run.runID).timers.map(\.state) == [.waiting])

        // Restart about 1.5 s into the 2.5 s timer. A timer that restarted its period could not fire
        // before the restart plus 2.5 s; one that keeps its due time fires about 1 s after the restart.
        // The bound is taken from the restart itself, so a loaded machine that delays the test's own
        // sleep cannot make a correct timer look late.
        try await Task.sleep(for: .milliseconds(1_400))
        let restarted = Date()
        let second = try await engine(path)
        try await second.recover()
        #expect(try await second.outcome(of: run.runID) == .completed(Data(#""nap!""#.utf8)))
        let fired = try #require(try await second.history(run.runID).1.first { $0.kind == .timerFired })
        #expect(fired.time >= due)
        #expect(
            fired.time < restarted.addingTimeInterval(2.5),
            "the timer fired \(fired.time.timeIntervalSince(due)) s after it was due, as if restarted for its full period"
        )
        #expect(try await second.describe(run.runID).timers.map(\.state) == [.fired])
        await second.shutdown()
    }

    @Test func lateTimersFireOnRecoveryAtOnceInDueOrder() async throws {
        let path = temporaryJournalPath()
        let first = try await engine(path)
        let run = try await first.start(TwoNaps.self, input: [400, 200])
        await first.shutdown()
        try await Task.sleep(for: .milliseconds(700))  // both are overdue now

        let second = try await engine(path)
        let recovering = ContinuousClock.now
        try await second.recover()
        #expect(try await second.outcome(of: run.runID) == .completed(Data("[200,400]".utf8)))
        #expect(ContinuousClock.now - recovering < .milliseconds(1_500))
        let events = try await second.history(run.runID).1
        let dues = Dictionary(uniqueKeysWithValues: events.filter { $0.kind == .timerStarted }.map { ($0.seq, $0.timerDue!) })
        let firedOrder = events.filter { $0.kind == .timerFired }.map(\.seq)
        #expect(firedOrder.count == 2)
        #expect(firedOrder == firedOrder.sorted { dues[$0]! < dues[$1]! })
        await second.shutdown()
    }

    @Test func withTimeoutCancelsWhicheverSideLoses() async throws {
        let engine = try await engine(temporaryJournalPath())
        // The activity loses: it is cancelled (and that is journaled), the workflow gets WorkflowTimeout.
        let slow = try await engine.start(Race.self, input: .init(activityMs: 10_000, limitMs: 200))
        #expect(try await slow.result() == "timed out after 0.2 seconds")
        let slowEvents = try await engine.history(slow.runID).1.map(\.kind)
        #expect(slowEvents.contains(.activityCancelRequested) && slowEvents.contains(.activityCancelled))
        #expect(slowEvents.contains(.timerFired))
        // The timer loses: it is cancelled, and that is journaled too.
        let quick = try await engine.start(Race.self, input: .init(activityMs: 10, limitMs: 10_000))
        #expect(try await quick.result() == "done 10")
        let quickEvents = try await engine.history(quick.runID).1.map(\.kind)
        #expect(quickEvents.contains(.timerCancelled) && !quickEvents.contains(.timerFired))
        #expect(try await engine.replay(slow.runID).mismatch == nil)
        #expect(try await engine.replay(quick.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func sigkilledWorkerInTheMiddleOfATimerFiresItAfterTheRestart() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath()
        // 4 s: long enough that the SIGKILL comes before the timer is due even when this process is
        // slow to see it journaled (with 1.5 s the run had completed before the kill, under load).
        let first = try Child(worker, ["run", "Nap", "--input", "4000", "--id", "nap", "--journal", journal])
        let deadline = ContinuousClock.now + .seconds(40)
        var opened: Engine?
        var due: Date?
        while due == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            if opened == nil { opened = try? await Engine(journal: JournalConfiguration(journal, createIfMissing: false)) }
            if let history = try? await opened?.history("nap") {
                due = history.1.first { $0.kind == .timerStarted }?.timerDue
            }
        }
        first.kill(SIGKILL)
        _ = try await first.wait()
        let timerDue = try #require(due, "the timer was never journaled: \(first.output)")
        let inspector = try #require(opened)
        #expect(try await inspector.describe("nap").run.status == .running)

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal])
        defer { second.kill(SIGKILL) }
        while try await inspector.describe("nap").run.status.isOpen {
            guard ContinuousClock.now < deadline, second.process.isRunning else {
                Issue.record("the run did not complete after the restart: \(second.output)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let description = try await inspector.describe("nap")
        #expect(description.outcome == .completed(Data(#""nap!""#.utf8)))
        let fired = try #require(try await inspector.history("nap").1.first { $0.kind == .timerFired })
        #expect(fired.time >= timerDue)
    }
}
