import ArgumentParser
import Dispatch
import Durable
import Foundation

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
        let engine = try await options.openForWork(durability: try work.parsedDurability(), worker: try work.workerOptions())
        let quiet = self.quiet
        engine.onRunClosed { runID, outcome in
            guard !quiet else { return }
            switch outcome {
            case .completed: print("run \(runID) completed")
            case .failed(let failure): print("run \(runID) failed: \(failure)")
            case .cancelled(let reason): print("run \(runID) cancelled: \(reason)")
            case .terminated(let reason): print("run \(runID) terminated: \(reason)")
            case .continuedAsNew(let next): print("run \(runID) continued as new run \(next)")
            }
        }
        let signals = StopSignals { Task { await engine.shutdown() } }
        if !quiet {
            print("worker pid \(getpid()) (\(engine.workerID)) on \(options.path): workflow types \(engine.workflowTypes.joined(separator: ", "))")
        }
        try await engine.registerWorkflowTypes()  // the types the code-less CLI may submit
        let warming = Date()
        await engine.warmUp()
        if !quiet, let pools = engine.poolSummary {
            print("pools warm in \(Format.duration(from: warming, to: Date())): \(pools)")
        }
        let report = try await engine.recover()
        if !quiet {
            print("recovered \(report.resumed.count) open run(s), picked up \(report.claimed.count) submitted run(s)"
                  + (report.held.isEmpty ? "" : ", \(report.held.count) held")
                  + (report.drivenElsewhere.isEmpty ? "" : ", \(report.drivenElsewhere.count) driven by other workers"))
            for (runID, reason) in report.held.sorted(by: { $0.key < $1.key }) { print("held \(runID): \(reason)") }
        }
        try await engine.runWorker()  // returns once a signal has started the shutdown
        await engine.shutdown()  // waits for it: commits and lease releases are done before the exit
        withExtendedLifetime(signals) {}
        if !quiet { print("worker stopped cleanly") }
    }
}

/// Turns SIGINT and SIGTERM into a call of `onStop` (once).
final class StopSignals {
    private let sources: [any DispatchSourceSignal]

    init(onStop: @escaping @Sendable () -> Void) {
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: onStop)
            source.resume()
            return source
        }
    }
}
