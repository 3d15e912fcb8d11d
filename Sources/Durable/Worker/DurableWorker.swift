import Dispatch
public import CoreMetrics
public import DurableJournal
import DurableBackends
public import Foundation
public import Logging
import Synchronization
public import Tracing

/// How a run ended.
public enum RunOutcome: Sendable, Equatable {
    /// The workflow returned; its output as JSON.
    case completed(Data)
    case failed(FailureInfo)
    /// The workflow ended after a cancellation request (the request's reason).
    case cancelled(String)
    /// Ended from outside at once (the reason given).
    case terminated(String)
    /// Ended by continuing as a new run of the same workflow ID (that run's ID).
    case continuedAsNew(String)
}

/// A caller of ``DurableClient/outcome(of:)`` waiting for a run driven in this process.
struct OutcomeWaiter {
    var token: UInt64
    var continuation: CheckedContinuation<RunOutcome?, any Error>
}

/// The process that runs workflows and activities: registration, warm pools, leases, the claim loop,
/// takeover, timers and the run drivers that journal every activation. It is a swift-service-lifecycle
/// `Service` (see ``run()``): run it in a `ServiceGroup`, which stops it gracefully on SIGINT or SIGTERM.
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
/// Starting and watching runs is a ``DurableClient``'s work, from any process; ``client`` is this
/// worker's, which reaches the runs it drives directly. ``start(_:input:id:idReuse:)`` drives a new
/// run in this process at once. An ``Engine`` is a worker and its client in one value, for programs
/// that do both. Any number of workers can share a journal; each run is driven by one of them at a
/// time, under a lease.
public final class DurableWorker: Sendable {
    /// The journal this worker reads and writes, whatever its backend.
    package let journal: any Journal
    /// Starts, signals, inspects and awaits runs on this worker's journal; runs this worker drives
    /// are reached directly through it.
    public let client: DurableClient
    package let journalConfiguration: JournalConfiguration
    let registry = Mutex(Registry())
    /// Pools of activities registered again since: their processes may still be closing.
    let replacedPools = Mutex<[SlotPool]>([])
    /// Runs driven by this engine, by run ID.
    let drivers = Mutex(DriverTable())
    /// Runs this engine stopped driving because a write failed, whose leases it may still hold. Their
    /// leases are released (at once, or by a later takeover pass while the journal cannot be written),
    /// so that a worker takes them over instead of waiting behind renewals that keep them alive.
    let droppedRuns = Mutex<Set<String>>([])
    /// Set when a statement that takes leases (a claim, a takeover) failed without an answer: it may
    /// have committed, leaving runs leased here that nothing drives. The next claim pass compares the
    /// runs leased here with the drivers and gives up the leases of the others.
    let leasesUncertain = Atomic<Bool>(false)
    /// Set by a write that failed (not for a lost lease), cleared by the next commit: while it is set, a
    /// worker pass that reads the journal well does not announce that the journal works again.
    let writesFailing = Atomic<Bool>(false)
    /// Callers of ``outcome(of:)`` waiting for runs driven here, by run ID.
    let outcomeWaiters = Mutex<[String: [OutcomeWaiter]]>([:])
    /// Names each waiter, so that a cancelled one can be taken out.
    let outcomeWaiterTokens = Atomic<UInt64>(0)
    let workerOptions: WorkerOptions
    /// The worker-wide limit on running attempts, if one is set.
    let permits: WorkerPermits?
    let metricsFactory: any MetricsFactory
    /// Batch commit times and sizes (see `WorkerMetrics.swift`).
    let journalMetrics: JournalMetrics
    /// Where the worker's spans go (see `RunTracing.swift`).
    let tracer: any Tracer
    /// Whether ``tracer`` is a real one: with the no-op tracer, activations and attempts skip their
    /// spans altogether.
    let traces: Bool
    let stopping = Atomic<Bool>(false)
    /// Finished when the engine starts stopping (see ``stopSignal()``).
    let stopWaiters = Mutex<[AsyncStream<Void>.Continuation]>([])
    /// This engine's name in the leases it holds (`host/pid/start/engine`).
    package let workerID: String
    /// Renews this engine's leases every third of their duration, once it drives a run.
    let leaseRenewal = Mutex<(any DispatchSourceTimer)?>(nil)
    /// The last error a worker pass reported, and when (so a lasting one is not repeated every 5 ms).
    let lastWorkerError = Mutex<(text: String, at: ContinuousClock.Instant)?>(nil)
    /// Why the worker stopped by itself (its journal's files changed under it), which ``runWorker()``
    /// and ``run()`` then throw.
    let stoppedBy = Mutex<(any Error)?>(nil)
    /// The one shutdown, which every caller of ``shutdown()`` waits for.
    let shutdownTask = Mutex<Task<Void, Never>?>(nil)
    let closeObservers = Mutex<[@Sendable (String, RunOutcome) -> Void]>([])
    /// Told when ``run()`` has warmed the pools and recovered the open runs.
    let readyObservers = Mutex<[@Sendable (WorkerStartup) -> Void]>([])
    /// The first recovery pass (see ``recover()``), shared by whoever needs it first.
    let firstRecovery = Mutex<Task<RecoveryReport, any Error>?>(nil)
    /// Set once the first recovery pass has succeeded: starts then skip waiting for it.
    let hasRecovered = Atomic<Bool>(false)
    /// Durable timers, activity timeouts, retry delays and pool idle checks, on the engine's clock.
    let timeouts: TimeoutScheduler
    /// The bounded cache of live workflow instances (see `DurableWorker+Cache.swift`).
    let instanceCache = Mutex(InstanceCache(capacity: InstanceCache.defaultCapacity))
    /// The one timer of the due-time index: the earliest due time of an evicted run known here.
    let dueTimer = Mutex(DueTimer())
    /// Set once a change-feed watch for waiting runs' signals runs (``watchWaitingRuns()``).
    let watchingWaitingRuns = Atomic<Bool>(false)
    /// Worker loops running (``runWorker(takeoverInterval:)``): they deliver signals on every change.
    let workerLoops = Atomic<Int>(0)
    /// Lease holders a takeover pass found gone (a new one makes the due timer look at the index).
    let knownDeadOwners = Mutex<Set<String>>([])
    /// Where the engine tells what happens to runs (held, failed, lost to another worker) and to the
    /// journal (outages), with the worker's name in its metadata (`durable.worker`).
    package let logger: Logger

