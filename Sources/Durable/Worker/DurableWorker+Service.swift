public import ServiceLifecycle
import Synchronization

/// What a worker did before it took new work: its start-up report (``DurableWorker/onReady(_:)``).
public struct WorkerStartup: Sendable {
    /// How long warming the pools' minimum slots took.
    public var warmUp: Duration
    /// The open runs it recovered, the submitted runs it picked up, the runs it holds (empty when a
    /// start in this process ran the first recovery pass before).
    public var recovery: RecoveryReport
}

extension DurableWorker: Service {
    /// Calls `handler` once the worker started by ``run()`` has warmed its pools and recovered the open
    /// runs, before it takes new work (for a start-up report). Set it before ``run()``.
    public func onReady(_ handler: @escaping @Sendable (WorkerStartup) -> Void) {
        readyObservers.withLock { $0.append(handler) }
    }

    /// Warms the pools, recovers the open runs no live worker drives, then picks up submitted runs,
    /// delivers signals and takes over the runs of workers that are gone, until graceful shutdown
    /// (the service group's, on SIGINT or SIGTERM) or cancellation stops it. Returns once the
    /// shutdown is done: running attempts cancelled (whichever worker takes the run next retries
    /// them), everything recorded committed, pool processes stopped, leases released.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await work(takeoverInterval: .milliseconds(250)) { startup in
                for observer in self.readyObservers.withLock({ $0 }) { observer(startup) }
            }
        } onGracefulShutdown: { [self] in
            Task { await shutdown() }
        }
        await shutdown()  // after cancellation too; waits for one begun by graceful shutdown
    }
}
