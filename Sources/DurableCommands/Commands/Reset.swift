import ArgumentParser
import Durable
import Foundation

struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a new run that replays a run's history up to an event and continues from there.",
        discussion: """
            For runs a bad deployment sent down a wrong path: fix the code, then reset each run to the event \
            before the wrong decision. --to is the index of an event that starts an activation (an activity \
            result, a timer firing, a signal, a child's outcome; see `history`); events from it on are dropped, \
            the open run is terminated, and a worker continues the new run with the current code. Signals and \
            child outcomes recorded after that point are queued again for the new run.
            """)

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Keep the events before this index (0 to 2147483647).", valueName: "event-index"),
        transform: { try OptionValue.integer($0, in: OptionLimits.eventIndex) })
    var to: Int

    @Option(help: "Why (recorded in the terminated run).", transform: OptionValue.nonEmpty)
    var reason: String = "reset"

    func run() async throws {
        let engine = try await options.openExisting(withCode: false)
        let report = try await audited(
            engine.client, "reset", target: target.id, detail: "to event \(to); reason: \(reason)"
        ) { note in
            let report = try await engine.reset(target.id, toEvent: to, reason: reason)
            note.resolved(report.sourceRunID)
            note.add("new run \(report.newRunID)")
            return report
        }
        if target.json {
            try Format.printJSON([
                "sourceRunID": report.sourceRunID, "newRunID": report.newRunID, "workflowID": report.workflowID,
                "eventsKept": report.eventsKept, "requeued": report.requeued,
            ] as [String: Any])
        } else {
            print("run \(report.sourceRunID.escaped) reset to event \(to): new run \(report.newRunID.escaped) of workflow ID "
                  + "\(report.workflowID.escaped) keeps \(report.eventsKept) events"
                  + (report.requeued > 0 ? ", \(report.requeued) signal(s) queued again" : "")
                  + "; a worker continues it")
        }
    }
}
