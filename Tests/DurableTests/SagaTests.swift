import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Three steps, compensations registered after each; the step that fails is chosen by the input.
struct Booking: Workflow {
    struct Input: Codable, Sendable {
        var failAt: Int
        var undoFails: Bool = false
    }

    func run(_ ctx: WorkflowContext, input: Input) async throws -> String {
        let saga = Saga(ctx)
        do {
            for step in 1...3 {
                _ = try await ctx.execute(Book.self, step == input.failAt ? "fail" : "step\(step)")
                saga.addCompensation(Book.self, input.undoFails && step == 2 ? "fail" : "undo\(step)")
            }
            return "booked"
        } catch {
            let failures = await saga.compensate()
            return "compensated (\(failures.count) undo failed)"
        }
    }
}

/// Uppercases its input; refuses "fail".
struct Book: Activity {
    let log: CallLog
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        log.record(input)
        if input == "fail" { throw ApplicationError("refused", type: "Refused", nonRetryable: true) }
        return input.uppercased()
    }
}

@Suite(.timeLimit(.minutes(2))) struct SagaTests {
    @Test func compensationsRunInReverseAndOneFailingUndoDoesNotStopTheOthers() async throws {
        let log = CallLog()
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(Booking.self)
        engine.register(Book(log: log))

        #expect(try await engine.start(Booking.self, input: .init(failAt: 0)).result() == "booked")
        #expect(log.entries == ["step1", "step2", "step3"])

        let failed = try await engine.start(Booking.self, input: .init(failAt: 3, undoFails: true))
        #expect(try await failed.result() == "compensated (1 undo failed)")
        // Step 3 failed; the undo of step 2 (made to fail) and then the undo of step 1 ran.
        #expect(Array(log.entries.dropFirst(3)) == ["step1", "step2", "fail", "fail", "undo1"])
        #expect(try await engine.replay(failed.runID).mismatch == nil)
        await engine.shutdown()
    }

    /// The worker is SIGKILLed inside the first compensation; after the restart the compensation is
    /// retried (attempt 2) and the remaining one runs; the run then fails with the original error.
    @Test func aCrashInTheMiddleOfACompensationResumesIt() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournalPath()
        let side = temporaryPath("side")
        let first = try Child(
            worker, ["run", "Transfer", "--input", "\"t\"", "--id", "transfer", "--journal", journal],
            environment: ["SIDE_FILE": side, "STEP_MS": "10", "KILL_IN": "t-undo-reserve"])
        let exit = try await first.wait()
        try #require(exit.reason == .uncaughtSignal && exit.status == SIGKILL, "not killed: \(first.output)")

        let second = try Child(worker, ["worker", "--quiet", "--journal", journal],
                               environment: ["SIDE_FILE": side, "STEP_MS": "10"])
        defer { second.kill(SIGKILL) }
        let inspector = try await Engine(journal: JournalConfiguration(journal, createIfMissing: false))
        let deadline = ContinuousClock.now + .seconds(20)
        while try await inspector.describe("transfer").run.status.isOpen, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let description = try await inspector.describe("transfer")
        guard case .failed(let failure) = description.outcome else {
            Issue.record("the run did not fail after compensating: \(String(describing: description.outcome))")
            return
        }
        #expect(failure.message.contains("step t-fail refused"))
        let records = sideRecords(side)
        #expect(records.map(\.label) == [
            "t-debit", "t-reserve", "t-fail", "t-undo-reserve", "t-undo-reserve", "t-undo-debit",
        ])
        #expect(records.filter { $0.label == "t-undo-reserve" }.map(\.attempt) == [1, 2])
        #expect(records.filter { $0.label == "t-undo-reserve" }.map(\.pid) == [first.pid, second.pid])
    }
}
