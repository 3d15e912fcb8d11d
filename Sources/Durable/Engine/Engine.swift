public import CoreMetrics
public import DurableJournal
public import Foundation
public import Logging
public import Tracing

/// A worker and its client in one value, for a program that both runs workflows and starts them:
/// what most in-process uses and tests want. It adds nothing of its own: registration, in-process
/// starts, recovery and the worker loop are the ``worker``'s; signals, cancellation, outcomes and
/// inspection are the ``client``'s (which reaches the runs this worker drives directly).
///
/// ```swift
/// let engine = try await Engine(journal: .sqlite(path: "claims.sqlite"))
/// engine.register(ClaimIntake.self)
/// engine.register(ScoreFraud())
/// try await engine.recover()                       // continue runs a previous process left open
/// let run = try await engine.start(ClaimIntake.self, input: claim, id: "claim-1042")
/// let decision = try await run.result()
/// ```
///
/// A process that only starts and watches runs uses a ``DurableClient``; one that only runs them, a
/// ``DurableWorker`` in a `ServiceGroup`.
public final class Engine: Sendable {
    /// Runs the workflows and activities registered here.
    public let worker: DurableWorker

    /// Starts, signals, inspects and awaits runs; runs the ``worker`` drives are reached directly.
    public var client: DurableClient { worker.client }

    /// Opens (or creates) the journal: a SQLite file, or a PostgreSQL database for a `postgres://` URL.
    /// See ``DurableWorker/init(journal:options:metrics:tracer:logger:)``.
    public convenience init(
        journal configuration: JournalConfiguration, worker options: WorkerOptions = WorkerOptions(),
        metrics: (any MetricsFactory)? = nil, tracer: (any Tracer)? = nil, logger: Logger = Logger(label: "durable")
    ) async throws {
        self.init(worker: try await DurableWorker(
            journal: configuration, options: options, metrics: metrics, tracer: tracer, logger: logger))
    }

    /// An engine on the given clock (a test engine's skipping clock, see DurableTesting).
    package convenience init(
        journal configuration: JournalConfiguration, worker options: WorkerOptions = WorkerOptions(),
        metrics: (any MetricsFactory)? = nil, tracer: (any Tracer)? = nil, clock: EngineClock
    ) async throws {
        self.init(worker: try await DurableWorker(
            journal: configuration, worker: options, metrics: metrics, tracer: tracer, clock: clock))
    }

    /// An engine around a worker.
    public init(worker: DurableWorker) {
        self.worker = worker
    }

    /// Where the journal is: a file path, or a URL without its password.
    public var journalLocation: String { worker.journalLocation }

    // MARK: - The worker's

    /// Registers a workflow type; see ``DurableWorker/register(_:)-(W.Type)``.
    public func register<W: Workflow>(_ workflow: W.Type) { worker.register(W.self) }

    /// Registers an activity implementation; see ``DurableWorker/register(_:)-(A)``.
    public func register<A: Activity>(_ activity: A) { worker.register(activity) }

    /// Registers an activity kept warm in a pool; see ``DurableWorker/register(_:pool:make:)``.
    public func register<A: Activity>(
        _ activity: A.Type, pool options: PoolOptions, make: @escaping @Sendable () async throws -> A
    ) {
        worker.register(A.self, pool: options, make: make)
    }

    /// Registers an activity run by subprocesses; see ``DurableWorker/register(_:processPool:)``.
    public func register<A: ActivityDeclaration>(_ activity: A.Type, processPool options: ProcessPoolOptions) {
        worker.register(A.self, processPool: options)
    }

    /// The names of the registered workflow types, sorted.
    public var workflowTypes: [String] { worker.workflowTypes }

    /// The pools with warm slots, as text; see ``DurableWorker/poolSummary``.
    public var poolSummary: String? { worker.poolSummary }

    /// Warms every pool's minimum slots; see ``DurableWorker/warmUp()``.
    public func warmUp() async { await worker.warmUp() }

    /// Checks that `input` is valid JSON for a registered workflow type.
    public func validate(workflowType: String, input: Data) throws {
        try worker.validate(workflowType: workflowType, input: input)
    }

