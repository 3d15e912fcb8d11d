import DurableBackends
import DurableJournal
import DurableTestSupport
import Foundation
import Testing

/// A JSON string of `bytes` characters that LZ4 cannot shrink much (base64 of a seeded generator):
/// its frame stays above the out-of-line size. The same seed gives the same payload.
func incompressible(_ bytes: Int, seed: UInt64) -> Data {
    var state = seed
    var raw = Data(count: bytes * 3 / 4)
    raw.withUnsafeMutableBytes { buffer in
        for i in buffer.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            buffer[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
    }
    return Data(("\"" + raw.base64EncodedString() + "\"").utf8)
}

/// Large payloads stored out of line (`Docs/operations.md`, "Large payloads"), on every backend.
@Suite(.timeLimit(.minutes(2))) struct OutOfLineConformanceTests {
    static let first = incompressible(100_000, seed: 1)
    static let second = incompressible(90_000, seed: 2)

    func event(_ index: Int, _ kind: EventKind, _ data: Data, seq: Int = 0) -> EventDraft {
        EventDraft(HistoryEvent(index: index, kind: kind, time: t0, seq: seq, attempt: seq == 0 ? 0 : 1, data: data))
    }

    /// A new run whose input is `input`, closed by a second batch when `close` says so.
    func run(_ journal: any Journal, _ runID: String, input: Data, result: Data, close: Bool) async throws {
        var batch = newRun(runID)
        batch.events = [event(0, .workflowStarted, input)]
        try await journal.append(batch)
        try await journal.append(JournalBatch(
            run: RunRef(runID: runID), events: [event(1, .activityCompleted, result, seq: 1), event(2, .activityCompleted, Data("\"ok\"".utf8), seq: 2)]))
        if close {
            try await journal.append(JournalBatch(
                run: RunRef(runID: runID), events: [event(3, .workflowCompleted, Data("1".utf8))], statusChange: .init(status: .completed)))
        }
    }

    func payloads(_ journal: any Journal, _ runID: String) async throws -> [Data?] {
        try await journal.history(try #require(try await journal.findRun(runID)), from: 0).map(\.data)
    }

    @Test(arguments: Backend.allCases) func largePayloadsAreStoredOnceOutOfLineAndReadBackWhole(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        try await run(journal, "r1", input: Self.first, result: Self.second, close: false)
        try await run(journal, "r2", input: Data("{}".utf8), result: Self.first, close: false)
        // A run that continues as new with the large input: the next run's first event, in the same batch.
        try await journal.append(JournalBatch(
            run: RunRef(runID: "r1"), events: [event(3, .workflowContinuedAsNew, Data("null".utf8))],
            statusChange: .init(status: .continuedAsNew)).continuing(as: "r3", input: event(0, .workflowStarted, Self.second)))

        #expect(try await payloads(journal, "r1").prefix(3) == [Self.first, Self.second, Data("\"ok\"".utf8)])
        #expect(try await payloads(journal, "r2") == [Data("{}".utf8), Self.first, Data("\"ok\"".utf8)])
        #expect(try await payloads(journal, "r3") == [Self.second])
        #expect(try await payloads(journal, "r1").suffix(2) == [Data("\"ok\"".utf8), Data("null".utf8)])
        let stats = try await journal.stats()
        #expect(stats.outOfLinePayloads == 2, "each large payload once, however many events refer to it; small ones inline")
        #expect(stats.outOfLineBytes > 150_000 && stats.outOfLineBytes < 200_000, "\(stats.outOfLineBytes)")
        let report = try await journal.check()
        #expect(report.isHealthy, "\(report.problems)")
        #expect(report.outOfLinePayloadsChecked == 2)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func pruneDeletesAPayloadStoredOutOfLineWithTheLastRunThatRefersToIt(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        try await run(journal, "r1", input: Self.first, result: Self.second, close: true)
        try await run(journal, "r2", input: Self.first, result: Data("1".utf8), close: false)
        #expect(try await journal.stats().outOfLinePayloads == 2)

        // Each prune's cutoff is taken when it runs, just after the runs it is to delete have closed (a
        // cutoff taken once closed the second run after it when the test process stalled 5 s).
        #expect(try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(5)).runs == 1)
        #expect(try await journal.stats().outOfLinePayloads == 1, "the first payload stays: the open run refers to it")
        #expect(try await payloads(journal, "r2").first == Self.first)
        #expect(try await journal.check().isHealthy)

        try await journal.append(JournalBatch(
            run: RunRef(runID: "r2"), events: [event(3, .workflowCompleted, Data("1".utf8))], statusChange: .init(status: .completed)))
        #expect(try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(5)).runs == 1)
        let stats = try await journal.stats()
        #expect(stats.outOfLinePayloads == 0 && stats.outOfLineBytes == 0)
        #expect(try await journal.check().isHealthy)
        await journal.close()
    }

    /// Runs that refer to one payload are written while prune deletes the closed ones, from two
    /// connections at once: the payload is never deleted under a reference written meanwhile.
    @Test(arguments: Backend.allCases) func pruneRacingWritersNeverDeletesAPayloadARunStillRefersTo(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let writer = try await openJournal(location, owner: "w1")
        let pruner = try await openJournal(location)
        try await run(writer, "r0", input: Self.first, result: Data("1".utf8), close: true)
        async let pruning: Int = {
            var deleted = 0
            for _ in 0..<40 { deleted += try await pruner.deleteClosedRuns(closedBefore: Date().addingTimeInterval(5)).runs }
            return deleted
        }()
        for n in 1...40 { try await run(writer, "r\(n)", input: Self.first, result: Data("1".utf8), close: n % 2 == 0) }
        let deleted = try await pruning
        #expect(deleted >= 1)
        for run in try await writer.runs(RunFilter()) {
            #expect(try await writer.history(run, from: 0).first?.data == Self.first, "\(run.runID)")
        }
        let report = try await writer.check()
        #expect(report.isHealthy, "\(report.problems)")
        _ = try await pruner.deleteClosedRuns(closedBefore: Date().addingTimeInterval(5))
        #expect(try await writer.stats().outOfLinePayloads == 1, "the 20 open runs still refer to it")
        await writer.close()
        await pruner.close()
    }

    @Test(arguments: Backend.allCases) func compactionLeavesLargePayloadsOutOfLine(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        try await run(journal, "r1", input: Self.first, result: Self.second, close: true)
        let before = try await payloads(journal, "r1")
        let report = try await journal.compact()
        #expect(report.packedRuns == 1)
        #expect(try await payloads(journal, "r1") == before, "the packed history reads the payloads it refers to")
        #expect(try await journal.stats().outOfLinePayloads == 2, "compaction neither copies nor drops them")
        let check = try await journal.check()
        #expect(check.isHealthy, "\(check.problems)")
        #expect(try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(5)).runs == 1)
        #expect(try await journal.stats().outOfLinePayloads == 0)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func aDamagedOrMissingPayloadStoredOutOfLineIsNamed(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "w1")
        try await run(journal, "r1", input: Data("{}".utf8), result: Self.first, close: true)
        let run = try #require(try await journal.findRun("r1"))

        #expect(try await rawSQL(backend, location, "UPDATE blobs SET data = substr(data, 2)") == nil)
        let damaged = try await #require(throws: JournalError.self) { try await journal.history(run, from: 0) }
        #expect(damaged.code == .damaged && "\(damaged)".contains("run r1, event 1 (ActivityCompleted), payload stored out of line (sha256:"), "\(damaged)")
        #expect("\(damaged)".contains("the blob does not match its SHA-256"), "\(damaged)")
        var report = try await journal.check()
        #expect(!report.isHealthy)
        #expect(report.problems.contains { $0.contains("does not match its SHA-256") }, "\(report.problems)")

        #expect(try await rawSQL(backend, location, "DELETE FROM blobs") == nil)
        let missing = try await #require(throws: JournalError.self) { try await journal.history(run, from: 0) }
        #expect(missing.code == .corruptRun && "\(missing)".contains("event 1 (ActivityCompleted): its payload stored out of line (sha256:"))
        #expect("\(missing)".contains("is missing"), "\(missing)")
        report = try await journal.check()
        #expect(report.problems.contains { $0.contains("is missing") }, "\(report.problems)")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func encryptedLargePayloadsAreStoredOutOfLineEncryptedAndNotShared(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let keys = try PayloadKeys(keys: ["k1": Data(repeating: 7, count: 32)], current: "k1")
        let journal = try await JournalConfiguration(location, durability: .fast, payloadKeys: keys)
            .open(lease: LeaseSettings(owner: "w1", durationMs: 5_000))
        try await run(journal, "r1", input: Self.first, result: Self.first, close: true)
        #expect(try await payloads(journal, "r1").prefix(2) == [Self.first, Self.first])
        #expect(try await journal.stats().outOfLinePayloads == 2, "sealed with a nonce each: equal payloads are not told apart")
        #expect(try await journal.check().isHealthy)
        await journal.close()

        let keyless = try await JournalConfiguration(location, durability: .fast, payloadKeys: .empty).open(lease: nil)
        let run = try #require(try await keyless.findRun("r1"))
        let error = try await #require(throws: JournalError.self) { try await keyless.history(run, from: 0) }
        #expect(error.code == .missingPayloadKey, "\(error)")
        let unverified = try await keyless.check()
        #expect(unverified.isHealthy, "\(unverified.problems)")
        #expect(unverified.unverifiedPayloads == ["k1": 4], "the two stored out of line and the two small ones, frames checked")
        await keyless.close()
    }

    @Test(arguments: Backend.allCases) func aJournalOfThePreviousFormatIsUpgraded(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        await (try await openJournal(location)).close()
        let previous = backend == .sqlite ? "PRAGMA user_version = 10" : "UPDATE meta SET value = '4' WHERE key = 'format_version'"
        #expect(try await rawSQL(backend, location, "DROP TABLE blob_refs; DROP TABLE blobs; \(previous)") == nil)
        let journal = try await openJournal(location, owner: "w1")
        #expect(try await journal.stats().formatVersion == (backend == .sqlite ? 11 : 5))
        try await run(journal, "r1", input: Self.first, result: Data("1".utf8), close: true)
        #expect(try await payloads(journal, "r1").first == Self.first)
        #expect(try await journal.stats().outOfLinePayloads == 1)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func theSizeIsASettingCheckedWhenTheJournalOpens(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        var configuration = JournalConfiguration(location, durability: .fast)
        configuration.largePayloadBytes = 1_024
        let journal = try await configuration.open(lease: LeaseSettings(owner: "w1", durationMs: 5_000))
        try await run(journal, "r1", input: incompressible(2_000, seed: 3), result: Data("\"small\"".utf8), close: true)
        #expect(try await journal.stats().outOfLinePayloads == 1, "2 KB is large at 1 KiB")
        await journal.close()

        configuration.largePayloadBytes = 100
        let tooLow = configuration
        let low = try await #require(throws: JournalError.self) { _ = try await tooLow.open(lease: nil) }
        #expect(low.code == .invalidSetting && "\(low)" == "largePayloadBytes is '100': expected a number of bytes from 1024 to 16777216")
        configuration.largePayloadBytes = nil
        let fromEnvironment = try #require(throws: JournalError.self) {
            try configuration.resolving(["DURABLE_LARGE_PAYLOAD_BYTES": "64k"])
        }
        #expect("\(fromEnvironment)" == "DURABLE_LARGE_PAYLOAD_BYTES is '64k': expected a number of bytes from 1024 to 16777216")
        #expect(try configuration.resolving(["DURABLE_LARGE_PAYLOAD_BYTES": "4096"]).largePayloadBytes == 4_096)
        #expect(try configuration.resolving([:]).largePayloadBytes == nil, "the default then applies")
    }
}

extension JournalBatch {
    /// The batch, continuing its run as a new run `runID` whose first event is `started`.
    func continuing(as runID: String, input started: EventDraft) -> JournalBatch {
        var batch = self
        batch.continuation = (runID, .init(workflowID: runID, workflowType: "Flow", seed: 1, status: .pending, createdAt: t0), started)
        return batch
    }
}
