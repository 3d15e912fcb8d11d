public import DurableJournal
import DurableBackends
public import Foundation
import Synchronization
public import Tracing

/// Starts, signals, cancels, inspects and awaits runs, from any process, with no workflow code
/// registered: what a claims portal, an operator's tool or a test harness needs. Runs are executed
/// by workers (``DurableWorker``, or an ``Engine`` in the same process), which may run anywhere that
/// reaches the same journal.
///
/// ```swift
/// let client = try await DurableClient(journal: .postgres(url: "postgres://durable@db/claims"))
/// let run = try await client.start(ClaimIntake.self, input: claim, id: "claim-1042")
/// try await client.signal("claim-1042", name: "review", Review(approved: true, by: "j.weber"))
/// let decision = try await run.result()
/// await client.close()
/// ```
///
/// An ``Engine`` has a client of its own (``Engine/client``) on the same journal; through it, runs
/// the engine drives are reached directly (a signal is delivered at once, a result is handed over at
/// commit).
public final class DurableClient: Sendable {
    /// The journal this client reads and writes, whatever its backend.
    package let journal: any Journal
    /// The time recorded in new runs' first events (an engine's clock, in a test engine a skipping one).
    let clock: EngineClock
    private let ownsJournal: Bool
    /// Where ``submit(workflowType:input:id:idReuse:)`` starts its span; `nil`: the process-wide
    /// `InstrumentationSystem.tracer` at each call.
    private let givenTracer: (any Tracer)?
    /// The engine of this process whose runs this client reaches directly, if any.
    private let local = Mutex<LocalRunsReference>(LocalRunsReference())

    /// Opens (or creates) the journal: a SQLite file, or a PostgreSQL database for a `postgres://` URL.
    /// - Parameter tracer: where the `durable.start_run` span of each start goes; the process-wide
    ///   `InstrumentationSystem.tracer` when `nil`.
    /// - Throws: ``JournalError`` when the journal cannot be reached or opened, is not a journal, or
    ///   is from a newer format.
    public convenience init(journal configuration: JournalConfiguration, tracer: (any Tracer)? = nil) async throws {
        try await self.init(
            journal: configuration.open(lease: nil), clock: EngineClock(), ownsJournal: true, tracer: tracer)
    }

    package init(journal: any Journal, clock: EngineClock, ownsJournal: Bool, tracer: (any Tracer)? = nil) {
        self.journal = journal
        self.clock = clock
        self.ownsJournal = ownsJournal
        self.givenTracer = tracer
    }

    var tracer: any Tracer { givenTracer ?? InstrumentationSystem.tracer }

    /// Lets this client reach the runs `runs` drives directly (an engine attaches itself to its client).
    func attach(_ runs: any LocalRuns) {
        local.withLock { $0.runs = runs }
    }

    var localRuns: (any LocalRuns)? { local.withLock { $0.runs } }

    /// Where the journal is: a file path, or a URL without its password.
    public var journalLocation: String { journal.location }

    /// Closes the journal this client opened (a client of an ``Engine`` leaves the engine's open).
    public func close() async {
        if ownsJournal { await journal.close() }
    }

    // MARK: - Starting runs

