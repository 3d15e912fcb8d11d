import Durable
import DurableTestSupport
import Foundation
import Synchronization
import Testing

/// A real workflow on a journal with payload keys: what is stored, who can read it, and rotation.
@Suite(.timeLimit(.minutes(2))) struct PayloadEncryptionEngineTests {
    static let secret = "jane-roe-de89370400440532013000"
    static let keyA = try! PayloadKeys(keys: ["2026-01": Data((0..<32).map { UInt8($0) })], current: "2026-01")
    static let wrongA = try! PayloadKeys(keys: ["2026-01": Data(repeating: 7, count: 32)], current: "2026-01")
    static let rotated = try! PayloadKeys(
        keys: ["2026-01": Data((0..<32).map { UInt8($0) }), "2026-07": Data((0..<32).map { UInt8(255 - $0) })],
        current: "2026-07")

    func engine(_ path: String, _ keys: PayloadKeys) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path, payloadKeys: keys))
        let log = CallLog()
        engine.register(TwoSteps.self)
        engine.register(GatedFlow.self)
        engine.register(Gated())
        engine.register(Transform(log: log))
        engine.register(Measure(log: log))
        return engine
    }

    func client(_ path: String, _ keys: PayloadKeys, reading: EncryptedPayloadReading = .requireKey) async throws -> DurableClient {
        var configuration = JournalConfiguration(path, createIfMissing: false, payloadKeys: keys)
        configuration.encryptedPayloads = reading
        return try await DurableClient(journal: configuration)
    }

    @Test func encryptedJournalRunsReplaysAndNamesTheKeyItLacks() async throws {
        let path = temporaryJournalPath()
        let first = try await engine(path, Self.keyA)
        let run = try await first.start(TwoSteps.self, input: Self.secret)
        #expect(try await run.result() == Self.secret.uppercased() + ":\(Self.secret.count)")
        await first.shutdown()

        if TestBackend.isSQLite {
            var bytes = Data()
            for suffix in ["", "-wal"] { bytes += FileManager.default.contents(atPath: path + suffix) ?? Data() }
            #expect(!bytes.isEmpty)
            #expect(bytes.range(of: Data(Self.secret.utf8)) == nil, "the input is not in the file")
            #expect(bytes.range(of: Data(Self.secret.uppercased().utf8)) == nil, "nor the activity's result")
            #expect(bytes.range(of: Data("TwoSteps".utf8)) != nil, "names stay in clear")
        } else if let schema = path.components(separatedBy: "schema=").last {
            let stored = try runPsql(path, """
                SELECT count(data), count(*) FILTER (WHERE position(convert_to('\(Self.secret)', 'UTF8') IN data) > 0)
                FROM \(schema).events
                """)
            #expect(stored.stdout == "6|0", "six payloads, none holding the input in clear: \(stored.stderr)")
        }

        // With the key: a replay reproduces every decision.
        let replayer = try await engine(path, Self.keyA)
        let report = try await replayer.replay(run.runID)
        #expect(report.mismatch == nil)
        #expect(report.eventCount == 6)
        await replayer.shutdown()

        // Without it: reads that need payloads fail naming the key; a history shows the rest.
        let keyless = try await client(path, .empty)
        let missing = try await #require(throws: JournalError.self) { try await keyless.history(run.runID) }
        #expect(missing.code == .missingPayloadKey)
        #expect(missing.description.contains("run \(run.runID), event 0 (WorkflowStarted): payload is encrypted with key '2026-01'"))
        await keyless.close()
        let blindReplayer = try await engine(path, .empty)
        let replayError = try await #require(throws: JournalError.self) { try await blindReplayer.replay(run.runID) }
        #expect(replayError.code == .missingPayloadKey)
        await blindReplayer.shutdown()

        let marking = try await client(path, .empty, reading: .markMissing)
        let (_, events) = try await marking.history(run.runID)
        #expect(events.map(\.kind) == [.workflowStarted, .activityScheduled, .activityCompleted, .activityScheduled,
                                        .activityCompleted, .workflowCompleted])
        #expect(events.map(\.name) == ["TwoSteps", "Transform", nil, "Measure", nil, nil])
        #expect(events.allSatisfy { $0.data == nil })
        #expect(events.compactMap(\.encryptedData?.keyID) == Array(repeating: "2026-01", count: 6))
        await marking.close()

        // A wrong key under the same ID.
        let wrong = try await client(path, Self.wrongA)
        let wrongError = try await #require(throws: JournalError.self) { try await wrong.history(run.runID) }
        #expect(wrongError.code == .wrongPayloadKey)
        #expect(wrongError.description.contains("cannot decrypt the payload with key '2026-01': wrong key or damaged"))
        await wrong.close()
    }

    @Test func aWorkerWithoutTheKeyHoldsTheRunAndOneWithItContinues() async throws {
        let path = temporaryJournalPath()
        let gate = "crypto-gate-\(UUID().uuidString.prefix(8))"
        let first = try await engine(path, Self.keyA)
        let run = try await first.start(GatedFlow.self, input: gate)
        try await eventually("the gated activity is scheduled") { try await first.describe(run.runID).eventCount >= 2 }
        await first.shutdown()

        let keyless = try await engine(path, .empty)
        let report = try await keyless.recover()
        let reason = try #require(report.held[run.runID])
        #expect(reason.contains("payload is encrypted with key '2026-01', which is not among this process's payload keys"))
        #expect(!reason.contains("\n"))
        await keyless.shutdown()

        Gated.gates.withLock { $0[gate] = true }
        let keyed = try await engine(path, Self.keyA)
        try await keyed.recover()
        #expect(try await keyed.outcome(of: run.runID) == .completed(Data("\"\(gate.uppercased())\"".utf8)))
        await keyed.shutdown()
    }

    @Test func rotationCompactionAndCheckWorkWithAndWithoutKeys() async throws {
        let path = temporaryJournalPath()
        let before = try await engine(path, Self.keyA)
        let old = try await before.start(TwoSteps.self, input: "old-\(Self.secret)")
        _ = try await old.result()
        await before.shutdown()

        // Rotation: new payloads use the new key; old ones still decrypt by their key ID.
        let after = try await engine(path, Self.rotated)
        let new = try await after.start(TwoSteps.self, input: "new-\(Self.secret)")
        _ = try await new.result()
        #expect(try await after.replay(old.runID).mismatch == nil)
        #expect(try await after.replay(new.runID).mismatch == nil)
        await after.shutdown()

        let oldKeyOnly = try await client(path, Self.keyA, reading: .markMissing)
        #expect(try await oldKeyOnly.history(old.runID).1.allSatisfy { $0.encryptedData == nil })
        #expect(try await oldKeyOnly.history(new.runID).1.compactMap(\.encryptedData?.keyID).allSatisfy { $0 == "2026-07" })
        await oldKeyOnly.close()

        let reader = try await client(path, Self.rotated)
        let oldHistory = try await reader.history(old.runID).1
        let newHistory = try await reader.history(new.runID).1
        #expect(String(decoding: oldHistory[0].data ?? Data(), as: UTF8.self) == "\"old-\(Self.secret)\"")
        await reader.close()

        // Compaction without any key keeps the payloads encrypted; the key still reads them.
        let compactor = try await client(path, .empty)
        let compaction = try await compactor.journal.compact()
        #expect(compaction.packedRuns == 2)
        #expect(compaction.skippedRuns == 0)
        let blindCheck = try await compactor.journal.check()
        #expect(blindCheck.isHealthy, "\(blindCheck.problems)")
        #expect(blindCheck.unverifiedPayloads == ["2026-01": 6, "2026-07": 6])
        await compactor.close()
        if TestBackend.isSQLite {
            let bytes = FileManager.default.contents(atPath: path) ?? Data()
            #expect(bytes.range(of: Data(Self.secret.utf8)) == nil)
        }

        let keyed = try await client(path, Self.rotated)
        #expect(try await keyed.history(old.runID).1 == oldHistory)
        #expect(try await keyed.history(new.runID).1 == newHistory)
        let check = try await keyed.journal.check()
        #expect(check.isHealthy)
        #expect(check.unverifiedPayloads.isEmpty)
        await keyed.close()

        let wrong = try await client(path, Self.wrongA)
        let wrongCheck = try await wrong.journal.check()
        #expect(!wrongCheck.isHealthy)
        #expect(wrongCheck.problems.contains { $0.contains("with key '2026-01': wrong key or damaged") })
        await wrong.close()
    }
}