    /// The time the engine records in history and waits by.
    package var clock: EngineClock { timeouts.clock }

    /// Opens (or creates) the journal: a SQLite file, or a PostgreSQL database for a `postgres://` URL.
    /// - Parameters:
    ///   - options: limits for the whole worker, such as the most activity attempts at once, and its
    ///     lease duration.
    ///   - metrics: where the worker's metrics go (runs, activity attempts, journal commits, pools; see
    ///     `Docs/operations.md`); the process-wide `MetricsSystem.factory` when `nil`.
    ///   - tracer: where the worker's spans go (run starts, activations, activity attempts; see
    ///     `Docs/operations.md`); the process-wide `InstrumentationSystem.tracer` when `nil`. Either
    ///     process-wide one is read once, here: bootstrap it before making the worker.
    ///   - logger: where the engine logs (swift-log); each entry carries `durable.worker` and, when it is
    ///     about a run, `durable.run`, `durable.workflow-id` and `durable.workflow-type`.
    /// - Throws: ``JournalError`` when the journal cannot be reached or opened, is not a journal, or
    ///   is from a newer format.
    public convenience init(
        journal configuration: JournalConfiguration, options: WorkerOptions = WorkerOptions(),
        metrics: (any MetricsFactory)? = nil, tracer: (any Tracer)? = nil, logger: Logger = Logger(label: "durable")
    ) async throws {
        try await self.init(
            journal: configuration, worker: options, metrics: metrics, tracer: tracer, logger: logger,
            clock: EngineClock())
    }

