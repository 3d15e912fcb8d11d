import ArgumentParser
import Durable
import Foundation

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-run the workflow code against a run's recorded history.",
        discussion: "Reports whether the code makes the recorded decisions, or the first mismatch. Writes nothing.")

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference


    func run() async throws {
        let engine = try options.openExisting(withCode: true)
        let report = try engine.replay(target.id)
        if target.json {
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