    /// Starts a run and drives it in this process; see ``DurableWorker/start(_:input:id:idReuse:)``.
    public func start<W: Workflow>(
        _ workflow: W.Type, input: W.Input, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> WorkflowHandle<W> {
        try await worker.start(W.self, input: input, id: id, idReuse: idReuse)
    }

    /// Starts a run from JSON input and drives it in this process; returns its run ID.
    public func start(
        workflowType: String, input: Data, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> String {
        try await worker.start(workflowType: workflowType, input: input, id: id, idReuse: idReuse)
    }

    /// Continues the open runs a previous process left; see ``DurableWorker/recover()``.
    @discardableResult
    public func recover() async throws -> RecoveryReport { try await worker.recover() }

    /// Picks up runs other processes submit and takes over those of workers that are gone, until
    /// ``shutdown()``; see ``DurableWorker/runWorker(takeoverInterval:)``.
    public func runWorker(takeoverInterval: Duration = .milliseconds(250)) async throws {
        try await worker.runWorker(takeoverInterval: takeoverInterval)
    }

    /// Re-runs a run's code against its recorded history; see ``DurableWorker/replay(_:)``.
    public func replay(_ id: String) async throws -> ReplayReport { try await worker.replay(id) }

    /// Replays an exported history through the registered code; see ``DurableWorker/replay(history:path:)``.
    public func replay(history: HistoryExport, path: String) throws -> ReplayReport {
        try worker.replay(history: history, path: path)
    }

    /// Continues a run from an earlier activation as a new run; see ``DurableWorker/reset(_:toEvent:reason:)``.
    public func reset(_ id: String, toEvent index: Int, reason: String = "reset") async throws -> ResetReport {
        try await worker.reset(id, toEvent: index, reason: reason)
    }

    /// Calls `observer` for every run this engine drives to its end; see ``DurableWorker/onRunClosed(_:)``.
    public func onRunClosed(_ observer: @escaping @Sendable (_ runID: String, _ outcome: RunOutcome) -> Void) {
        worker.onRunClosed(observer)
    }

    /// Stops driving runs, commits, and releases the leases; see ``DurableWorker/shutdown()``.
    public func shutdown() async { await worker.shutdown() }

    // MARK: - The client's

    /// Records a new run for a worker to pick up; see ``DurableClient/submit(workflowType:input:id:idReuse:)``.
    public func submit(
        workflowType: String, input: Data, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> (runID: String, existing: Bool) {
        try await client.submit(workflowType: workflowType, input: input, id: id, idReuse: idReuse)
    }

    /// Sends a signal; see ``DurableClient/signal(_:name:_:)``.
    @discardableResult
    public func signal<Value: Encodable>(_ id: String, name: String, _ value: Value) async throws -> String {
        try await client.signal(id, name: name, value)
    }

    /// Sends a signal whose value is JSON already; see ``DurableClient/signal(_:name:json:)``.
    @discardableResult
    public func signal(_ id: String, name: String, json: Data) async throws -> String {
        try await client.signal(id, name: name, json: json)
    }

    /// Asks a run to stop; see ``DurableClient/cancel(_:reason:)``.
    @discardableResult
    public func cancel(_ id: String, reason: String = "cancelled") async throws -> String {
        try await client.cancel(id, reason: reason)
    }

    /// Ends a run at once; see ``DurableClient/terminate(_:reason:)``.
    @discardableResult
    public func terminate(_ id: String, reason: String) async throws -> String {
        try await client.terminate(id, reason: reason)
    }

    /// Waits until a run ends; see ``DurableClient/outcome(of:)``.
    public func outcome(of runID: String) async throws -> RunOutcome { try await client.outcome(of: runID) }

    /// A run's summary; see ``DurableClient/describe(_:)``.
    public func describe(_ id: String) async throws -> RunDescription { try await client.describe(id) }

    /// Runs, newest first.
    public func runs(status: RunStatus? = nil, limit: Int? = nil) async throws -> [RunRecord] {
        try await client.runs(status: status, limit: limit)
    }

    /// Runs matching `filter`.
    public func runs(_ filter: RunFilter) async throws -> [RunRecord] { try await client.runs(filter) }

    /// How many runs match `filter`, by status.
    public func countRuns(_ filter: RunFilter) async throws -> [RunStatus: Int] { try await client.countRuns(filter) }

    /// A run's recorded events; see ``DurableClient/history(_:)``.
    public func history(_ id: String) async throws -> (RunRecord, [HistoryEvent]) { try await client.history(id) }

    /// Asks a run a query; see ``DurableClient/query(_:name:)``.
    public func query(_ id: String, name: String) async throws -> Data { try await client.query(id, name: name) }

    /// Asks a run a query and decodes the answer; see ``DurableClient/query(_:name:as:)``.
    public func query<Value: Decodable>(_ id: String, name: String, as type: Value.Type) async throws -> Value {
        try await client.query(id, name: name, as: Value.self)
    }

    /// Records an entry in the journal's audit log; see ``DurableClient/recordAudit(_:)``.
    @discardableResult
    public func recordAudit(_ draft: AuditDraft) async throws -> AuditEntry { try await client.recordAudit(draft) }

    /// A page of the audit log; see ``DurableClient/auditLog(after:limit:newestFirst:)``.
    public func auditLog(after: Int64? = nil, limit: Int = 100, newestFirst: Bool = false) async throws -> [AuditEntry] {
        try await client.auditLog(after: after, limit: limit, newestFirst: newestFirst)
    }

    // MARK: - For the package's tests and tools

    package var journal: any Journal { worker.journal }
    package var workerID: String { worker.workerID }
    package var clock: EngineClock { worker.clock }
    package var logger: Logger { worker.logger }
    package func registerWorkflowTypes() async throws { try await worker.registerWorkflowTypes() }
    package func advanceClock(by duration: Duration) async { await worker.advanceClock(by: duration) }
}
