import ArgumentParser
import Durable
import Foundation

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start a run and work until it ends, printing its result.",
        discussion: "Also continues other open runs of the journal while it works, as a worker does.")

    @OptionGroup var options: JournalOptions

    @Argument(help: "The workflow type.")
    var workflowType: String

    @Option(help: ArgumentHelp("Input as JSON, or @file to read it from a file.", valueName: "json|@file"))
    var input: String

    @Option(help: "Workflow ID; a new UUID when omitted.")
    var id: String?

    @Option(help: "full or fast.")
    var durability: String = "full"

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let data = try readInput(input)
        let engine = try options.openForWork(durability: try parseDurability(durability))
        try engine.validate(workflowType: workflowType, input: data)
        let signals = StopSignals { Task { await engine.shutdown() } }
        try await engine.recover()
        let worker = Task { try await engine.runWorker() }
        let runID = try await engine.start(workflowType: workflowType, input: data, id: id)
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
