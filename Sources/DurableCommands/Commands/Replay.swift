import ArgumentParser
import Durable
import Foundation

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-run the workflow code against a run's recorded history.",
        discussion: "Reports whether the code makes the recorded decisions, or the first mismatch. Writes nothing.")

    @OptionGroup var options: JournalOptions

    @Argument(help: "Run ID, or workflow ID (its newest run).", transform: OptionValue.nonEmpty)
    var id: String?

    @Option(
        help: "Replay a history file written by `history export` instead of a run in the journal.",
        transform: OptionValue.nonEmpty)
    var file: String?

    @Flag(help: "Replay every closed run of the application's workflow types (or of --type), with a progress bar and a summary.")
    var all = false

    @Option(help: "With --all: only runs of this workflow type.", transform: OptionValue.nonEmpty)
    var type: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard [id != nil, file != nil, all].filter({ $0 }).count == 1 else {
            throw ValidationError("give one of: a run ID, --file FILE, --all")
        }
        if type != nil && !all { throw ValidationError("--type goes with --all") }
    }

    func run() async throws {
        if all { return try await replayAll() }
        let report: ReplayReport
        if let file {
            let history = try HistoryExport.read(from: file)
            // The code's registrations need a worker, and a worker a journal: a scratch one.
            let scratch = JournalConfiguration.temporary()
            defer { scratch.removeFiles() }
            let worker = try await DurableWorker(journal: scratch)
            AppSetup.registerCode(in: worker)
            report = try worker.replay(history: history, path: file)
        } else if let id {
            report = try await options.openExisting(withCode: true).replay(id)
        } else {
            return
        }
        if json {
            try Format.printJSON(Self.reportJSON(report))
        } else if report.mismatch == nil {
            print("run \(report.runID.escaped) (\(report.workflowType.escaped)): \(report.eventCount) events replayed, the code matches the history")
        }
        if let mismatch = report.mismatch {
            throw CommandFailure(message: mismatch.description, exitCode: .runFailed)
        }
    }

    /// Replays every closed run of the registered types (or `--type`), oldest first.
    private func replayAll() async throws {
        let engine = try await options.openExisting(withCode: true)
        let types = type.map { [$0] } ?? engine.workflowTypes
        if let type, !engine.workflowTypes.contains(type) {
            throw DurableError(.unknownWorkflowType(type, known: engine.workflowTypes))
        }
        let closed = RunStatus.allCases.filter { !$0.isOpen }
        var runs: [RunRecord] = []
        for type in types {
            runs += try await engine.client.runs(RunFilter(statuses: closed, workflowType: type, oldestFirst: true))
        }
        var mismatches: [ReplayReport] = []
        var events = 0
        let progress = ProgressBar(total: runs.count, enabled: !json && isatty(STDERR_FILENO) != 0)
        do {
            for (i, run) in runs.enumerated() {
                let report = try await engine.replay(run.runID)
                events += report.eventCount
                if report.mismatch != nil { mismatches.append(report) }
                progress.update(i + 1, note: mismatches.isEmpty ? "" : "\(mismatches.count) mismatched")
            }
        } catch {
            progress.finish()  // the bar's line ends before the error is printed
            throw error
        }
        progress.finish()
        if json {
            try Format.printJSON([
                "runs": runs.count, "events": events, "matched": runs.count - mismatches.count,
                "mismatched": mismatches.map { Self.reportJSON($0) },
            ] as [String: Any])
        } else {
            print("replayed \(runs.count) closed run(s) of \(types.map(\.escaped).joined(separator: ", ")) (\(events) events): "
                  + "\(runs.count - mismatches.count) match, \(mismatches.count) mismatch")
            for report in mismatches.prefix(20) { print("mismatch: \(report.mismatch.map { "\($0)".escaped } ?? "")") }
            if mismatches.count > 20 { print("… and \(mismatches.count - 20) more (--json lists them all)") }
        }
        if !mismatches.isEmpty {
            throw CommandFailure(message: "\(mismatches.count) of \(runs.count) runs do not replay through the current code",
                                 exitCode: .runFailed)
        }
    }

    static func reportJSON(_ report: ReplayReport) -> [String: Any] {
        [
            "runID": report.runID, "workflowType": report.workflowType, "events": report.eventCount,
            "match": report.mismatch == nil, "mismatch": report.mismatch.map { "\($0)" } ?? NSNull(),
            "decisions": report.decisions,
        ]
    }
}

/// `[##########··········] 120/240 runs` on standard error, redrawn in place; only when standard error
/// is a terminal (a log file gets no carriage returns).
struct ProgressBar {
    let total: Int
    let enabled: Bool

    func update(_ done: Int, note: String = "") {
        guard enabled, total > 0 else { return }
        let width = 30
        let filled = done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "·", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total) runs\(note.isEmpty ? "" : "  " + note)".utf8))
    }

    func finish() {
        if enabled && total > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
