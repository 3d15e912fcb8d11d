import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import Testing

/// Starts a child with the workflow ID it is given; answers what happened.
struct ChildWithID: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        do {
            return try await ctx.executeChild(Nap.self, 1, id: input)
        } catch let error as DurableError {
            return "\(error.code): \(error)"
        }
    }
}

/// Workflow IDs, workflow types and signal names are refused when empty, longer than
/// ``DurableLimits/maximumIdentifierBytes`` bytes of UTF-8, or holding a NUL character (SQLite's text
/// binding ends a string there), by the client and by a worker starting a run.
@Suite(.timeLimit(.minutes(2))) struct IdentifierLimitTests {
    static let longest = String(repeating: "é", count: DurableLimits.maximumIdentifierBytes / 2)  // exactly the limit
    static let tooLong = longest + "x"

    func expectRefused(
        _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
    ) async {
        do {
            try await body()
            Issue.record("\(what) was accepted", sourceLocation: sourceLocation)
        } catch let error as DurableError {
            #expect(error.code == .invalidIdentifier, "\(what): \(error)", sourceLocation: sourceLocation)
            #expect(error.description.count < 200, "\(what): the message does not repeat the name", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(what): \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func theClientRefusesEmptyAndOverLongIDsTypesAndSignalNames() async throws {
        let client = try await DurableClient(journal: JournalConfiguration(temporaryJournal()))
        let input = Data("1".utf8)
        await expectRefused("an empty workflow ID") { _ = try await client.submit(workflowType: "Nap", input: input, id: "") }
        await expectRefused("a long workflow ID") { _ = try await client.submit(workflowType: "Nap", input: input, id: Self.tooLong) }
        await expectRefused("an empty workflow type") { _ = try await client.submit(workflowType: "", input: input) }
        await expectRefused("a long workflow type") { _ = try await client.submit(workflowType: Self.tooLong, input: input) }
        await expectRefused("a typed start with an empty ID") { _ = try await client.start(Nap.self, input: 1, id: "") }
        await expectRefused("a workflow ID with a NUL") { _ = try await client.submit(workflowType: "Nap", input: input, id: "a\u{0}b") }
        await expectRefused("a workflow type with a NUL") { _ = try await client.submit(workflowType: "Nap\u{0}", input: input) }

        let (runID, _) = try await client.submit(workflowType: "Nap", input: input, id: Self.longest)
        #expect(try await client.describe(Self.longest).run.runID == runID, "exactly the limit is allowed")
        await expectRefused("an empty signal name") { _ = try await client.signal(runID, name: "", json: Data("1".utf8)) }
        await expectRefused("a long signal name") { _ = try await client.signal(runID, name: Self.tooLong, 1) }
        await expectRefused("a signal name with a NUL") { _ = try await client.signal(runID, name: "go\u{0}now", 1) }
        do {
            _ = try await client.signal(runID, name: "\u{0}", 1)
            Issue.record("a signal name of one NUL was accepted")
        } catch let error as DurableError {
            #expect("\(error)" == "the signal name contains a NUL character (U+0000), which names and IDs may not hold")
        }
        _ = try await client.signal(runID, name: Self.longest, 1)
        #expect(try await client.describe(runID).queuedSignals == [Self.longest])
        await client.close()
    }

    @Test func aWorkerRefusesAnEmptyOverLongOrNULWorkflowID() async throws {
        let worker = try await DurableWorker(journal: JournalConfiguration(temporaryJournal()))
        registerTestWorkflows(worker)
        await expectRefused("an empty workflow ID") { _ = try await worker.start(Nap.self, input: 1, id: "") }
        await expectRefused("a long workflow ID") {
            _ = try await worker.start(workflowType: "Nap", input: Data("1".utf8), id: Self.tooLong)
        }
        await expectRefused("a workflow ID with a NUL") { _ = try await worker.start(Nap.self, input: 1, id: "\u{0}") }
        await worker.shutdown()
    }

    @Test func workflowCodeGetsTheErrorForAnEmptyOrOverLongChildWorkflowID() async throws {
        let worker = try await DurableWorker(journal: JournalConfiguration(temporaryJournal()))
        registerTestWorkflows(worker)
        worker.register(ChildWithID.self)
        for id in ["", Self.tooLong, "child\u{0}"] {
            let run = try await worker.start(ChildWithID.self, input: id)
            let answer = try await run.result()
            #expect(answer.hasPrefix("invalidIdentifier: the child workflow ID "), "\(answer)")
            #expect(try await worker.replay(run.runID).mismatch == nil)
        }
        #expect(try await worker.client.runs().count == 3, "no child was started")
        await worker.shutdown()
    }
}
