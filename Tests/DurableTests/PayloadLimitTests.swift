import Durable
import DurableTestSupport
import Foundation
import Testing

/// Returns a string of `input` bytes, heartbeating it first when asked to.
struct Produce: Activity {
    struct Input: Codable, Sendable {
        var bytes: Int
        var heartbeat = false
    }

    let log: CallLog

    func run(_ ctx: ActivityContext, input: Input) async throws -> String {
        log.record("attempt \(ctx.attempt)")
        let text = String(repeating: "x", count: input.bytes)
        if input.heartbeat { try ctx.heartbeat(text) }
        return text
    }
}

/// Counts the bytes of its input.
struct CountBytes: Activity {
    func run(_ ctx: ActivityContext, input: String) async throws -> Int { input.utf8.count }
}

/// What `mode` asks for, with payloads of `bytes`; answers what it saw as text.
struct Oversize: Workflow {
    struct Input: Codable, Sendable {
        var mode: String
        var bytes: Int
    }

    func run(_ ctx: WorkflowContext, input: Input) async throws -> String {
        switch input.mode {
        case "result":
            return String(repeating: "r", count: input.bytes)
        case "activity-input":
            do {
                _ = try await ctx.execute(CountBytes.self, String(repeating: "i", count: input.bytes))
                return "scheduled"
            } catch {
                return "refused: \(error)"
            }
        default:
            do {
                let text = try await ctx.execute(
                    Produce.self, .init(bytes: input.bytes, heartbeat: input.mode == "heartbeat"),
                    options: .init(startToClose: .seconds(30), retry: .init(initialInterval: .milliseconds(1), maximumAttempts: 3)))
                return "returned \(text.count)"
            } catch {
                return "failed: \(error)"
            }
        }
    }
}

/// Every payload Durable records has one limit (``DurableLimits/maximumPayloadBytes``), enforced where
/// it is written: nothing over it reaches the journal, and what refused it says so.
@Suite(.timeLimit(.minutes(2))) struct PayloadLimitTests {
    let over = DurableLimits.maximumPayloadBytes + 1

    func engine(_ log: CallLog) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath(), durability: .fast))
        engine.register(Oversize.self)
        engine.register(Produce(log: log))
        engine.register(CountBytes())
        return engine
    }

    @Test func anActivityResultOverTheLimitFailsTheActivityWithoutRetries() async throws {
        let log = CallLog()
        let engine = try await engine(log)
        let run = try await engine.start(Oversize.self, input: .init(mode: "activity-result", bytes: over))
        let answer = try await run.result()
        #expect(answer.contains("PayloadTooLarge") || answer.contains("over the limit"), "\(answer)")
        #expect(log.entries == ["attempt 1"])
        let history = try await engine.client.history(run.runID).1
        #expect(history.allSatisfy { ($0.data?.count ?? 0) <= DurableLimits.maximumPayloadBytes })
        await engine.shutdown()
    }

    @Test func heartbeatDetailsOverTheLimitAreRefusedToTheActivity() async throws {
        let log = CallLog()
        let engine = try await engine(log)
        let answer = try await engine.start(Oversize.self, input: .init(mode: "heartbeat", bytes: over)).result()
        #expect(answer.contains("heartbeat details is \(over + 2) bytes, over the limit"), "\(answer)")
        await engine.shutdown()
    }

    @Test func aWorkflowResultOverTheLimitFailsTheRun() async throws {
        let engine = try await engine(CallLog())
        let run = try await engine.start(Oversize.self, input: .init(mode: "result", bytes: over))
        let outcome = try await engine.client.outcome(of: run.runID)
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.message.contains("the result of workflow Oversize is"), "\(failure)")
        await engine.shutdown()
    }

    @Test func anActivityInputOverTheLimitIsRefusedToTheWorkflowCode() async throws {
        let engine = try await engine(CallLog())
        let run = try await engine.start(Oversize.self, input: .init(mode: "activity-input", bytes: over))
        let answer = try await run.result()
        #expect(answer.hasPrefix("refused: the input of activity CountBytes is"), "\(answer)")
        // Deterministic: the replay refuses it the same way.
        #expect(try await engine.replay(run.runID).mismatch == nil)
        await engine.shutdown()
    }

    @Test func aClientRefusesAnInputOrASignalOverTheLimitAndRecordsNothing() async throws {
        let engine = try await engine(CallLog())
        let big = Data(("\"" + String(repeating: "x", count: over) + "\"").utf8)
        do {
            _ = try await engine.client.submit(workflowType: "Oversize", input: big, id: "too-big")
            Issue.record("an input of \(big.count) bytes was accepted")
        } catch let error as DurableError {
            #expect(error.code == .payloadTooLarge, "\(error)")
            #expect("\(error)".hasPrefix("the input of workflow Oversize is \(big.count) bytes, over the limit"))
        }
        #expect(try await engine.client.runs().isEmpty)
        let waiting = try await engine.start(Oversize.self, input: .init(mode: "activity-input", bytes: 1))
        do {
            try await engine.client.signal(waiting.runID, name: "note", json: big)
            Issue.record("a signal of \(big.count) bytes was accepted")
        } catch let error as DurableError {
            #expect(error.code == .payloadTooLarge, "\(error)")
        }
        #expect(try await engine.client.journal.queuedSignals().isEmpty)
        await engine.shutdown()
    }

    @Test func payloadsAtTheLimitAreRecorded() async throws {
        let log = CallLog()
        let engine = try await engine(log)
        // The JSON of a string is its bytes and two quotes.
        let answer = try await engine.start(
            Oversize.self, input: .init(mode: "activity-result", bytes: DurableLimits.maximumPayloadBytes - 2)).result()
        #expect(answer == "returned \(DurableLimits.maximumPayloadBytes - 2)")
        await engine.shutdown()
    }
}
