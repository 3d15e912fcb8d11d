import Durable
import DurableJournal
import Foundation
import Logging
import Synchronization
import Testing

/// Waits for three `more` signals, then answers how many bytes its input had.
struct Hoard: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> Int {
        for _ in 0..<3 { _ = try await ctx.waitForSignal(Int.self, named: "more") }
        return input.utf8.count
    }
}

/// A log handler that keeps what is logged, for tests.
struct RecordingLogHandler: LogHandler {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    final class Entries: Sendable {
        let list = Mutex<[Entry]>([])
        var all: [Entry] { list.withLock { $0 } }
    }

    let entries: Entries
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = event.metadata.map { metadata.merging($0) { _, new in new } } ?? metadata
        entries.list.withLock { $0.append(Entry(level: event.level, message: "\(event.message)", metadata: merged)) }
    }
}

@Suite(.timeLimit(.minutes(2))) struct LongHistoryTests {
    /// The threshold is the one `isContinueAsNewSuggested` uses: 10,000 events or 10 MB of payloads.
    @Test func theThresholdIsTenThousandEventsOrTenMegabytes() throws {
        #expect(!DurableLimits.isContinueAsNewSuggested(events: 9_999, payloadBytes: 10 * 1024 * 1024 - 1))
        #expect(DurableLimits.isContinueAsNewSuggested(events: 10_000, payloadBytes: 0))
        #expect(DurableLimits.isContinueAsNewSuggested(events: 1, payloadBytes: 10 * 1024 * 1024))
        #expect(RunDescription.historyWarning(events: 9_999, payloadBytes: 0) == nil)
        let warning = try #require(RunDescription.historyWarning(events: 12_345, payloadBytes: 678))
        #expect(warning.contains("12,345 events and 678 bytes"), "\(warning)")
        #expect(warning.contains("ctx.continueAsNew(with:)"))
    }

    /// A run whose history passes 10 MB of payloads (its input) is warned about once, however many
    /// activations follow, at `warning` level with its run and workflow IDs; a short one is not.
    @Test func theWorkerLogsALongHistoryOncePerRun() async throws {
        let entries = RecordingLogHandler.Entries()
        let engine = try await Engine(
            journal: JournalConfiguration(temporaryJournalPath()),
            logger: Logger(label: "test") { _ in RecordingLogHandler(entries: entries) })
        engine.register(Hoard.self)
        let big = String(repeating: "x", count: 10 * 1024 * 1024 + 1)
        let long = try await engine.start(Hoard.self, input: big, id: "long")
        let short = try await engine.start(Hoard.self, input: "x", id: "short")
        for _ in 0..<3 {
            try await engine.signal("long", name: "more", 1)
            try await engine.signal("short", name: "more", 1)
        }
        #expect(try await long.result() == big.utf8.count)
        #expect(try await short.result() == 1)
        let warnings = entries.all.filter { $0.message.contains("continue-as-new is suggested") }
        #expect(warnings.count == 1, "\(warnings.map(\.message))")
        #expect(warnings.first?.level == .warning)
        #expect(warnings.first?.metadata["durable.run"] == "\(long.runID)")
        #expect(warnings.first?.metadata["durable.workflow-id"] == "long")
        #expect(warnings.first?.message.contains("10,485,") == true, "\(warnings.first?.message ?? "")")
        await engine.shutdown()
    }
}
