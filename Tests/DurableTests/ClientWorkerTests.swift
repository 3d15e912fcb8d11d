import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// A client with no workflow code and a worker running as a service in a `ServiceGroup`, on one
/// journal (on the backend `DURABLE_TEST_BACKEND` names).
@Suite(.timeLimit(.minutes(2))) struct ClientWorkerTests {
    /// A worker with the shared test workflows, running in a service group until `body` returns; then
    /// the group shuts it down gracefully and this returns once the worker has stopped.
    func withWorker(
        journal: String, _ body: @Sendable (DurableWorker) async throws -> Void
    ) async throws {
        let worker = try await DurableWorker(journal: JournalConfiguration(journal))
        registerTestWorkflows(worker)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body(worker)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func aClientWithNoCodeStartsSignalsQueriesAndAwaitsRunsAWorkerDrives() async throws {
        let journal = temporaryJournal()
        let client = try await DurableClient(journal: JournalConfiguration(journal))
        try await withWorker(journal: journal) { _ in
            let run = try await client.start(Gather.self, input: 2, id: "gather-c")
            try await client.signal("gather-c", name: "item", "one")
            // Answered from a replay through the workflow's code in this process: no worker asked.
            try await eventually("the query's answer ['one']") {
                try await client.query("gather-c", name: "items", workflow: Gather.self, as: [String].self) == ["one"]
            }
            // Without the workflow type, a client cannot answer a query, and says whose code it needs.
            do {
                _ = try await client.query("gather-c", name: "items")
                Issue.record("a code-less client answered a query")
            } catch let error as DurableError {
                #expect(error.code == .unknownWorkflowType)
                #expect("\(error)".contains("Gather"))
            }
            try await client.signal("gather-c", name: "item", "two")
            #expect(try await run.result() == "one,two")
            let description = try await client.describe("gather-c")
            #expect(description.run.status == .completed)
            #expect(description.awaitedSignals == nil, "a client without code does not replay")
            #expect(try await client.history("gather-c").1.filter { $0.kind == .signalReceived }.count == 2)
            // Cancellation and termination of runs the worker drives.
            let nap = try await client.start(Nap.self, input: 600_000, id: "nap-c")
            try await client.terminate("nap-c", reason: "not needed")
            #expect(try await client.outcome(of: nap.runID) == .terminated("not needed"))
        }
        #expect(try await client.runs(status: .completed).map(\.workflowID) == ["gather-c"])
        await client.close()
    }

    @Test func gracefulShutdownStopsTheWorkerAndReleasesItsLeases() async throws {
        let journal = temporaryJournal()
        let client = try await DurableClient(journal: JournalConfiguration(journal))
        try await withWorker(journal: journal) { worker in
            _ = try await client.start(Nap.self, input: 600_000, id: "nap-g")
            try await eventually("the worker's lease on the run") {
                try await client.describe("nap-g").run.leaseOwner == worker.workerID
            }
        }
        // The group returned: the worker committed what it had and gave its lease up.
        let run = try await client.describe("nap-g").run
        #expect(run.status == .running)
        #expect(run.leaseOwner == nil)
        await client.close()
    }

    @Test(.enabled(if: TestBackend.isSQLite, "a PostgreSQL schema is created on demand"))
    func aClientOnAMissingJournalSaysSoWithoutCommandLineAdvice() async throws {
        let missing = temporaryJournal()
        do {
            _ = try await DurableClient(journal: JournalConfiguration(missing, createIfMissing: false))
            Issue.record("a client opened a journal that is not there")
        } catch let error as JournalError {
            #expect(error.code == .missing)
            #expect(!"\(error)".contains("--journal"), "no command-line advice from the library")
        }
    }
}
