import Durable
import DurableTesting
import Foundation
import Testing

struct Refused: Error {}

/// The test kit on real parts: a real SQLite journal, the real engine, a clock that skips.
@Suite(.timeLimit(.minutes(2))) struct TestEnvironmentTests {
    func environment() async throws -> TestEnvironment {
        let env = try await TestEnvironment()
        for workflow: any Workflow.Type in [Renewal.self, Approval.self, BoundedLookUp.self, Cooldown.self, Onboarding.self] {
            register(workflow, in: env)
        }
        env.stub(CheckPayment.self, returning: false)
        env.stub(SendReminder.self, returning: true)
        return env
    }

    private func register<W: Workflow>(_ workflow: W.Type, in env: TestEnvironment) { env.register(W.self) }

    @Test func aThirtyDaySleepFinishesInMilliseconds() async throws {
        let env = try await environment()
        let started = ContinuousClock.now
        let run = try await env.engine.start(Renewal.self, input: "ana")
        #expect(try await run.result() == "ana reminded")
        // Without skipping this test would wait 30 days (and hit its time limit).
        #expect(ContinuousClock.now - started < .seconds(10))
        let events = try await env.engine.history(run.runID).1
        let timerStarted = try #require(events.first { $0.kind == .timerStarted })
        let timerFired = try #require(events.first { $0.kind == .timerFired })
        #expect(timerFired.time.timeIntervalSince(timerStarted.time) >= 30 * 86_400)
        #expect(env.skipped > day * 30 - .seconds(60))  // less the real time that passed
        #expect(env.now.timeIntervalSinceNow >= 30 * 86_400 - 60, "the clock stays ahead once it has skipped")
        #expect(try await env.engine.replay(run.runID).mismatch == nil)
        await env.close()
    }

    @Test func retryDelaysAreSkippedAndStubsSeeAttemptNumbers() async throws {
        let env = try await environment()
        env.stub(SendReminder.self) { ctx, customer in
            guard ctx.attempt == 3 else { throw Refused() }
            return customer == "bo"
        }
        let run = try await env.engine.start(Renewal.self, input: "bo")
        #expect(try await run.result() == "bo reminded")
        let failures = try await env.engine.history(run.runID).1.filter { $0.kind == .activityAttemptFailed }
        #expect(failures.map(\.attempt) == [1, 2])
        #expect(failures.map { $0.failure?.nextRetryDelayMs } == [3_600_000, 7_200_000])
        #expect(failures.map { $0.failure?.type } == ["Refused", "Refused"])
        #expect(env.skipped > day * 30 + .seconds(3 * 3600 - 60))
        await env.close()
    }

    @Test func aSignalTimeoutFiresWhenNobodySignals() async throws {
        let env = try await environment()
        let run = try await env.engine.start(Approval.self, input: "refund 41")
        #expect(try await run.result() == "refund 41: escalated")
        #expect(env.skipped > day * 3 - .seconds(60))
        await env.close()
    }

    @Test func advanceTimeLetsATestActInTheMiddle() async throws {
        let env = try await environment()
        let run = try await env.engine.start(Approval.self, input: "refund 42")
        await env.advanceTime(by: day * 2)
        try await env.engine.signal(run.runID, name: "decision", "approved")
        #expect(try await run.result() == "refund 42: approved")
        let events = try await env.engine.history(run.runID).1
        let started = try #require(events.first).time
        let signalled = try #require(events.first { $0.kind == .signalReceived }).time
        let gap = signalled.timeIntervalSince(started)
        #expect(gap >= 2 * 86_400 && gap < 3 * 86_400, "the signal came on day 2, before the 3-day timeout")
        #expect(events.contains { $0.kind == .timerCancelled })
        await env.close()
    }

    @Test func timeDoesNotSkipOverARunningActivity() async throws {
        let env = try await environment()
        // The lookup takes 300 ms of real time against a one-hour timer: skipping over the running
        // activity would fire the timer first.
        env.stub(LookUp.self) { key in
            try await Task.sleep(for: .milliseconds(300))
            return "value of \(key)"
        }
        let run = try await env.engine.start(BoundedLookUp.self, input: "k1")
        #expect(try await run.result() == "value of k1")
        #expect(env.skipped < .seconds(60))
        await env.close()
    }

    @Test func childRunsAndTheirTimersSkipToo() async throws {
        let env = try await environment()
        let run = try await env.engine.start(Onboarding.self, input: "acme")
        let days = try await run.result()
        #expect(days >= 15 && days < 15.01)
        let child = try #require(try await env.engine.describe(run.runID).children.first)
        #expect(child.workflowType == "Cooldown" && child.state == "completed")
        await env.close()
    }

    @Test func theTemporaryJournalIsAFileAndCloseDeletesIt() async throws {
        let env = try await environment()
        let run = try await env.engine.start(Cooldown.self, input: 1)
        #expect(try await run.result() == 1)
        #expect(FileManager.default.fileExists(atPath: env.journalLocation))
        await env.close()
        #expect(!FileManager.default.fileExists(atPath: env.journalLocation))
    }
}
