import ArgumentParser
import Durable
import Foundation

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start a run and work until it ends, printing its result.",
        discussion: "Also continues other open runs of the journal while it works, as a worker does.")

    @OptionGroup var options: JournalOptions
    @OptionGroup var start: StartOptions

    @OptionGroup var work: WorkOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let data = try readInput(start.input)
        let engine = try await options.openForWork(durability: try work.parsedDurability(), worker: try work.workerOptions())
        try engine.validate(workflowType: start.workflowType, input: data)
        let signals = StopSignals { Task { await engine.shutdown() } }
        defer { withExtendedLifetime(signals) {} }
        let worker = Task { try await engine.runWorker() }
        var failure: (any Error)?
        do {
            let runID = try await engine.start(
                workflowType: start.workflowType, input: data, id: start.id, idReuse: try start.reusePolicy())
            try await printOutcome(engine, runID: runID, json: json)
        } catch {
            failure = error
        }
        worker.cancel()
        await engine.shutdown()
        if let failure { throw failure }
    }
}
