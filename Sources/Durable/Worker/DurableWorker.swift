public import CoreMetrics
public import DurableJournal
public import ServiceLifecycle

/// The process that runs workflows and activities: registration, warm pools, leases, the claim loop
/// and takeover, as a swift-service-lifecycle `Service`. Run it in a `ServiceGroup`, which stops it
/// gracefully on SIGINT or SIGTERM: running activity attempts are cancelled (whichever worker takes
/// the run next retries them), everything recorded is committed, pool processes are stopped and the
/// leases are released before ``run()`` returns.
///
/// ```swift
/// let worker = try await DurableWorker(journal: .sqlite(path: "claims.sqlite"))
/// worker.register(ClaimIntake.self)
/// worker.register(ScoreFraud.self, pool: .warm(min: 1, max: 2)) { ScoreFraud(model: try await .load()) }
/// let group = ServiceGroup(configuration: .init(
///     services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
/// try await group.run()
/// ```
///
/// Starting and watching runs is a ``DurableClient``'s work, from this process (``client``) or any
/// other. Any number of workers can share a journal; each run is driven by one of them at a time.
public final class DurableWorker: Service, Sendable {
    /// The engine that drives this worker's runs (the same engine a program uses in process).
    public let engine: Engine
    private let onReady: (@Sendable (WorkerStartup) -> Void)?

    /// What a worker did before it took new work.
    public struct WorkerStartup: Sendable {
        /// How long warming the pools' minimum slots took.
        public var warmUp: Duration
        /// The open runs it recovered, the submitted runs it picked up, the runs it holds.
        public var recovery: RecoveryReport
    }

    /// Opens (or creates) the journal for a worker.
    /// - Throws: ``JournalError`` when the journal cannot be reached or opened, is not a journal, or
    ///   is from a newer format.
    public convenience init(
        journal: JournalConfiguration, options: WorkerOptions = WorkerOptions(), metrics: (any MetricsFactory)? = nil
    ) async throws {
        self.init(engine: try await Engine(journal: journal, worker: options, metrics: metrics))
    }

    /// A worker around an engine (one that may also start runs in process).
    /// - Parameter onReady: called once the pools are warm and the open runs recovered, before new
    ///   work is taken (a worker's start-up report).
    public init(engine: Engine, onReady: (@Sendable (WorkerStartup) -> Void)? = nil) {
        self.engine = engine
        self.onReady = onReady
    }

    /// A client on the worker's journal, which reaches the runs this worker drives directly.
    public var client: DurableClient { engine.client }

    // MARK: - Registration

    /// Registers a workflow type; see ``Engine/register(_:)-(W.Type)``.
    public func register<W: Workflow>(_ workflow: W.Type) { engine.register(W.self) }

    /// Registers an activity implementation that serves every attempt.
    public func register<A: Activity>(_ activity: A) { engine.register(activity) }

    /// Registers an activity kept warm in a pool of slots; see ``Engine/register(_:pool:make:)``.
    public func register<A: Activity>(
        _ activity: A.Type, pool options: PoolOptions, make: @escaping @Sendable () async throws -> A
    ) {
        engine.register(A.self, pool: options, make: make)
    }

    /// Registers an activity run by a pool of subprocesses; see ``Engine/register(_:processPool:)``.
    public func register<A: ActivityDeclaration>(_ activity: A.Type, processPool options: ProcessPoolOptions) {
        engine.register(A.self, processPool: options)
    }

    // MARK: - Service

    /// Warms the pools, recovers the open runs no live worker drives, then picks up submitted runs,
    /// delivers signals and takes over the runs of workers that are gone, until graceful shutdown
    /// (or cancellation) stops it; returns once the shutdown has committed everything and released
    /// the leases.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await engine.registerWorkflowTypes()  // the types the code-less CLI may submit
            let warming = ContinuousClock.now
            await engine.warmUp()
            let warmUp = ContinuousClock.now - warming
            let recovery = try await engine.recover()
            onReady?(WorkerStartup(warmUp: warmUp, recovery: recovery))
            try await engine.runWorker()
        } onGracefulShutdown: { [engine] in
            Task { await engine.shutdown() }
        }
        await engine.shutdown()  // after cancellation too; waits for one begun by graceful shutdown
    }
}