    /// A worker on the given clock (a test engine's skipping clock, see DurableTesting).
    package init(
        journal configuration: JournalConfiguration, worker: WorkerOptions = WorkerOptions(),
        metrics: (any MetricsFactory)? = nil, tracer: (any Tracer)? = nil, logger: Logger = Logger(label: "durable"),
        clock: EngineClock
    ) async throws {
        workerID = WorkerIdentity.next()
        var logger = logger
        logger[metadataKey: "durable.worker"] = "\(workerID)"
        self.logger = logger
        journalConfiguration = configuration
        journal = try await configuration.open(
            lease: LeaseSettings(owner: workerID, durationMs: Int64(worker.leaseDuration.milliseconds)))
        timeouts = TimeoutScheduler(clock: clock)
        workerOptions = worker
        permits = worker.maximumConcurrentActivities.map { WorkerPermits(limit: $0) }
        metricsFactory = metrics ?? MetricsSystem.factory
        journalMetrics = JournalMetrics(factory: metricsFactory)
        let tracer = tracer ?? InstrumentationSystem.tracer
        self.tracer = tracer
        traces = !(tracer is NoOpTracer)
        client = DurableClient(journal: journal, clock: clock, ownsJournal: false, tracer: tracer)
        client.attach(self)
        // The instance cache's capacity: the worker's options, else for a whole deployment (the
        // `durable worker` command, say) the environment.
        if let capacity = worker.instanceCacheCapacity {
            instanceCacheCapacity = capacity
        } else if let text = ProcessInfo.processInfo.environment["DURABLE_INSTANCE_CACHE"] {
            if let capacity = Int(text), capacity >= 0 {
                instanceCacheCapacity = capacity
            } else {
                logger.error("DURABLE_INSTANCE_CACHE: '\(text.prefix(40))' is not a count of runs; the cache keeps its default capacity (\(instanceCacheCapacity))")
            }
        }
    }

    /// Where the journal is: a file path, or a URL without its password.
    public var journalLocation: String { journal.location }

    // MARK: - Registration

    /// Registers a workflow type under ``Workflow/name``.
    public func register<W: Workflow>(_ workflow: W.Type) {
        let registration = WorkflowRegistration(W.self, metrics: metricsFactory)
        registry.withLock { $0.workflows[W.name] = registration }
    }

    /// Registers an activity implementation under ``ActivityDeclaration/name``. The one value serves
    /// every attempt, any number at once (bounded only by ``WorkerOptions``).
    public func register<A: Activity>(_ activity: A) {
        let pool = SlotPool(name: A.name, shared: activity, metrics: PoolMetrics(pool: A.name, factory: metricsFactory),
                            timers: timeouts)
        add(.inProcess(A.self, pool: pool))
    }

    /// Registers an activity whose instances are expensive to make (a loaded model), kept warm in a
    /// pool of slots: `make` warms a slot; each slot runs one attempt at a time.
    ///
    /// ```swift
    /// worker.register(ScoreFraud.self, pool: .warm(min: 2, max: 4)) { ScoreFraud(model: try await .load()) }
    /// ```
    public func register<A: Activity>(
        _ activity: A.Type, pool options: PoolOptions, make: @escaping @Sendable () async throws -> A
    ) {
        let pool = SlotPool(name: A.name, options: options, metrics: PoolMetrics(pool: A.name, factory: metricsFactory),
                            timers: timeouts, make: { try await make() })
        add(.inProcess(A.self, pool: pool))
    }

    /// The pools with warm slots, as text for a worker's start-up line: `ScoreFraud 2/4, Sentiment 1/2`
    /// (slots now / maximum, and why warming failed if it did); `nil` when no activity has a pool.
    public var poolSummary: String? {
        let pools = registry.withLock { $0.activities.values.map(\.pool) }
            .filter { !$0.isShared }.sorted { $0.name < $1.name }
        guard !pools.isEmpty else { return nil }
        return pools.map { pool in
            "\(pool.name) \(pool.slotCount)/\(pool.options.maximumSlots)"
                + (pool.lastWarmUpFailure.map { " (warm-up failed: \($0))" } ?? "")
        }.joined(separator: ", ")
    }

