import ArgumentParser
import Durable
import Foundation

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a run to stop; its workflow code may clean up before it ends as cancelled.",
        discussion: """
            The request is queued in the journal and delivered by the worker driving the run (at once if \
            one runs, else when one starts). The workflow sees Swift task cancellation.
            """)

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference

    @Option(help: "Why, recorded with the request.", transform: OptionValue.nonEmpty)
    var reason: String = "cancelled from the command line"

    func run() async throws {
        let client = try await options.openClient()
        let runID = try await closedRunIsBadInput {
            try await audited(client, "cancel", target: target.id, detail: "reason: \(reason)") { note in
                let runID = try await client.cancel(target.id, reason: reason)
                note.resolved(runID)
                return runID
            }
        }
        if target.json {
            try Format.printJSON(["runID": runID, "requested": "cancel"])
        } else {
            print("cancellation requested for run \(runID.escaped)")
        }
    }
}

struct Terminate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "End a run at once, recorded with a reason; no workflow code runs.",
        discussion: """
            A worker driving the run stops it (its running activities are cancelled). If no worker runs, \
            the run is terminated in the journal directly.
            """)

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference

    @Option(help: "Why, recorded in the run's history.", transform: OptionValue.nonEmpty)
    var reason: String

    func run() async throws {
        let client = try await options.openClient()
        let runID = try await closedRunIsBadInput {
            try await audited(client, "terminate", target: target.id, detail: "reason: \(reason)") { note in
                let runID = try await client.terminate(target.id, reason: reason)
                note.resolved(runID)
                return runID
            }
        }
        if target.json {
            try Format.printJSON(["runID": runID, "requested": "terminate"])
        } else {
            print("termination requested for run \(runID.escaped)")
        }
    }
}

/// An operation on a run that has already ended is a usage problem (exit 2), not a journal one.
func closedRunIsBadInput(_ body: () async throws -> String) async throws -> String {
    do {
        return try await body()
    } catch let error as JournalError where error.isRunClosed {
        throw CommandFailure(message: error.description, exitCode: .badInput)
    }
}
