@testable import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import Synchronization
import Testing

/// The chunks of an `ActivityOutput` event.
private func chunks(_ event: HistoryEvent) throws -> [String] {
    try JSONDecoder().decode([String].self, from: try #require(event.data))
}

/// The fixture's `stream` op, for a process pool.
private struct StreamingModel: ActivityDeclaration {
    struct Input: Codable, Sendable {
        var op = "stream"
        var tokens: [String]
        var ms = 5
        var first: [String: Bool]?
    }

    struct Output: Codable, Sendable {
        var value: String
    }
}

private struct StreamingModelFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: StreamingModel.Input) async throws -> String {
        try await ctx.execute(StreamingModel.self, input, options: .init(
            startToClose: .seconds(30), retry: .exponential(initial: .milliseconds(10), maxAttempts: 2))).value
    }
}

/// Publishes one chunk of `count` bytes.
private struct BigChunk: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int {
        try ctx.publish(String(repeating: "x", count: input))
        return input
    }
}

private struct BigChunkFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        try await ctx.execute(BigChunk.self, input, options: .init(retry: .none))
    }
}

/// Partial output (``ActivityContext/publish(_:)``): journaled in `ActivityOutput` events while the
/// attempt runs, throttled, kept out of replay, and discarded with an attempt that did not complete.
@Suite(.timeLimit(.minutes(2))) struct PartialOutputTests {
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/model_worker.py").path

    func engine(_ name: String = #function, interval: Duration) async throws -> Engine {
        let engine = try await Engine(
            journal: JournalConfiguration(temporaryJournal(name)),
            worker: WorkerOptions(partialOutputInterval: interval))
        registerTestWorkflows(engine)
        return engine
    }

    @Test func aChunkAfterAQuietSpellGoesAtOnceAndLaterOnesTogetherAfterTheInterval() throws {
        let ms: UInt64 = 1_000_000
        let now = Mutex<UInt64>(1_000 * ms)
        let journaled = Mutex<[String]>([])
        let timers = Mutex<[(Duration, @Sendable () -> Void)]>([])
        let output = PartialOutput(
            interval: .milliseconds(100),
            journal: { data in journaled.withLock { $0.append(String(decoding: data, as: UTF8.self)) } },
            schedule: { delay, callback in timers.withLock { $0.append((delay, callback)) } },
            clock: { now.withLock { $0 } })
        func publish(_ text: String, at time: UInt64) throws {
            now.withLock { $0 = time * ms }
            try output.publish(Data("\"\(text)\"".utf8))
        }
        try publish("a", at: 1_000)
        #expect(journaled.withLock { $0 } == [#"["a"]"#])
        try publish("b", at: 1_010)
        try publish("c", at: 1_020)
        #expect(journaled.withLock { $0 }.count == 1, "b and c wait for the interval")
        let armed = timers.withLock { $0 }
        #expect(armed.count == 1 && armed.first?.0 == .milliseconds(90), "one timer, for the rest of the interval")
        now.withLock { $0 = 1_100 * ms }
        armed.first?.1()
        #expect(journaled.withLock { $0 } == [#"["a"]"#, #"["b","c"]"#])
        try publish("d", at: 1_150)
        #expect(output.close().map { String(decoding: $0, as: UTF8.self) } == #"["d"]"#, "the rest, for before the end")
        #expect(throws: CancellationError.self) { try publish("e", at: 1_300) }
        #expect(output.close() == nil)
        timers.withLock { $0.last?.1() }  // the timer armed for d finds nothing to write
        #expect(journaled.withLock { $0 }.count == 2)
    }

    @Test func aFailedAttemptsPartialOutputIsDiscardedAndTheRunReplays() async throws {
        let engine = try await engine(interval: .milliseconds(10))
        let input = Generate.Input(tokens: ["Hel", "lo", " wor", "ld"], ms: 20, failAfter: 2)
        let handle = try await engine.start(StreamFlow.self, input: input)
        #expect(try await handle.result() == "Hello world")
        let (run, events) = try await engine.history(handle.runID)
        let outputs = events.filter { $0.kind == .activityOutput }
        #expect(outputs.allSatisfy { $0.seq == 1 })
        #expect(try outputs.filter { $0.attempt == 1 }.flatMap(chunks) == ["Hel", "lo"])
        #expect(try outputs.filter { $0.attempt == 2 }.flatMap(chunks) == ["Hel", "lo", " wor", "ld"])
        let verdicts = PartialOutputVerdicts(events, runClosed: !run.status.isOpen)
        #expect(outputs.filter { $0.attempt == 1 }.allSatisfy(verdicts.isDiscarded))
        #expect(!outputs.filter { $0.attempt == 2 }.contains(where: verdicts.isDiscarded))
        // The result is what run returned, not the chunks; replay skips them.
        let report = try await engine.replay(handle.runID)
        #expect(report.mismatch == nil)
        #expect(!report.decisions.contains { $0.contains("ActivityOutput") })
        await engine.shutdown()
    }

    @Test func chunksWithinTheIntervalGoInOneEventAndTheRestBeforeTheAttemptEnds() async throws {
        let engine = try await engine(interval: .seconds(10))
        let tokens = (0..<50).map { "t\($0) " }
        let handle = try await engine.start(StreamFlow.self, input: Generate.Input(tokens: tokens))
        #expect(try await handle.result() == tokens.joined())
        let events = try await engine.history(handle.runID).1
        let outputs = events.filter { $0.kind == .activityOutput }
        // The first at once; the other 49 waited for the interval, and went when the attempt ended.
        let written = try outputs.map(chunks)
        #expect(written == [["t0 "], Array(tokens.dropFirst())], "\(written)")
        let completed = try #require(events.first { $0.kind == .activityCompleted })
        #expect(outputs.last.map { $0.index < completed.index } == true, "the rest is journaled before the end")
        await engine.shutdown()
    }

    @Test func aProcessPoolWorkersPartialLinesAreJournaledAndAFailedAttemptsDiscarded() async throws {
        let engine = try await Engine(
            journal: JournalConfiguration(temporaryJournal()), worker: WorkerOptions(partialOutputInterval: .milliseconds(10)))
        engine.register(StreamingModelFlow.self)
        engine.register(StreamingModel.self, processPool: ProcessPoolOptions(command: ["python3", fixture], pool: .warm(min: 1, max: 1)))
        let input = StreamingModel.Input(tokens: ["lo", "an", " ok"], ms: 15, first: ["fail": true])
        let handle = try await engine.start(StreamingModelFlow.self, input: input)
        #expect(try await handle.result() == "loan ok")
        let (run, events) = try await engine.history(handle.runID)
        let outputs = events.filter { $0.kind == .activityOutput }
        #expect(try outputs.filter { $0.attempt == 1 }.flatMap(chunks) == ["lo", "an", " ok"])
        #expect(try outputs.filter { $0.attempt == 2 }.flatMap(chunks) == ["lo", "an", " ok"])
        let verdicts = PartialOutputVerdicts(events, runClosed: !run.status.isOpen)
        #expect(outputs.map(verdicts.isDiscarded) == outputs.map { $0.attempt == 1 })
        await engine.shutdown()
    }

    @Test func aChunkAboveOneMiBFailsTheAttemptWithAClearError() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournal()))
        engine.register(BigChunkFlow.self)
        engine.register(BigChunk())
        let handle = try await engine.start(BigChunkFlow.self, input: 2 << 20)
        let error = await #expect(throws: WorkflowFailure.self) { try await handle.result() }
        #expect(error.map { "\($0)" }?.contains("a chunk of partial output is 2097154 bytes, over its limit of 1048576 bytes") == true, "\(String(describing: error))")
        #expect(try await engine.history(handle.runID).1.contains { $0.kind == .activityOutput } == false)
        await engine.shutdown()
    }
}
