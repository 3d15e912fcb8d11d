import ArgumentParser
import Durable
import DurableServer
import Foundation

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record a new run for a worker to execute.",
        discussion: """
            Prints the run ID. Submitting a workflow ID that is already open prints that run's ID instead \
            of starting a duplicate. A workflow ID whose last run completed is refused (exit 2) unless \
            --id-reuse allows it. With --wait, waits until a worker finishes the run and prints its result.
            """)

    @OptionGroup var options: JournalOptions
    @OptionGroup var start: StartOptions

    @Flag(help: "Wait for the run to end and print its result.")
    var wait = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let data = try readInput(start.input)
        let policy = try start.reusePolicy()
        let engine: DurableWorker? = AppSetup.hasCode ? try await options.openForWork() : nil  // kept alive while its client is used
        let client = if let engine { engine.client } else { try await options.openClient() }
        let (runID, existing) = try await audited(
            client, "submit", target: start.id ?? "-", detail: "workflow type \(start.workflowType)"
        ) { note in
            if let engine {
                try engine.validate(workflowType: start.workflowType, input: data)
            } else {
                let known = try await client.journal.knownWorkflowTypes()
                guard known.contains(start.workflowType) else {
                    let hint = known.isEmpty
                        ? "no worker has registered workflow types in \(options.path) yet; start a worker once first"
                        : "known types: \(known.joined(separator: ", "))"
                    throw CommandFailure(message: "unknown workflow type '\(start.workflowType)'; \(hint)", exitCode: .badInput)
                }
            }
            let submitted = try await client.submit(
                workflowType: start.workflowType, input: data, id: start.id, idReuse: policy)
            note.target = start.id ?? submitted.runID
            note.resolved(submitted.runID)
            if submitted.existing { note.add("already open") }
            return submitted
        }
        if !wait {
            if json {
                try Format.printJSON(["runID": runID, "existing": existing])
            } else {
                print(existing ? "\(runID.escaped) (workflow ID \((start.id ?? runID).escaped) was already open)" : runID.escaped)
            }
            return
        }
        try await printOutcome(client, runID: runID, json: json)
        withExtendedLifetime(engine) {}
    }
}

/// Waits for a run's outcome and prints it; throws (exit code 1) when the run failed.
func printOutcome(_ client: DurableClient, runID: String, json: Bool) async throws {
    var outcome: RunOutcome
    var runID = runID
    do {
        outcome = try await client.outcome(of: runID)
        while case .continuedAsNew(let next) = outcome {  // follow the chain to the run that ends it
            runID = next
            outcome = try await client.outcome(of: next)
        }
    } catch let error as DurableError {
        throw CommandFailure(message: error.description, exitCode: .runFailed)
    }
    switch outcome {
    case .completed(let result):
        if json {
            try Format.printJSON(["runID": runID, "status": "completed", "result": RunJSON.value(result)])
        } else {
            print(String(decoding: result, as: UTF8.self))  // JSON: no raw control characters
        }
    case .failed(let failure):
        if json {
            try Format.printJSON(["runID": runID, "status": "failed", "failure": RunJSON.failure(failure)])
        }
        throw CommandFailure(message: "run \(runID) failed: \(failure)", exitCode: .runFailed)
    case .continuedAsNew:
        preconditionFailure("followed above")
    case .cancelled(let reason), .terminated(let reason):
        let status = if case .cancelled = outcome { "cancelled" } else { "terminated" }
        if json { try Format.printJSON(["runID": runID, "status": status, "reason": reason]) }
        throw CommandFailure(message: "run \(runID) \(status): \(reason)", exitCode: .runFailed)
    }
}
