import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The SHA-256 of bytes as `sha256sum` computes it: an independent check of the engine's hashes.
private func sha256sum(_ data: Data) throws -> String {
    let path = temporaryPath("sha-input")
    try data.write(to: URL(fileURLWithPath: path))
    return try sha256sum(file: path)
}

private func sha256sum(file path: String) throws -> String {
    let output = temporaryPath("sha-output")
    try SpawnedProcess("/usr/bin/sha256sum", [path], stdout: output).waitUntilExit()
    return String(((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").prefix(64))
}

private let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/model_worker.py").path

private let vocabHash = String(repeating: "0f", count: 32)
private let weightsHash = String(repeating: "e1", count: 32)

/// The fixture under the name ``ModelFlow`` calls (`PyModel`), declaring a model that the process's
/// ready line completes.
private struct DeclaredPyModel: ActivityDeclaration {
    typealias Input = ModelRequest
    typealias Output = ModelReply
    static var name: String { "PyModel" }
    static var modelIdentity: ModelIdentity? {
        ModelIdentity(name: "sentiment", version: "2", weights: ["vocab.txt": vocabHash], metadata: ["threshold": "0.8"])
    }
}

/// An in-process activity with a pool, whose model is declared.
private struct PooledScore: Activity {
    static var modelIdentity: ModelIdentity? { ModelIdentity(name: "ranker", version: "2026.12") }
    func run(_ ctx: ActivityContext, input: String) async throws -> Int { input.count }
}

private struct PooledScoreFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> Int {
        try await ctx.execute(PooledScore.self, input)
    }
}

/// Model lineage: every ended attempt of an activity that serves a model journals the model and the
/// SHA-256 of its input and output.
@Suite(.timeLimit(.minutes(2))) struct LineageTests {
    /// The input each attempt-ending event's activity was scheduled with, by seq.
    func inputs(_ events: [HistoryEvent]) -> [Int: Data] {
        Dictionary(uniqueKeysWithValues: events.filter { $0.kind == .activityScheduled }.map { ($0.seq, $0.data ?? Data()) })
    }

    @Test func inProcessActivityJournalsItsDeclaredModelAndTheHashesOfItsInputAndOutput() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(LineageFlow.self)
        engine.register(Score())
        let handle = try await engine.start(LineageFlow.self, input: "claim \"7\"")
        #expect(try await handle.result() == 19)
        let events = try await engine.history(handle.runID).1
        let completed = events.filter { $0.kind == .activityCompleted }
        #expect(completed.count == 2)
        let scheduled = inputs(events)
        let expectedWeights = try sha256sum(Data("scorer.bin \(String(repeating: "ab", count: 32))\n".utf8))
        for event in completed {
            let details = try #require(event.attemptDetails)
            #expect(details.model == "scorer")
            #expect(details.modelVersion == "1")
            #expect(details.modelMetadata == ["prompt": "p-7"])
            #expect(details.weightsSHA256 == expectedWeights)
            #expect(details.inputSHA256 == (try sha256sum(try #require(scheduled[event.seq]))))
            #expect(details.outputSHA256 == (try sha256sum(try #require(event.data))))
            #expect(details.runMs != nil, "its timing")
            #expect(details.summary.hasSuffix("model scorer@1"))
        }
        #expect(completed[0].attemptDetails?.inputSHA256 != completed[1].attemptDetails?.inputSHA256)
        await engine.shutdown()
    }

    @Test func pooledActivityJournalsItsModelWithItsSlot() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(PooledScoreFlow.self)
        engine.register(PooledScore.self, pool: .warm(min: 0, max: 1)) { PooledScore() }
        let handle = try await engine.start(PooledScoreFlow.self, input: "abc")
        #expect(try await handle.result() == 3)
        let events = try await engine.history(handle.runID).1
        let details = try #require(events.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(details.slot == "PooledScore#1")
        #expect(details.cold == true)
        #expect(details.modelLabel == "ranker@2026.12")
        #expect(details.weightsSHA256 == nil, "no weights declared")
        #expect(details.modelMetadata == nil)
        #expect(details.outputSHA256 == (try sha256sum(Data("3".utf8))))
        await engine.shutdown()
    }

    @Test func activityWithoutAModelRecordsNoLineage() async throws {
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(PooledFlow.self)
        engine.register(Pooled.self, pool: .warm(min: 0, max: 1)) { Pooled() }
        let handle = try await engine.start(PooledFlow.self, input: 1)
        _ = try await handle.result()
        let details = try #require(try await engine.history(handle.runID).1.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(details.slot == "Pooled#1")
        #expect(details.model == nil && details.inputSHA256 == nil && details.outputSHA256 == nil)
        await engine.shutdown()
    }

    @Test func processReportsItsModelInItsReadyLineCompletingTheDeclaredOne() async throws {
        let readyLine = #"{"ready":true,"model":{"name":"sentiment","version":"3","weights":{"weights.bin":"\#(weightsHash)"},"metadata":{"prompt":"sha-p"}}}"#
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(ModelFlow.self)
        engine.register(DeclaredPyModel.self, processPool: ProcessPoolOptions(
            command: ["python3", fixture], environment: ["READY_LINE": readyLine], pool: .warm(min: 1, max: 1)))
        let request = ModelRequest(op: "echo", value: "great product", first: .init(op: "fail"))
        let options = ActivityOptions(startToClose: .seconds(10), retry: .exponential(initial: .milliseconds(10), maxAttempts: 2))
        let handle = try await engine.start(ModelFlow.self, input: .init(request: request, options: options))
        _ = try await handle.result()
        let events = try await engine.history(handle.runID).1
        let input = try #require(inputs(events)[1])
        let expectedWeights = try sha256sum(Data("vocab.txt \(vocabHash)\nweights.bin \(weightsHash)\n".utf8))

        let failed = try #require(events.first { $0.kind == .activityAttemptFailed }?.attemptDetails)
        #expect(failed.modelLabel == "sentiment@3", "the process's report wins")
        #expect(failed.inputSHA256 == (try sha256sum(input)))
        #expect(failed.outputSHA256 == nil, "a failed attempt has no output")

        let completedEvent = try #require(events.first { $0.kind == .activityCompleted })
        let completed = try #require(completedEvent.attemptDetails)
        #expect(completed.modelLabel == "sentiment@3")
        #expect(completed.weightsSHA256 == expectedWeights, "declared and reported weights combined")
        #expect(completed.modelMetadata == ["threshold": "0.8", "prompt": "sha-p"])
        #expect(completed.inputSHA256 == (try sha256sum(input)))
        #expect(completed.outputSHA256 == (try sha256sum(try #require(completedEvent.data))))
        #expect(completed.pid != nil && completed.slot == "PyModel#1" && completed.runMs != nil)
        await engine.shutdown()
    }

    @Test func processNamingItsModelWithAStringReportsTheNameAlone() async throws {
        // The fixture's own ready line says "model": "fixture".
        let engine = try await Engine(journal: JournalConfiguration(temporaryJournalPath()))
        engine.register(ModelFlow.self)
        engine.register(PyModel.self, processPool: ProcessPoolOptions(command: ["python3", fixture], pool: .warm(min: 1, max: 1)))
        let handle = try await engine.start(ModelFlow.self, input: .init(request: ModelRequest(op: "echo", value: "x")))
        _ = try await handle.result()
        let details = try #require(try await engine.history(handle.runID).1.first { $0.kind == .activityCompleted }?.attemptDetails)
        #expect(details.model == "fixture")
        #expect(details.modelVersion == "")
        #expect(details.modelLabel == "fixture")
        #expect(details.inputSHA256?.count == 64)
        await engine.shutdown()
    }

    @Test(arguments: [
        (#"{"ready":true,"model":{"version":"1"}}"#, "its model has no name (a non-empty string)"),
        (#"{"ready":true,"model":42}"#, "its model is neither an object nor a string"),
        (#"{"ready":true,"model":{"name":"m","weights":{"w.bin":"xyz"}}}"#, "its model's weights hash for w.bin is not 64 hex digits"),
        (#"{"ready":true,"model":{"name":"m","metadata":{"k":1}}}"#, "its model's metadata is not an object of strings"),
    ])
    func readyLineWithAnUnreadableModelFailsTheLaunch(_ line: String, _ problem: String) async throws {
        let configuration = WorkerProcessConfiguration(
            command: ["python3", fixture], environment: ["READY_LINE": line], readyTimeout: .seconds(20))
        do {
            _ = try await WorkerProcess.launch(configuration)
            Issue.record("launched with \(line)")
        } catch let error as WorkerProcessError {
            #expect("\(error)".contains("printed a ready line whose model cannot be read: \(problem); killed"), "\(error)")
            #expect(kill(error.pid, 0) != 0, "the process is gone")
        }
    }

    @Test func weightsFilesAreHashedAsSha256sumDoesAndAMissingOneIsNamed() throws {
        let path = temporaryPath("weights.bin")
        // Over three 1 MiB blocks, not a multiple of the block size.
        var bytes = Data(count: 3 * 1_048_576 + 123)
        for index in stride(from: 0, to: bytes.count, by: 4093) { bytes[index] = UInt8(truncatingIfNeeded: index / 4093) }
        try bytes.write(to: URL(fileURLWithPath: path))
        let expected = try sha256sum(file: path)
        #expect(try ModelIdentity.sha256(ofFile: path) == expected)
        let identity = try ModelIdentity(name: "ocr", version: "5", weightFiles: [path])
        #expect(identity.weights == [URL(fileURLWithPath: path).lastPathComponent: expected])

        let missing = path + ".missing"
        #expect {
            try ModelIdentity(name: "ocr", version: "5", weightFiles: [path, missing])
        } throws: { error in
            "\(error)" == "cannot hash model weights file \(missing): no such file"
        }
    }
}
