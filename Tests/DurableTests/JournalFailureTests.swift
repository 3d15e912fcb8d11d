import Durable
import DurableTestSupport
import Foundation
import GRDB
import Testing

/// Writes the journal refuses for a while (in life: a full disk, a database that went away).
@Suite(.timeLimit(.minutes(2))) struct JournalFailureTests {
    /// Makes the journal refuse (or accept again) every new event, with a trigger, behind the engine's back.
    func refuseEvents(_ journal: String, _ refuse: Bool) throws {
        switch TestBackend.current {
        case .sqlite:
            // The worker writes too (it retries its refused commits): wait for its lock, as it waits for ours.
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            let queue = try DatabaseQueue(path: journal, configuration: configuration)
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: refuse
                    ? "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                    : "DROP TRIGGER refuse")
            }
            try queue.close()
        case .postgres:
            let schema = String(journal[try #require(journal.range(of: "schema=")).upperBound...])
            let sql = refuse
                ? """
                CREATE FUNCTION \(schema).refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON \(schema).events FOR EACH ROW EXECUTE FUNCTION \(schema).refuse();
                """
                : "DROP TRIGGER refuse ON \(schema).events"
            let result = try runPsql(journal, sql)
            try #require(result.status == 0, "psql: \(result.stderr)")
        }
    }

    /// A run whose write failed is not left behind the worker's own lease renewals: the worker gives
    /// the lease up, takes the run back once the journal writes again (no restart), and the run
    /// completes with every event once.
    @Test func aRunWhoseWriteFailedIsDrivenOnOnceTheJournalWritesAgain() async throws {
        let journal = temporaryJournalPath()
        let worker = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        registerTestWorkflows(worker)
        let loop = Task { try await worker.runWorker() }
        defer { loop.cancel() }
        let client = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        let (runID, _) = try await client.submit(workflowType: "Gather", input: Data("1".utf8), id: "refused")
        let deadline = ContinuousClock.now + .seconds(20)
        while try await client.describe(runID).run.leaseOwner == nil {  // the worker drives it, waiting for the signal
            try #require(ContinuousClock.now < deadline, "the worker never started the run")
            try await Task.sleep(for: .milliseconds(10))
        }
        try refuseEvents(journal, true)
        // The signal is queued; its delivery cannot be written, again and again while the refusal lasts.
        _ = try await client.signal(runID, name: "item", "a")
        try await Task.sleep(for: .milliseconds(1_000))
        #expect(try await client.describe(runID).run.status == .running)
        #expect(try await client.history(runID).1.map(\.kind) == [.workflowStarted])
        try refuseEvents(journal, false)

        let resumed = ContinuousClock.now + .seconds(20)
        while try await client.describe(runID).run.status.isOpen {
            try #require(ContinuousClock.now < resumed, "the run was not driven on after the journal wrote again")
            try await Task.sleep(for: .milliseconds(20))
        }
        let outcome = try await client.outcome(of: runID)
        guard case .completed(let result) = outcome else {
            Issue.record("the run did not complete after the journal wrote again: \(String(describing: outcome))")
            return
        }
        #expect(String(decoding: result, as: UTF8.self) == #""a""#)
        let kinds = try await client.history(runID).1.map(\.kind)
        #expect(kinds == [.workflowStarted, .signalReceived, .workflowCompleted], "\(kinds)")
        await worker.shutdown()
    }
}

/// A claim is committed before the run's first activation: a worker that dies in between leaves a
/// running run whose history is only its start.
@Suite(.timeLimit(.minutes(1))) struct ClaimTests {
    @Test func aRunClaimedButNeverActivatedIsStartedByTheWorkerThatTakesItOver() async throws {
        let journal = temporaryJournalPath()
        let claimant = try await Engine(
            journal: JournalConfiguration(journal, durability: .fast), worker: WorkerOptions(leaseDuration: .milliseconds(300)))
        let (runID, _) = try await claimant.submit(workflowType: "Nap", input: Data("10".utf8), id: "claimed")
        let claimed = try await claimant.journal.claimPendingRuns(workflowTypes: ["Nap"], limit: 8)
        #expect(claimed.map(\.runID) == [runID])
        #expect(claimed.first?.status == .running && claimed.first?.leaseOwner == claimant.workerID)
        #expect(try await claimant.journal.claimPendingRuns(workflowTypes: ["Nap"], limit: 8).isEmpty, "claimed once")
        // The claimant never activates it and never renews its lease, as if it had died.

        let worker = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        registerTestWorkflows(worker)
        let loop = Task { try await worker.runWorker() }
        defer { loop.cancel() }
        let deadline = ContinuousClock.now + .seconds(20)
        while try await worker.describe(runID).run.status.isOpen {
            try #require(ContinuousClock.now < deadline, "the run was never taken over and started")
            try await Task.sleep(for: .milliseconds(20))
        }
        let (run, events) = try await worker.history(runID)
        #expect(run.status == .completed, "\(run.error ?? "")")
        #expect(events.map(\.kind) == [
            .workflowStarted, .timerStarted, .timerFired, .activityScheduled, .activityCompleted, .workflowCompleted,
        ])
        await worker.shutdown()
    }

    /// A claim whose answer was lost (the connection dropped after the server committed it) leaves
    /// runs leased to a live worker that does not drive them, and whose renewals keep them leased.
    @Test func runsOfAClaimWhoseAnswerWasLostAreGivenUpAndStarted() async throws {
        let journal = temporaryJournalPath()
        let worker = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        registerTestWorkflows(worker)
        _ = try await worker.recover()  // its recovery pass is done: the loop started below skips it
        let client = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        let (lost, _) = try await client.submit(workflowType: "Nap", input: Data("10".utf8), id: "lost")
        // Claimed for the worker, which never hears of it: as a claim whose answer never came back.
        #expect(try await worker.journal.claimPendingRuns(workflowTypes: ["Nap"], limit: 8).map(\.runID) == [lost])
        worker.worker.leasesAreUncertain = true
        let loop = Task { try await worker.runWorker() }
        defer { loop.cancel() }
        _ = try await client.submit(workflowType: "Nap", input: Data("10".utf8), id: "wake")
        let deadline = ContinuousClock.now + .seconds(20)
        while try await client.describe(lost).run.status.isOpen {
            try #require(ContinuousClock.now < deadline, "the run leased by the lost claim was never started")
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await client.describe(lost).run.status == .completed)
        #expect(!worker.worker.leasesAreUncertain)
        await worker.shutdown()
    }
}
