import Durable
import DurableJournal
import DurableTestSupport
import DurableTesting
import Foundation
import Synchronization
import Testing

/// Waits for a "decision" signal until a deadline `input` milliseconds after it starts.
struct DecideBy: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> String {
        do {
            let deadline = ctx.now.addingTimeInterval(Double(input) / 1000)
            return try await ctx.waitForSignal(String.self, named: "decision", until: deadline)
        } catch is WorkflowTimeout {
            return "timed out"
        }
    }
}

/// Fails at once when its input is "fail", else completes with it.
struct MaybeFail: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        if input == "fail" { throw ApplicationError("asked to fail", nonRetryable: true) }
        return input
    }
}

/// A workflow no test registers, so that a child of this type has no worker.
struct Unregistered: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String { input }
}

/// Starts an `Unregistered` child and returns its result.
struct ParentOfUnregistered: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        try await ctx.executeChild(Unregistered.self, input, id: "orphan-\(input)")
    }
}

/// Returns the time it started, inside a struct, as a workflow result carrying a date.
struct Stamp: Workflow {
    struct Output: Codable, Sendable {
        var at: Date
    }

    func run(_ ctx: WorkflowContext, input: String) async throws -> Output { Output(at: ctx.now) }
}

/// The fixes for what an application written from the docs alone ran into (issue 11): reuse of
/// workflow IDs, cancelled waiters, signals that do not decode, children of unknown types, deadlines,
/// typed queries, ISO 8601 dates and matchable error codes. On the backend `DURABLE_TEST_BACKEND` names.
@Suite(.timeLimit(.minutes(2))) struct ApplicationFeedbackTests {
    func engine(_ name: String = #function) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournal(name)))
        engine.register(DecideBy.self)
        engine.register(MaybeFail.self)
        engine.register(ParentOfUnregistered.self)
        engine.register(Stamp.self)
        registerTestWorkflows(engine)
        return engine
    }

    func reuseRefusal(_ body: () async throws -> Void) async -> DurableError? {
        do {
            try await body()
            return nil
        } catch let error as DurableError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    // MARK: - Workflow ID reuse

    @Test func aWorkflowIDWhoseRunCompletedIsNotRunAgainByDefault() async throws {
        let engine = try await engine()
        let first = try await engine.start(MaybeFail.self, input: "paid", id: "claim-1")
        #expect(try await first.result() == "paid")
        let refusal = await reuseRefusal { _ = try await engine.start(MaybeFail.self, input: "paid again", id: "claim-1") }
        #expect(refusal?.code == .workflowIDReused)
        #expect(refusal?.runID == first.runID)
        #expect("\(refusal.map { "\($0)" } ?? "")".contains("allow-failed"))
        let submitted = await reuseRefusal { _ = try await engine.submit(workflowType: "MaybeFail", input: Data(#""x""#.utf8), id: "claim-1") }
        #expect(submitted?.code == .workflowIDReused)
        #expect(try await engine.runs(RunFilter(workflowIDPrefix: "claim-1")).count == 1, "nothing was recorded")
        // `allow` starts a second run of the same ID.
        let second = try await engine.start(MaybeFail.self, input: "again", id: "claim-1", idReuse: .allowDuplicate)
        #expect(second.runID != first.runID)
        #expect(try await second.result() == "again")
        await engine.shutdown()
    }

    @Test func aFailedRunsWorkflowIDMayRunAgainUnlessTheStartRejectsReuse() async throws {
        let engine = try await engine()
        let failed = try await engine.start(MaybeFail.self, input: "fail", id: "claim-2")
        await #expect(throws: WorkflowFailure.self) { try await failed.result() }
        let refusal = await reuseRefusal {
            _ = try await engine.start(MaybeFail.self, input: "retry", id: "claim-2", idReuse: .rejectDuplicate)
        }
        #expect(refusal?.code == .workflowIDReused)
        let retried = try await engine.start(MaybeFail.self, input: "retry", id: "claim-2")
        #expect(retried.runID != failed.runID)
        #expect(try await retried.result() == "retry")
        await engine.shutdown()
    }

    @Test func terminateIfRunningEndsTheOpenRunAndStartsANewOne() async throws {
        let engine = try await engine()
        let waiting = try await engine.start(DecideBy.self, input: 600_000, id: "claim-3")
        // Any other policy returns the open run.
        #expect(try await engine.start(DecideBy.self, input: 600_000, id: "claim-3", idReuse: .rejectDuplicate).runID
                == waiting.runID)
        let replacement = try await engine.start(DecideBy.self, input: 600_000, id: "claim-3", idReuse: .terminateIfRunning)
        #expect(replacement.runID != waiting.runID)
        guard case .terminated(let reason) = try await engine.outcome(of: waiting.runID) else {
            Issue.record("the open run was not terminated")
            return
        }
        #expect(reason.contains("terminate-if-running"))
        try await engine.signal("claim-3", name: "decision", "yes")
        #expect(try await replacement.result() == "yes")
        await engine.shutdown()
    }

    // MARK: - Waiting for a result

    @Test func aCancelledResultWaiterReturnsPromptlyAndTheRunGoesOn() async throws {
        let engine = try await engine()
        let run = try await engine.start(DecideBy.self, input: 600_000, id: "claim-4")
        let waiter = Task { try await run.result() }
        try await Task.sleep(for: .milliseconds(50))
        let cancelledAt = ContinuousClock.now
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        // The run waits 600 s: returning within a few seconds (a loaded machine) means it did not wait for it.
        #expect(ContinuousClock.now - cancelledAt < .seconds(10))
        // An already cancelled task does not wait at all.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await engine.outcome(of: run.runID)
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(try await engine.describe(run.runID).run.status == .running)
        try await engine.signal(run.runID, name: "decision", "go on")
        #expect(try await run.result() == "go on")
        await engine.shutdown()
    }

    // MARK: - Signals

    @Test func aSignalThatDoesNotDecodeIsRejectedInHistoryAndTheWorkflowKeepsWaiting() async throws {
        let engine = try await engine()
        let run = try await engine.start(Gather.self, input: 1, id: "gather-bad")
        try await engine.signal("gather-bad", name: "item", json: Data(#"{"approve": true}"#.utf8))
        try await engine.signal("gather-bad", name: "item", "first good one")
        #expect(try await engine.outcome(of: run.runID) == .completed(Data(#""first good one""#.utf8)))
        let events = try await engine.history(run.runID).1
        let rejected = try #require(events.first { $0.kind == .signalRejected })
        #expect(rejected.name == "item")
        #expect(String(decoding: rejected.data ?? Data(), as: UTF8.self).contains("not a valid String"))
        #expect(events.filter { $0.kind == .signalReceived }.count == 2)
        let description = try await engine.describe(run.runID)
        #expect(description.rejectedSignals.map(\.name) == ["item"])
        #expect(try await engine.replay(run.runID).mismatch == nil, "the rejection replays")
        await engine.shutdown()
    }

    /// On the test kit's clock, which skips to the deadline once the run only waits: 48 hours in no time.
    @Test func aRejectedSignalKeepsTheDeadlineOfTheWait() async throws {
        let env = try await TestEnvironment(journal: JournalConfiguration(temporaryJournal()))
        env.register(DecideBy.self)
        let run = try await env.engine.start(DecideBy.self, input: 48 * 3_600_000, id: "decide-late")
        try await env.engine.signal("decide-late", name: "decision", json: Data("42".utf8))
        #expect(try await run.result() == "timed out")
        #expect(env.skipped >= .seconds(47 * 3600), "the clock skipped to the deadline")
        let events = try await env.engine.history(run.runID).1
        let dues = events.filter { $0.kind == .timerStarted }.compactMap(\.timerDue)
        #expect(dues.count == 2, "a second timer for the time left")
        #expect(Set(dues).count == 1, "both timers are due at the deadline, not 48 h after each signal: \(dues)")
        #expect(events.contains { $0.kind == .signalRejected })
        #expect(try await env.engine.replay(run.runID).mismatch == nil)
        await env.close()
    }

    @Test func aDeadlineThatHasPassedTimesOutAtOnce() async throws {
        let env = try await TestEnvironment(journal: JournalConfiguration(temporaryJournal()))
        env.register(DecideBy.self)
        let run = try await env.engine.start(DecideBy.self, input: -1_000, id: "decide-past")
        #expect(try await run.result() == "timed out")
        #expect(env.skipped < .seconds(1))
        await env.close()
    }

    @Test func aSignalTypeTheWorkflowNamesIsCheckedBeforeItIsSent() async throws {
        let engine = try await engine()
        let run = try await engine.start(ReviewClaim.self, input: "claim-5", id: "claim-5")
        do {
            try await engine.signal("claim-5", name: "review", json: Data(#"{"approve": true}"#.utf8))
            Issue.record("a review that does not decode was sent")
        } catch let error as DurableError {
            #expect(error.code == .badSignalInput)
            #expect(error.runID == run.runID)
            #expect("\(error)".contains("approved"), "\(error)")
        }
        #expect(try await engine.describe(run.runID).queuedSignals.isEmpty)
        try await engine.signal("claim-5", name: "review", ReviewClaim.Review(approved: true))
        #expect(try await run.result() == "claim-5 approved")
        await engine.shutdown()
    }

    // MARK: - Children, queries, dates, errors

    @Test func aChildOfAnUnregisteredWorkflowTypeHoldsItsParentWithTheReason() async throws {
        let engine = try await engine()
        let parent = try await engine.start(ParentOfUnregistered.self, input: "a", id: "parent-a")
        do {
            _ = try await parent.result()
            Issue.record("the parent ended")
        } catch let error as DurableError {
            #expect(error.code == .runHeld)
            #expect("\(error)".contains("Unregistered"), "\(error)")
            #expect("\(error)".contains("child workflow"), "\(error)")
        }
        let run = try await engine.describe(parent.runID).run
        #expect(run.status == .held)
        #expect(try await engine.describe("orphan-a").run.status == .pending, "the child waits for a worker")
        await engine.shutdown()
    }

    @Test func aTypedQueryDecodesTheAnswer() async throws {
        let engine = try await engine()
        let run = try await engine.start(Gather.self, input: 2, id: "gather-q")
        try await engine.signal("gather-q", name: "item", "one")
        try await eventually("the signal's delivery") {
            try await engine.history("gather-q").1.contains { $0.kind == .signalReceived }
        }
        #expect(try await engine.query("gather-q", name: "items", as: [String].self) == ["one"])
        await #expect(throws: DurableError.self) { _ = try await engine.query("gather-q", name: "items", as: Int.self) }
        try await engine.signal("gather-q", name: "item", "two")
        #expect(try await run.result() == "one,two")
        await engine.shutdown()
    }

    @Test func datesInResultsAreISO8601AndOldNumericDatesStillDecode() async throws {
        let engine = try await engine()
        let run = try await engine.start(Stamp.self, input: "x", id: "stamp-1")
        let stamped = try await run.result()
        guard case .completed(let data) = try await engine.outcome(of: run.runID) else {
            Issue.record("not completed")
            return
        }
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.range(of: #"^\{"at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"\}$"#, options: .regularExpression) != nil, "\(text)")
        #expect(abs(stamped.at.timeIntervalSinceNow) < 60)
        // A result recorded before: seconds since 2001-01-01.
        let old = try JSONDecoder.payload().decode(Stamp.Output.self, from: Data(#"{"at":786543210.5}"#.utf8))
        #expect(old.at == Date(timeIntervalSinceReferenceDate: 786_543_210.5))
        let whole = try JSONDecoder.payload().decode(Stamp.Output.self, from: Data(#"{"at":"2026-12-04T09:30:00Z"}"#.utf8))
        #expect(whole.at == Date(timeIntervalSince1970: 1_796_376_600))
        #expect(throws: DecodingError.self) {
            _ = try JSONDecoder.payload().decode(Stamp.Output.self, from: Data(#"{"at":"yesterday"}"#.utf8))
        }
        await engine.shutdown()
    }

    @Test func errorsCarryPublicCodesToMatch() async throws {
        let engine = try await engine()
        do {
            try await engine.signal("no-such-run", name: "x", "y")
            Issue.record("a signal to no run was sent")
        } catch let error as JournalError {
            #expect(error.code == .runNotFound)
            #expect(error.code.description == "runNotFound")
        }
        let done = try await engine.start(MaybeFail.self, input: "done", id: "closed-1")
        _ = try await done.result()
        do {
            try await engine.signal("closed-1", name: "x", "y")
            Issue.record("a signal to an ended run was sent")
        } catch let error as JournalError {
            #expect(error.code == .runClosed)
            #expect(error.runID == done.runID)
        }
        do {
            _ = try await engine.start(workflowType: "NoSuchType", input: Data("1".utf8))
            Issue.record("an unknown type started")
        } catch let error as DurableError {
            #expect(error.code == .unknownWorkflowType)
            #expect(error.code != .badInput)
        }
        await engine.shutdown()
    }
}