    /// Registers an activity that runs in a pool of subprocesses speaking JSON lines (a model server in
    /// Python, say): each slot is one long-lived process; a process that breaks the protocol, exits or
    /// times out is killed and replaced. See `Docs/activities.md` for the protocol.
    ///
    /// ```swift
    /// worker.register(Sentiment.self, processPool: ProcessPoolOptions(
    ///     command: ["python3", "models/sentiment.py"], pool: .warm(min: 1, max: 2)))
    /// ```
    public func register<A: ActivityDeclaration>(_ activity: A.Type, processPool options: ProcessPoolOptions) {
        let configuration = WorkerProcessConfiguration(
            command: options.command, environment: options.environment, workingDirectory: options.workingDirectory,
            readyTimeout: options.pool.warmUpTimeout ?? .seconds(3600), terminationGrace: options.terminationGrace,
            stderrLimit: options.stderrLimit, lineLimit: options.lineLimit)
        let pool = SlotPool(
            name: A.name, options: options.pool, metrics: PoolMetrics(pool: A.name, factory: metricsFactory),
            timers: timeouts, make: { try await WorkerProcess.launch(configuration) },
            close: { await ($0 as? WorkerProcess)?.terminate() },
            isHealthy: { ($0 as? WorkerProcess)?.isUsable ?? false },
            watch: { ($0 as? WorkerProcess)?.onExit($1) })
        add(.process(A.self, pool: pool))
    }

    func add(_ registration: ActivityRegistration) {
        let replaced = registry.withLock { registry in
            defer { registry.activities[registration.name] = registration }
            return registry.activities[registration.name]
        }
        guard let replaced else { return }
        replacedPools.withLock { $0.append(replaced.pool) }  // shutdown() waits for them too
        Task {
            await replaced.pool.shutdown()
            replacedPools.withLock { pools in pools.removeAll { $0 === replaced.pool } }
        }
    }

    /// Warms every pool's minimum slots and waits until they are ready (or failed to warm). A worker
    /// does this when it starts, before it takes work; call it to warm pools before the first start.
    /// Each pool is warmed once; calling again warms only pools registered since.
    public func warmUp() async {
        let pools = registry.withLock { $0.activities.values.map(\.pool) }
        await withTaskGroup(of: Void.self) { group in
            for pool in pools { group.addTask { await pool.start() } }
        }
    }

    /// The names of the registered workflow types, sorted.
    public var workflowTypes: [String] { registry.withLock { $0.workflowNames } }

    func workflowRegistration(_ name: String) -> WorkflowRegistration? {
        registry.withLock { $0.workflows[name] }
    }

    func activityRegistration(_ name: String) -> ActivityRegistration? {
        registry.withLock { $0.activity(name) }
    }

    /// Checks that `input` is valid JSON for a registered workflow type.
    public func validate(workflowType: String, input: Data) throws {
        guard let registration = workflowRegistration(workflowType) else {
            throw DurableError(.unknownWorkflowType(workflowType, known: workflowTypes))
        }
        try registration.validateInput(input)
    }

    /// Records the workflow types this engine runs, so that the code-less `durable submit` can
    /// check names.
    package func registerWorkflowTypes() async throws {
        try await journal.registerWorkflowTypes(registry.withLock { $0.workflowNames })
    }

    // MARK: - Leases

    /// Whether a run's lease lets this engine take the run over: free, expired, held by this engine,
    /// or held by a process that is gone.
    func leaseIsFree(_ run: RunRecord) -> Bool { client.leaseIsFree(run) }

    /// Starts renewing this engine's leases (once). Called before the engine takes its first lease:
    /// when it starts a run, claims pending runs, or takes runs over.
    func startLeaseRenewals() {
        leaseRenewal.withLock { timer in
            guard timer == nil else { return }
            journal.beginLeaseRenewals()
            let every = workerOptions.leaseDuration / 3
            let source = DispatchSource.makeTimerSource(queue: .global())
            source.schedule(deadline: .now() + .milliseconds(Int(every.milliseconds)), repeating: .milliseconds(Int(every.milliseconds)))
            source.setEventHandler { [weak self] in
                guard let self else { return }
                // High priority: a renewal that waits behind busy workflows comes late and breaks the chain.
                Task(priority: .high) { await self.renewAndReconcile() }
            }
            source.resume()
            timer = source
        }
    }

