import DurableTestSupport
import Durable
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `durable reset` of an open run no worker drives, SIGKILLed at moments spread over its life: the source ends and
/// its replacement appears together, or neither happens.
@Suite(.timeLimit(.minutes(2)), .enabled(if: TestBackend.isSQLite, "copies the journal file for each attempt"))
struct ResetAtomicityTests {
    @Test func aResetKilledAtAnyMomentLeavesBothRunsOrNeither() async throws {
        let app = try productPath("durable-test-worker")
        let original = temporaryPath()
        // A run waiting for its third signal, with two delivered, whose worker is gone.
        let worker = try Child(app, ["worker", "--journal", original])
        try await eventually("the worker is ready") { worker.output.contains("recovered") }
        let submit = try await runCommand(app, ["submit", "Gather", "--input", "3", "--id", "g-1", "--journal", original])
        try #require(submit.status == 0, "\(submit.stderr)")
        for item in ["a", "b"] {
            let signal = try await runCommand(app, ["signal", "g-1", "item", "--input", "\"\(item)\"", "--journal", original])
            try #require(signal.status == 0, "\(signal.stderr)")
        }
        let client = try await DurableClient(journal: JournalConfiguration(original, createIfMissing: false))
        try await eventually("both signals delivered") { try await client.history("g-1").1.count == 3 }
        await client.close()
        worker.kill(SIGKILL)
        _ = try await worker.wait()

        var outcomes = (untouched: 0, replaced: 0)
        for attempt in 0..<12 {
            let journal = temporaryPath("reset-\(attempt)")
            try FileManager.default.copyItem(atPath: original, toPath: journal)
            for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: original + suffix) {
                try FileManager.default.copyItem(atPath: original + suffix, toPath: journal + suffix)
            }
            let reset = try Child(app, ["reset", "g-1", "--to", "1", "--journal", journal])
            // Moments spread over the reset's life (about 60 ms alone, longer beside other tests) and past it.
            try await Task.sleep(for: .milliseconds(attempt * 35))
            reset.kill(SIGKILL)
            _ = try await reset.wait()

            let client = try await DurableClient(journal: JournalConfiguration(journal, createIfMissing: false))
            let runs = try await client.runs()
            let source = try #require(runs.first { $0.runID == runs.map(\.runID).last })  // the oldest
            if source.status.isOpen {
                outcomes.untouched += 1
                #expect(runs.count == 1, "attempt \(attempt): a new run without the source's end: \(runs)")
            } else {
                outcomes.replaced += 1
                #expect(source.status == .terminated)
                let named = try #require(source.error?.split(separator: " ").last.map(String.init), "\(source)")
                let replacement = try #require(runs.first { $0.runID == named }, "attempt \(attempt): no run \(named): \(runs)")
                #expect(replacement.status.isOpen && replacement.workflowID == "g-1")
                #expect(try await client.history(replacement.runID).1.count == 1)
                #expect(try await client.journal.queuedSignals().filter { $0.runID == replacement.runID }.count == 2)
            }
            await client.close()
        }
        print("killed resets: \(outcomes.untouched) left the run as it was, \(outcomes.replaced) replaced it")
    }
}
