import ArgumentParser
import Durable
import Foundation
import ServiceLifecycle
import UnixSignals

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
        let policy = try start.reusePolicy()
        let engine = try await options.openForWork(
            durability: try work.parsedDurability(), worker: try work.workerOptions(), logger: work.logger("durable"))
        try engine.validate(workflowType: start.workflowType, input: data)
        // The worker runs as a service: SIGINT or SIGTERM stops it gracefully, and so does the end of the run.
        let group = ServiceGroup(configuration: .init(
            services: [engine], gracefulShutdownSignals: [.sigterm, .sigint],
            logger: work.logger("durable.run")))
        async let worker: Void = group.run()
        var failure: (any Error)?
        do {
            let runID = try await audited(
                engine.client, "run", target: start.id ?? "-", detail: "workflow type \(start.workflowType)"
            ) { note in
                let runID = try await engine.start(
                    workflowType: start.workflowType, input: data, id: start.id, idReuse: policy)
                note.target = start.id ?? runID
                note.resolved(runID)
                return runID
            }
            try await printOutcome(engine.client, runID: runID, json: json)
        } catch {
            failure = error
        }
        await group.triggerGracefulShutdown()
        try await worker
        if let failure { throw failure }
    }
}