    /// Renews this engine's leases. Once the chain of renewals has broken (this process stalled past
    /// a lease), some runs driven here may have been taken over by other workers: those are stopped
    /// at once (their running activities cancelled), rather than at their next write.
    private func renewAndReconcile() async {
        guard (try? await journal.renewLeases()) != nil, journal.leaseChainBroken, !isStopping else { return }
        let driven = drivers.withLock { Array($0.values) }
        guard !driven.isEmpty, let leases = try? await journal.leases(ofRuns: driven.map(\.runID)) else { return }
        for driver in driven {
            guard let (owner, status) = leases[driver.runID] else { continue }
            // Another worker holds it, or another worker has ended it. (No holder at all is a run this
            // worker is claiming; an ended run whose driver here has closed its mailbox is one this
            // worker ended itself and has not forgotten yet.)
            let lostTo: String? = if let owner, owner != workerID {
                "worker \(owner)"
            } else if !status.isOpen && !driver.isClosed {
                "another worker"
            } else {
                nil
            }
            guard let lostTo else { continue }
            journalWriteFailed(runID: driver.runID, JournalError.leaseLost(runID: driver.runID, to: lostTo))
        }
    }

    /// Calls `observer` with the run ID and outcome of every run this engine drives to its end,
    /// on the journal writer's thread right after the closing commit. Keep it short.
    public func onRunClosed(_ observer: @escaping @Sendable (_ runID: String, _ outcome: RunOutcome) -> Void) {
        closeObservers.withLock { $0.append(observer) }
    }

    // MARK: - Shutdown

    /// Stops driving runs: cancels running activity attempts (they are retried after a restart),
    /// closes pool slots (process-pool processes get SIGTERM, then SIGKILL), waits until everything
    /// already handed to the journal is committed, and releases this engine's leases. Callers that
    /// come while it is under way wait for the same shutdown.
    public func shutdown() async {
        let task = shutdownTask.withLock { task in
            if let task { return task }
            let new = Task { await self.stop() }
            task = new
            return new
        }
        await task.value
    }

    private func stop() async {
        stopping.store(true, ordering: .sequentiallyConsistent)
        for waiter in stopWaiters.withLock({ waiters in defer { waiters.removeAll() }; return waiters }) { waiter.finish() }
        let open = drivers.withLock { drivers in
            defer { drivers.removeAll() }
            return Array(drivers.values)
        }
        let pools = registry.withLock { $0.activities.values.map(\.pool) } + replacedPools.withLock { $0 }
        for pool in pools { pool.stopReplacing() }
        for driver in open { driver.terminate() }  // cancels its running activities
        await withTaskGroup(of: Void.self) { group in
            for pool in pools { group.addTask { await pool.shutdown() } }
        }
        try? await journal.append(.barrier())  // everything queued before it is committed
        leaseRenewal.withLock { timer in
            timer?.cancel()
            timer = nil
        }
        try? await journal.releaseLeases()  // other workers take the runs over now, not at expiry
        let waiters = outcomeWaiters.withLock { waiters in
            defer { waiters.removeAll() }
            return waiters.values.flatMap { $0 }
        }
        for waiter in waiters { waiter.continuation.resume(throwing: DurableError(.shuttingDown)) }
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// A sequence that ends when the engine starts stopping (at once if it has).
    func stopSignal() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        let stopped = stopWaiters.withLock { waiters -> Bool in
            if isStopping { return true }
            waiters.append(continuation)
            return false
        }
        if stopped { continuation.finish() }
        return stream
    }
}

extension DurableWorker: LocalRuns {
    package func drives(_ runID: String) -> Bool { drivers.withLock { $0[runID] != nil } }

    package var checksSignalTypes: Bool { registry.withLock { $0.workflows.values.contains(where: \.declaresSignals) } }

    package func checkSignal(_ run: RunRecord, name: String, json: Data) throws {
        try workflowRegistration(run.workflowType)?.validateSignal(run.runID, name, json)
    }

    package func query(_ run: RunRecord, name: String) async throws -> Data { try await answer(run, query: name) }
}
