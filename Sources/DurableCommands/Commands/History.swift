import ArgumentParser
import Durable
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
        discussion: "The file holds the run (type, IDs, seed) and every event with its payload as recorded; see Docs/cli.md.")

    @OptionGroup var options: JournalOptions

    @Argument(help: "Run ID, or workflow ID (its newest run).")
    var id: String

    @Option(name: [.short, .customLong("output")], help: "File to write (standard output when omitted).")
    var output: String?

    func run() async throws {
        let engine = try options.openExisting()
        let (run, events) = try engine.history(id)
        let document = try HistoryExport(run: run, events: events).encoded()
        guard let output else {
            FileHandle.standardOutput.write(document + Data("\n".utf8))
            return
        }
        do {
            try document.write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw CommandFailure(message: "cannot write \(output): \(error.localizedDescription)", exitCode: .badInput)
        }
        print("wrote \(events.count) events of run \(run.runID) (\(run.workflowType), \(run.status.rawValue)) to \(output)")
    }
}

struct ShowHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a run's recorded events.")

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference


    func run() async throws {
        let engine = try options.openExisting()
        let (run, events) = try engine.history(target.id)
        if target.json {
            try Format.printJSON(events.map { event -> [String: Any] in
                var object: [String: Any] = [
                    "index": event.index, "kind": event.kind.name, "time": Format.time(event.time),
                ]
                if event.seq != 0 { object["seq"] = event.seq }
                if event.attempt != 0 { object["attempt"] = event.attempt }
                if let name = event.name { object["name"] = name }
                if let failure = event.failure {
                    object["failure"] = Format.failureJSON(failure)
                } else if event.data != nil {
                    object["data"] = Format.jsonValue(event.data)
                }
                if event.attemptDetails != nil {
                    object["attemptDetails"] = Format.jsonValue(event.meta)
                } else if let meta = event.meta {
                    object["options"] = Format.jsonValue(meta)
                }
                return object
            })
            return
        }
        print("run \(run.runID)  workflow ID \(run.workflowID)  \(run.workflowType)  \(run.status.rawValue)")
        let start = events.first?.time ?? run.createdAt
        print(Format.table(
            ["#", "+MS", "EVENT", "SEQ", "ATTEMPT", "DETAILS"],
            events.map { event in
                let details: String
                if let failure = event.failure {
                    details = failure.description
                } else {
                    details = [event.name, event.data.map { Format.payload($0) }].compactMap { $0 }.joined(separator: " ")
                }
                let attempt = event.attemptDetails.map { "[\($0.summary)]" }
                let text = [details, attempt].compactMap { $0 }.filter { !$0.isEmpty && $0 != "[]" }.joined(separator: " ")
                return [
                    "\(event.index)", "\(Int(event.time.timeIntervalSince(start) * 1000))", event.kind.name,
                    event.seq == 0 ? "" : "\(event.seq)", event.attempt == 0 ? "" : "\(event.attempt)", text,
                ]
            }))
    }
}
