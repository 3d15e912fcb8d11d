import ArgumentParser
import Durable
import DurableJournal
import Foundation

struct Signal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a signal to an open run.",
        discussion: """
            The signal is queued in the journal at once and delivered, exactly once and in order, by the \
            worker driving the run (at once if one runs, or when one starts). Workflow code receives it with \
            ctx.waitForSignal(_:named:) or ctx.signals(_:named:). A signal whose input does not decode as the \
            type the workflow waits for is recorded as rejected in the run's history and the workflow keeps \
            waiting; an application whose workflow names its signal types (Workflow.signals) refuses such \
            input here, with exit code 2.
            """)

    @OptionGroup var options: JournalOptions

    @Argument(help: "Run ID, or workflow ID (its newest run).", transform: OptionValue.nonEmpty)
    var id: String

    @Argument(
        help: "The signal's name, as the workflow waits for it (1 to 1000 bytes of UTF-8).")
    var name: String

    @Option(help: "The signal's value: JSON, or @file to read it from a file.")
    var input: String = "null"

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        try OptionValue.checkIdentifier(name, "signal name <name>")
    }

    func run() async throws {
        let data = try readInput(input)
        // An application checks the input against the signal types its workflows name.
        let engine = try await options.openExisting(withCode: true)
        let runID = try await closedRunIsBadInput {
            try await audited(engine.client, "signal", target: id, detail: "signal '\(name)'") { note in
                let runID = try await engine.client.signal(id, name: name, json: data)
                note.resolved(runID)
                return runID
            }
        }
        if json {
            try Format.printJSON(["runID": runID, "signal": name])
        } else {
            print("signal '\(name.escaped)' queued for run \(runID.escaped)")
        }
    }
}