    /// Records a new run of `W` for a worker to pick up and returns its handle; with the ID of an open
    /// run, returns that run. The run is pending until a worker registered for `W` claims it.
    /// - Parameters:
    ///   - id: the workflow ID (a business key); a UUID when `nil`.
    ///   - idReuse: what to do when a run with the workflow ID has ended already; see
    ///     ``WorkflowIDReusePolicy``. By default a completed run's ID is not run again.
    /// - Throws: ``DurableError`` `workflowIDReused` when the policy refuses a new run, `badInput` when
    ///   the input does not encode, `invalidIdentifier` when the ID is empty or longer than
    ///   ``DurableLimits/maximumIdentifierBytes``; ``JournalError`` when the journal fails.
    public func start<W: Workflow>(
        _ workflow: W.Type, input: W.Input, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> WorkflowHandle<W> {
        let data = try Self.encodeInput(input, of: W.self)
        let (runID, _) = try await submit(workflowType: W.name, input: data, id: id, idReuse: idReuse)
        return WorkflowHandle(runID: runID, workflowID: id ?? runID, client: self)
    }

    /// Records a new run for a worker to pick up, from JSON input (what `durable submit` does).
    /// Returns the run ID and whether it is an open run that already had the workflow ID.
    ///
    /// It runs in a `durable.start_run` span, a child of the caller's current span (an HTTP request's,
    /// say); the run's activations and activity attempts are traced under it, by whichever worker
    /// drives them (see `Docs/operations.md`).
    /// - Throws: ``DurableError`` `workflowIDReused` when `idReuse` refuses a new run (see
    ///   ``WorkflowIDReusePolicy``), `invalidIdentifier` when the workflow type or ID is empty or longer
    ///   than ``DurableLimits/maximumIdentifierBytes``; ``JournalError`` when the journal fails.
    public func submit(
        workflowType: String, input: Data, id: String? = nil,
        idReuse: WorkflowIDReusePolicy = .allowDuplicateFailedOnly
    ) async throws -> (runID: String, existing: Bool) {
        try await submit(workflowType: workflowType, input: input, id: id, idReuse: idReuse, audit: nil)
    }

    /// ``submit(workflowType:input:id:idReuse:)``, appending `audit` to the audit log in the same
    /// transaction as the new run: the entry is written if and only if the run is (not when an open
    /// run already has the workflow ID: `existing` is then `true`, and nothing is recorded).
    package func submit(
        workflowType: String, input: Data, id: String?, idReuse: WorkflowIDReusePolicy, audit: AuditDraft?
    ) async throws -> (runID: String, existing: Bool) {
        let tracer = self.tracer
        return try await tracer.startingRun(workflowType: workflowType) { span in
            let (runID, existing) = try await record(
                workflowType: workflowType, input: input, id: id, idReuse: idReuse, audit: audit
            ) { StartedMeta.encode(parent: nil, trace: tracer.carrier(span.context)) }
            span.startedRun(runID, workflowID: id ?? runID, existing: existing)
            return (runID, existing)
        }
    }

    /// ``submit(workflowType:input:id:idReuse:)`` without its span; `meta` makes the start event's `meta`.
    private func record(
        workflowType: String, input: Data, id: String?, idReuse: WorkflowIDReusePolicy, audit: AuditDraft?,
        meta: () -> Data?
    ) async throws -> (runID: String, existing: Bool) {
        try Self.checkIdentifier(workflowType, "workflow type")
        if let id { try Self.checkIdentifier(id, "workflow ID") }
        try DurableError.checkPayload(input, "the input of workflow \(workflowType)")
        let runID = RunRecord.newRunID()
        let workflowID = id ?? runID
        if id != nil, let existing = try await admitStart(workflowID: workflowID, policy: idReuse) {
            return (existing.runID, true)
        }
        let now = clock.now()
        let started = HistoryEvent(
            index: 0, kind: .workflowStarted, time: now, name: workflowType, data: input, meta: meta())
        var batch = JournalBatch(
            run: RunRef(runID: runID),
            newRun: .init(workflowID: workflowID, workflowType: workflowType,
                          seed: UInt64.random(in: .min ... .max), status: .pending, createdAt: now),
            events: [EventDraft(started)])
        batch.audit = audit
        do {
            try await journal.append(batch)
        } catch let error as JournalError {
            if let existing = error.existingRunID { return (existing, true) }
            throw error
        }
        return (runID, false)
    }

    static func encodeInput<W: Workflow>(_ input: W.Input, of workflow: W.Type) throws -> Data {
        try DurableError.encode(input, as: String(describing: W.Input.self))
    }

    /// Whether a run's lease lets this process act on it as if no worker drove it: free, expired, held
    /// by the engine of this process, or held by a process of this host that is gone.
    func leaseIsFree(_ run: RunRecord) -> Bool {
        guard let owner = run.leaseOwner, owner != localRuns?.workerID else { return true }
        if let end = run.leaseExpiresAt, end < Date() { return true }
        return WorkerIdentity.isAlive(owner) == false
    }
}

/// What an engine in the same process adds to its client: the runs it drives are reached directly.
package protocol LocalRuns: AnyObject, Sendable {
    /// The engine's name in the leases it holds.
    var workerID: String { get }
    /// Whether the engine drives this run now.
    func drives(_ runID: String) -> Bool
    /// Hands the signals queued for runs driven here to them.
    func deliverSignals() async
    /// Waits for a run driven here to end; `nil` when it is not driven here (or ended meanwhile).
    func localOutcome(of runID: String) async throws -> RunOutcome?
    /// Whether a registered workflow names its signal types (so that signals are checked before sending).
    var checksSignalTypes: Bool { get }
    /// Checks a signal's input against the type the run's workflow names for it.
    func checkSignal(_ run: RunRecord, name: String, json: Data) throws
    /// The signals an open run waits for, from a replay with the registered code; `nil` without it.
    func awaitedSignals(_ run: RunRecord, _ events: [HistoryEvent]) -> [String]?
    /// Answers a query with the registered code (from the live run, or a replay).
    func query(_ run: RunRecord, name: String) async throws -> Data
}

/// A weak reference, so that a client does not keep its engine alive.
private struct LocalRunsReference: @unchecked Sendable {
    // @unchecked: only read and written under the client's Mutex; the referenced type is Sendable.
    weak var runs: (any LocalRuns)?
}
