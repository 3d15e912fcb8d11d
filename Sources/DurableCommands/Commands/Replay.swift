import ArgumentParser
import Durable
import Foundation

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-run the workflow code against a run's recorded history.",
        discussion: "Reports whether the code makes the recorded decisions, or the first mismatch. Writes nothing.")

    @OptionGroup var options: JournalOptions

    @Argument(help: "Run ID, or workflow ID (its newest run).")
    var id: String?

    @Option(help: "Replay a history file written by `history export` instead of a run in the journal.")
    var file: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard (id == nil) != (file == nil) else { throw ValidationError("give a run ID or --file FILE, not both or neither") }
    }

    func run() async throws {
        let report: ReplayReport
        if let file {
            let history = try HistoryExport.read(from: file)
            // The code's registrations need an engine, and an engine a journal: a scratch one.
            let scratch = JournalConfiguration.temporary()
            defer { scratch.removeFiles() }
            let engine = try Engine(journal: scratch)
            AppSetup.registerCode(in: engine)
            report = try engine.replay(history: history, path: file)
        } else if let id {
            report = try options.openExisting(withCode: true).replay(id)
        } else {
            return
        }
        if json {
            try Format.printJSON([
                "runID": report.runID, "workflowType": report.workflowType, "events": report.eventCount,
                "match": report.mismatch == nil, "mismatch": report.mismatch.map { "\($0)" } ?? NSNull(),
                "decisions": report.decisions,
            ])
        } else if report.mismatch == nil {
            print("run \(report.runID) (\(report.workflowType)): \(report.eventCount) events replayed, the code matches the history")
        }
        if let mismatch = report.mismatch {
            throw CommandFailure(message: mismatch.description, exitCode: .runFailed)
        }
    }
}
