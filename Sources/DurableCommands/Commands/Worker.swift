import ArgumentParser
import Durable
import Foundation
import ServiceLifecycle
import UnixSignals

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run workflows and activities until SIGINT or SIGTERM.",
        discussion: """
            Recovers every open run no live worker drives (replaying its history), then picks up runs submitted \
            by other processes and takes over the runs of workers that are gone. Any number of workers can share \
            a journal; each run is driven by one of them at a time, under a lease. On SIGINT or SIGTERM it stops \
            cleanly: running activity attempts are cancelled (they are retried by whichever worker takes the run \
            next), everything recorded is committed, and its leases are released before it exits.
            """)

    @OptionGroup var options: JournalOptions

    @OptionGroup var work: WorkOptions

    @Flag(help: "Print nothing but errors.")
    var quiet = false

    func run() async throws {
        let worker = try await options.openForWork(
            durability: try work.parsedDurability(), worker: try work.workerOptions(), logger: work.logger("durable"))
        let quiet = self.quiet
        worker.onRunClosed { runID, outcome in
            guard !quiet else { return }
            switch outcome {
            case .completed: print("run \(runID.escaped) completed")
            case .failed(let failure): print("run \(runID.escaped) failed: \("\(failure)".escaped)")
            case .cancelled(let reason): print("run \(runID.escaped) cancelled: \(reason.escaped)")
            case .terminated(let reason): print("run \(runID.escaped) terminated: \(reason.escaped)")
            case .continuedAsNew(let next): print("run \(runID.escaped) continued as new run \(next.escaped)")
            }
        }
        if !quiet {
            print("worker pid \(getpid()) (\(worker.workerID)) on \(options.path.escaped): workflow types \(worker.workflowTypes.map(\.escaped).joined(separator: ", "))")
        }
        worker.onReady { startup in
            guard !quiet else { return }
            if let pools = worker.poolSummary {
                print("pools warm in \(startup.warmUp.milliseconds) ms: \(pools)")
            }
            let report = startup.recovery
            print("recovered \(report.resumed.count) open run(s), picked up \(report.claimed.count) submitted run(s)"
                  + (report.held.isEmpty ? "" : ", \(report.held.count) held")
                  + (report.drivenElsewhere.isEmpty ? "" : ", \(report.drivenElsewhere.count) driven by other workers"))
            for (runID, reason) in report.held.sorted(by: { $0.key < $1.key }) { print("held \(runID.escaped): \(reason.escaped)") }
        }
        // Until SIGINT or SIGTERM, from the start (warm-up and recovery included): the service group
        // then shuts the worker down gracefully, and commits and lease releases are done before it returns.
        let group = ServiceGroup(configuration: .init(
            services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: work.logger("durable.worker")))
        try await group.run()
        if !quiet { print("worker stopped cleanly") }
    }
}
