import ArgumentParser
import Durable
import DurableServer
import Foundation

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a run's recorded events, or export them to a file.",
        subcommands: [ShowHistory.self, ExportHistory.self], defaultSubcommand: ShowHistory.self)
}

struct ExportHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a run's history as a JSON file that `replay --file` and tests can replay.",
        discussion: "The file holds the run (type, IDs, seed) and every event with its payload as recorded; see Docs/cli.md. "
            + "Encrypted payloads stay encrypted (base64, with their key ID) unless --decrypt is given.")

    @OptionGroup var options: JournalOptions

    @Argument(help: "Run ID, or workflow ID (its newest run).", transform: OptionValue.nonEmpty)
    var id: String

    @Option(
        name: [.short, .customLong("output")], help: "File to write (standard output when omitted).",
        transform: OptionValue.nonEmpty)
    var output: String?

    @Flag(help: "Write encrypted payloads decrypted (needs their keys) instead of as stored.")
    var decrypt = false

    func run() async throws {
        let engine = try await options.openClient(encryptedPayloads: decrypt ? .requireKey : .keepEncrypted)
        let (run, events) = try await engine.history(id)
        let document = try HistoryExport(run: run, events: events).encoded()
        guard let output else {
            FileHandle.standardOutput.write(document + Data("\n".utf8))
            return
        }
        do {
            try document.write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw CommandFailure(message: writeFailure(output, error), exitCode: .badInput)
        }
        print("wrote \(events.count) events of run \(run.runID.escaped) (\(run.workflowType.escaped), \(run.status.rawValue)) to \(output.escaped)")
    }
}

struct ShowHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a run's recorded events.")

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference

    @Flag(help: "Keep printing new events until the run ends (with --json: one JSON object per line).")
    var follow = false

    @Flag(help: "Draw activities, timers and child runs as a timeline with their durations.")
    var timeline = false

    func validate() throws {
        if timeline && (follow || target.json) { throw ValidationError("--timeline goes without --follow and --json") }
    }

    func run() async throws {
        let engine = try await options.openClient(encryptedPayloads: .markMissing)
        let (run, events) = try await engine.history(target.id)
        if timeline {
            print(Timeline(run: run, events: events, now: Date()).render(width: 50))
            return
        }
        if follow {
            try await followHistory(engine, run, printed: 0)
            return
        }
        if target.json {
            try Format.printJSON(RunJSON.events(events, of: run, in: events))
            return
        }
        print("run \(run.runID.escaped)  workflow ID \(run.workflowID.escaped)  \(run.workflowType.escaped)  \(run.status.rawValue)")
        let start = events.first?.time ?? run.createdAt
        let verdicts = PartialOutputVerdicts(events, runClosed: !run.status.isOpen)
        print(Format.table(["#", "+MS", "EVENT", "SEQ", "ATTEMPT", "DETAILS"], events.map {
            Self.row($0, start: start, discarded: verdicts.isDiscarded($0))
        }))
    }

    /// Prints the run's events from `printed` on as they are recorded, until the run is closed and
    /// everything recorded is printed.
    private func followHistory(_ engine: DurableClient, _ run: RunRecord, printed: Int) async throws {
        var printed = printed
        var start: Date?
        // Attempts whose partial output was printed: their failure says it is discarded.
        var withOutput: Set<[Int]> = []
        if !target.json {
            print("run \(run.runID.escaped)  workflow ID \(run.workflowID.escaped)  \(run.workflowType.escaped)")
            print("#     +MS       EVENT                    SEQ   ATTEMPT  DETAILS")
        }
        // Woken by every commit to the journal (the feed yields once at once).
        for await _ in engine.journal.changes() {
            // The run's status before its events: a run seen closed has all its events recorded.
            let current = try await engine.journal.findRun(run.runID) ?? run
            let events = try await engine.journal.history(run, from: printed)
            for event in events {
                if target.json {
                    try Format.printJSONLine(RunJSON.event(event))
                } else {
                    var cells = Self.row(event, start: start ?? event.time).map(\.escaped)
                    if event.kind == .activityOutput { withOutput.insert([event.seq, event.attempt]) }
                    if [.activityAttemptFailed, .activityFailed, .activityCancelled].contains(event.kind),
                       withOutput.remove([event.seq, event.attempt]) != nil {
                        cells[5] += " (its partial output above is discarded)"
                    }
                    print([cells[0].padded(6), cells[1].padded(10), cells[2].padded(25), cells[3].padded(6),
                           cells[4].padded(9), cells[5]].joined())
                }
                if start == nil { start = event.time }
            }
            printed += events.count
            if !current.status.isOpen { return }
        }
    }

    static func row(_ event: HistoryEvent, start: Date, discarded: Bool = false) -> [String] {
        let details: String
        if let encrypted = event.encryptedData {
            details = [event.name, "encrypted (key \(encrypted.keyID))"].compactMap { $0 }.joined(separator: " ")
        } else if let failure = event.failure {
            details = failure.description
        } else {
            details = [event.name, event.data.map { Format.payload($0) }].compactMap { $0 }.joined(separator: " ")
        }
        let attempt = event.attemptDetails.map { "[\($0.summary)]" }
        let text = [discarded ? "(discarded)" : nil, details, attempt].compactMap { $0 }.filter { !$0.isEmpty && $0 != "[]" }
            .joined(separator: " ")
        return [
            "\(event.index)", "\(Int(event.time.timeIntervalSince(start) * 1000))", event.kind.name,
            event.seq == 0 ? "" : "\(event.seq)", event.attempt == 0 ? "" : "\(event.attempt)", text,
        ]
    }
}

extension String {
    /// Padded with spaces to `width` (at least one space after it).
    func padded(_ width: Int) -> String {
        count >= width ? self + " " : padding(toLength: width, withPad: " ", startingAt: 0)
    }
}
