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

    @Option(help: "full or fast.")
    var durability: String = "full"

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let data = try readInput(start.input)
        let engine = try options.openForWork(durability: try parseDurability(durability))
        try engine.validate(workflowType: start.workflowType, input: data)
        let signals = StopSignals { Task { await engine.shutdown() } }
        try await engine.recover()
        let worker = Task { try await engine.runWorker() }
        let runID = try await engine.start(workflowType: start.workflowType, input: data, id: start.id)
        defer { withExtendedLifetime(signals) {} }
        do {
            try await printOutcome(engine, runID: runID, json: json)
        } catch {
            worker.cancel()
            await engine.shutdown()
            throw error
        }
        worker.cancel()
        await engine.shutdown()
    }
}
