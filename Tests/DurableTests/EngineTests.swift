import Durable
import DurableTestSupport
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct EngineTests {
    @Test func fanOutWorkflowCompletesAndRecordsHistory() async throws {
        let path = temporaryJournalPath()
        let log = CallLog()
        let engine = try await makeEngine(path, log: log)
        let run = try await engine.start(FanOut.self, input: ["alpha", "be"], id: "fan-1")
        let result = try await run.result()
        #expect(result.head == "ALPHA")
        #expect(result.lengths == [5, 2])
        #expect(result.tail == "5-ALPHA-B")
        let (record, events) = try await engine.history("fan-1")
        #expect(record.status == .completed)
        #expect(events.first?.kind == .workflowStarted)
        #expect(events.last?.kind == .workflowCompleted)
        #expect(events.filter { $0.kind == .activityScheduled }.count == 6)
        #expect(events.filter { $0.kind == .activityCompleted }.count == 6)
        #expect(log.entries.count == 6)
        #expect(events.map(\.index) == Array(0..<events.count))
        await engine.shutdown()
    }

    @Test func startingAnOpenWorkflowIDReturnsTheSameRun() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let first = try await engine.start(SlowFlow.self, input: 10, id: "same")
        let second = try await engine.start(SlowFlow.self, input: 10, id: "same")
        #expect(first.runID == second.runID)
        #expect(try await first.result() == 10)
        // Once it completed, the default reuse policy refuses a new run; `allowDuplicate` starts one.
        await #expect(throws: DurableError.self) { _ = try await engine.start(SlowFlow.self, input: 10, id: "same") }
        let third = try await engine.start(SlowFlow.self, input: 10, id: "same", idReuse: .allowDuplicate)
        #expect(third.runID != first.runID)
        await engine.shutdown()
    }

    @Test func concurrentStartsOfOneWorkflowIDMakeOneRun() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let runIDs = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await engine.start(SlowFlow.self, input: 20, id: "once").runID } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(runIDs.count == 1)
        #expect(try await engine.runs().count == 1)
        await engine.shutdown()
    }

    @Test func retriesUntilSuccessAndRecordsEachFailedAttempt() async throws {
        let log = CallLog()
        let engine = try await makeEngine(temporaryJournalPath(), log: log)
        let run = try await engine.start(RetryFlow.self, input: "x")
        #expect(try await run.result() == "ok after 3")
        #expect(log.entries == ["flaky:1", "flaky:2", "flaky:3"])
        let (_, events) = try await engine.history(run.runID)
        let attempts = events.filter { $0.kind == .activityAttemptFailed }
        #expect(attempts.map(\.attempt) == [1, 2])
        #expect(attempts.first?.failure?.nextRetryDelayMs == 5)
        #expect(events.first { $0.kind == .activityCompleted }?.attempt == 3)
        await engine.shutdown()
    }

    @Test func nonRetryableErrorReachesWorkflowCodeAfterOneAttempt() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let run = try await engine.start(RefuseFlow.self, input: "claim")
        #expect(try await run.result() == "caught Refused after 1")
        await engine.shutdown()
    }

    @Test func startToCloseTimeoutFailsTheAttempt() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let run = try await engine.start(TimeoutFlow.self, input: 5_000)
        await #expect(throws: WorkflowFailure.self) { try await run.result() }
        let (_, events) = try await engine.history(run.runID)
        #expect(events.first { $0.kind == .activityFailed }?.failure?.type == "StartToCloseTimeout")
        await engine.shutdown()
    }

    @Test func workflowErrorFailsTheRun() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let run = try await engine.start(Failing.self, input: "x")
        let failure = await #expect(throws: WorkflowFailure.self) { try await run.result() }
        #expect(failure?.cause.type == "Oops")
        #expect(try await engine.describe(run.runID).run.status == .failed)
        await engine.shutdown()
    }

    @Test func awaitingTaskSleepHoldsTheRunWithAClearError() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let run = try await engine.start(SleepsOutsideEngine.self, input: 1)
        let error = await #expect(throws: DurableError.self) { try await run.result() }
        #expect(error?.description.contains("awaited something outside the engine") == true)
        let record = try await engine.describe(run.runID).run
        #expect(record.status == .held)
        #expect(record.error?.contains("Task.sleep") == true)
        await engine.shutdown()
    }

    @Test func contextUsedFromDetachedTaskHoldsTheRun() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let run = try await engine.start(DetachedContextUse.self, input: "x")
        await #expect(throws: DurableError.self) { try await run.result() }
        let record = try await engine.describe(run.runID).run
        #expect(record.status == .held)
        #expect(record.error?.contains("outside the workflow's executor") == true)
        await engine.shutdown()
    }

    @Test func unknownWorkflowTypeIsRefusedByName() async throws {
        let engine = try await makeEngine(temporaryJournalPath())
        let error = await #expect(throws: DurableError.self) {
            _ = try await engine.start(workflowType: "NoSuchFlow", input: Data("1".utf8))
        }
        #expect(error?.description.contains("unknown workflow type 'NoSuchFlow'") == true)
        #expect(error?.description.contains("FanOut") == true)
    }

    /// A run submitted by another process after the worker's recovery pass, but before its loop
    /// first read the journal's change counter, is picked up all the same (it was missed once).
    @Test func aRunSubmittedWhileTheWorkerStartsIsPickedUp() async throws {
        let path = temporaryJournalPath()
        let worker = try await Engine(journal: JournalConfiguration(path))
        registerTestWorkflows(worker)
        try await worker.recover()  // nothing to do yet
        let submitter = try await Engine(journal: JournalConfiguration(path))
        let (runID, _) = try await submitter.submit(workflowType: "Nap", input: Data("1".utf8), id: "late")
        let loop = Task { try await worker.runWorker() }  // reads the change counter after the submission
        let deadline = ContinuousClock.now + .seconds(10)
        while try await worker.describe(runID).run.status.isOpen {
            try #require(ContinuousClock.now < deadline, "the run submitted during start-up was never picked up")
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(try await worker.describe(runID).outcome == .completed(Data(#""nap!""#.utf8)))
        loop.cancel()
        await worker.shutdown()
    }
}
