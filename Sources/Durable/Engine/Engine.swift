public import DurableJournal
public import Foundation
import Synchronization

/// How a run ended.
public enum RunOutcome: Sendable, Equatable {
    /// The workflow returned; its output as JSON.
    case completed(Data)
    case failed(FailureInfo)
}

/// The in-process durable execution engine: registers workflows and activities, starts and drives
/// runs, journals every activation, and recovers open runs after a restart.
///
/// ```swift
/// let engine = try Engine(journal: .sqlite(path: "claims.sqlite"))
/// engine.register(ClaimIntake.self)
/// engine.register(ScoreFraud())
/// try await engine.recover()                       // continue runs a previous process left open
/// let run = try await engine.start(ClaimIntake.self, input: claim, id: "claim-1042")
/// let decision = try await run.result()
/// ```
public final class Engine: Sendable {
    package let journal: SQLiteJournal
    let registry = Mutex(Registry())
    /// Runs driven by this engine, by run ID.
    let drivers = Mutex(DriverTable())
    /// Callers of ``outcome(of:)`` waiting for runs driven here, by run ID.
    let outcomeWaiters = Mutex<[String: [CheckedContinuation<RunOutcome?, any Error>]]>([:])
    /// Running activity attempts, for shutdown to cancel (`nil` until the attempt's task exists).
    let activityTasks = Mutex<[Int: Task<Void, Never>?]>([:])
    let nextTaskID = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    let workerLock = Mutex<WorkerLock?>(nil)
    let closeObservers = Mutex<[@Sendable (String, RunOutcome) -> Void]>([])
    /// The first recovery pass (see ``recover()``), shared by whoever needs it first.
    let firstRecovery = Mutex<Task<RecoveryReport, any Error>?>(nil)
    /// Set once the first recovery pass has succeeded: starts then skip waiting for it.
    let hasRecovered = Atomic<Bool>(false)
    /// Start-to-close timeouts of running attempts.
    let timeouts = TimeoutScheduler()

    /// Opens (or creates) the journal.
    /// - Throws: ``JournalError`` when the file is not a journal, is from a newer format, or cannot be opened.
    public init(journal configuration: JournalConfiguration) throws {
        journal = try SQLiteJournal(configuration)
    }

    public var journalPath: String { journal.path }

    // MARK: - Registration

    /// Registers a workflow type under ``Workflow/name``.
    public func register<W: Workflow>(_ workflow: W.Type) {
        registry.withLock { $0.workflows[W.name] = WorkflowRegistration(W.self) }
    }

    /// Registers an activity implementation under ``Activity/name``.
    public func register<A: Activity>(_ activity: A) {
        registry.withLock { $0.activities[A.name] = ActivityRegistration(activity) }
    }

    /// The names of the registered workflow types, sorted.
    public var workflowTypes: [String] { registry.withLock { $0.workflowNames } }

    func workflowRegistration(_ name: String) -> WorkflowRegistration? {
        registry.withLock { $0.workflows[name] }
    }

    func activityRegistration(_ name: String) -> ActivityRegistration? {
        registry.withLock { $0.activities[name] }
    }

    /// Checks that `input` is valid JSON for a registered workflow type.
    public func validate(workflowType: String, input: Data) throws {
        guard let registration = workflowRegistration(workflowType) else {
            throw DurableError(.unknownWorkflowType(workflowType, known: workflowTypes))
        }
        try registration.validateInput(input)
    }

    /// Takes the journal's worker lock: this process drives its runs.
    func becomeWorker() throws {
        try workerLock.withLock { lock in
            if lock == nil {
                lock = try WorkerLock(journalPath: journal.path)
                try journal.registerWorkflowTypes(registry.withLock { $0.workflowNames })
            }
        }
    }

    /// Calls `observer` with the run ID and outcome of every run this engine drives to its end,
    /// on the journal writer's thread right after the closing commit. Keep it short.
    public func onRunClosed(_ observer: @escaping @Sendable (_ runID: String, _ outcome: RunOutcome) -> Void) {
        closeObservers.withLock { $0.append(observer) }
    }

    // MARK: - Shutdown

    /// Stops driving runs: cancels running activity attempts (they are retried after a restart) and
    /// waits until everything already handed to the journal is committed.
    public func shutdown() async {
        stopping.store(true, ordering: .sequentiallyConsistent)
        let tasks = activityTasks.withLock { tasks in
            defer { tasks.removeAll() }
            return tasks.values.compactMap { $0 }
        }
        for task in tasks { task.cancel() }
        let open = drivers.withLock { drivers in
            defer { drivers.removeAll() }
            return Array(drivers.values)
        }
        for driver in open { driver.terminate() }
        // A batch with nothing in it is committed after every batch queued before it.
        try? await journal.append(JournalBatch(run: RunRef(runID: "-", key: 0)))
        let waiters = outcomeWaiters.withLock { waiters in
            defer { waiters.removeAll() }
            return waiters.values.flatMap { $0 }
        }
        for waiter in waiters { waiter.resume(throwing: DurableError(.shuttingDown)) }
        workerLock.withLock { $0 = nil }
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }
}
