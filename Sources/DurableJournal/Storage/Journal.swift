package import Foundation

/// The storage protocol every journal backend implements: the embedded SQLite file
/// (`DurableSQLite`) and PostgreSQL (`DurablePostgres`).
///
/// Everything above it (the engine, the command line, the test kit, the benchmarks) talks to a
/// journal through this protocol alone, in storage-neutral terms: runs are named by their run ID,
/// events by their index, signals by their number in the queue. How a backend stores them (row
/// keys, SQL, files, connections) stays inside it.
///
/// What a backend guarantees:
/// - **Atomic, ordered batches.** ``append(_:completion:)`` commits each ``JournalBatch`` whole or
///   not at all, in the order batches were handed over; batches that arrive together may share one
///   transaction (group commit), but one that fails is rolled back alone.
/// - **Fencing.** A batch of a run this journal's owner (``lease``) no longer holds writes nothing and
///   fails with a ``JournalError`` conflict; so does a batch whose first event index is not the run's
///   next one. Two workers can never both append to one run.
/// - **Compare-and-set takeover.** ``acquireLease(runID:expected:)`` succeeds only if the lease is
///   still as the caller last saw it.
/// - **Signals once.** A signal leaves the queue in the transaction of the batch that delivers it
///   (``JournalBatch/deliveredSignal``).
/// - **A change feed.** ``changes()`` yields soon after another process (or this one) commits, so
///   that a worker waits instead of polling.
package protocol Journal: AnyObject, Sendable {
    /// Where the journal is, for messages: a file path, or a URL without its password.
    var location: String { get }
    /// The lease this journal's writer takes on the runs it drives and checks before it writes one;
    /// `nil` for a journal opened only to read or to submit.
    var lease: LeaseSettings? { get }
    /// Transactions committed by ``append(_:completion:)`` since the journal was opened (batches per
    /// commit is how much group commit shares).
    var commitCount: Int { get }

    // MARK: Writing

    /// Queues a batch for the next group commit; `completion` runs once the transaction holding it
    /// committed (or failed). It may run on the caller's thread before this returns. Keep it short.
    /// A ``JournalBatch/barrier()`` writes nothing and completes once every batch handed over
    /// before it is committed.
    func append(_ batch: JournalBatch, completion: @escaping @Sendable (Result<Void, any Error>) -> Void)
    /// Writes a batch and returns once it is committed (a default implementation awaits
    /// ``append(_:completion:)``).
    func append(_ batch: JournalBatch) async throws

    /// Records the workflow types a worker can run, so that a client without code can check names.
    func registerWorkflowTypes(_ names: [String]) async throws
    /// The workflow types workers have registered, sorted.
    func knownWorkflowTypes() async throws -> [String]

    // MARK: Reading

    /// The run with this run ID, or else the newest run with this workflow ID.
    func findRun(_ id: String) async throws -> RunRecord?
    /// The open run with this workflow ID, if any.
    func openRun(workflowID: String) async throws -> RunRecord?
    /// Runs matching `filter`, newest first unless it says otherwise.
    func runs(_ filter: RunFilter) async throws -> [RunRecord]
    /// How many runs match `filter`, by status (its order and limit do not apply).
    func countRuns(_ filter: RunFilter) async throws -> [RunStatus: Int]
    /// The number of events of a run.
    func eventCount(_ run: RunRecord) async throws -> Int
    /// The run's events from `index` on, in order, payloads decoded and checked, however stored.
    /// - Throws: ``JournalError`` naming the run and the event when one is missing or corrupt.
    func history(_ run: RunRecord, from index: Int) async throws -> [HistoryEvent]

    // MARK: Signal inbox

    /// Queues a signal for an open run (by run ID, or the newest run of a workflow ID).
    /// - Parameter operation: names what was sent, in the error for a run that has ended.
    /// - Returns: the run it was queued for.
    /// - Throws: ``JournalError`` `runNotFound`, or `runClosed` when the run has ended.
    func sendSignal(toRun id: String, name: String, data: Data?, operation: String) async throws -> RunRecord
    /// Queues a signal as ``sendSignal(toRun:name:data:operation:)`` does and records the audit entry
    /// `record` makes for the run, with the target `target`, in one transaction synced whatever the
    /// journal's durability: unless the log holds an entry with that target whose action starts with
    /// `actionPrefix` already, and then nothing is written. Serialized with every audit append, from
    /// any process, so that of two calls with one target at the same time one queues its signal
    /// (`POST /v1/events`: an event ID carried out once).
    /// - Throws: as ``sendSignal(toRun:name:data:operation:)``; nothing is written then.
    func sendSignal(
        toRun id: String, name: String, data: Data?, target: String, unlessRecordedAs actionPrefix: String,
        recording record: @escaping @Sendable (RunRecord) -> AuditDraft
    ) async throws -> SignalOnce
    /// The signals not yet delivered, in the order they were sent.
    /// - Parameter include: which to return (by run ID and name); the others' payloads are not read.
    ///   A signal whose payload is unreadable is left out and stays queued.
    func queuedSignals(including include: @escaping @Sendable (_ runID: String, _ name: String) -> Bool)
        async throws -> [QueuedSignal]
    /// The names of a run's queued signals, oldest first.
    func queuedSignalNames(runID: String) async throws -> [String]
    /// Ends an open run that no worker drives as terminated: appends `WorkflowTerminated` after its
    /// last event, drops its queued signals and queues `notice` (for a parent), in one transaction,
    /// only if its lease is still `expected`.
    /// - Returns: whether the run was terminated here.
    func terminateRun(_ runID: String, reason: String, expected: RunLease, notice: RunNotice?) async throws -> Bool

    // MARK: Leases

    /// Claims up to `limit` pending runs of `workflowTypes` for this journal's owner, oldest first, in
    /// one statement: each becomes running and leased here. Runs another worker is claiming at the same
    /// moment are skipped, not waited for, so workers claiming together each get different runs.
    /// - Returns: the runs claimed, as they are now.
    func claimPendingRuns(workflowTypes: [String], limit: Int) async throws -> [RunRecord]
    /// Takes the lease of an open run for this journal's owner if it is still `expected`.
    /// - Returns: whether this owner now holds it (always `true` for a journal without ``lease``).
    func acquireLease(runID: String, expected: RunLease) async throws -> Bool
    /// Starts the chain of renewals, before this owner takes its first lease.
    func beginLeaseRenewals()
    /// Extends every lease this owner holds. - Returns: how many it holds.
    @discardableResult
    func renewLeases() async throws -> Int
    /// Whether a renewal came late, so that runs driven here may have been taken over.
    var leaseChainBroken: Bool { get }
    /// The IDs of the open runs leased to this journal's owner (none without ``lease``).
    func runsLeasedHere() async throws -> [String]
    /// The lease holder (nil: none) and status of each of these runs that exists.
    func leases(ofRuns runIDs: [String]) async throws -> [String: (owner: String?, status: RunStatus)]
    /// Gives up every lease of this owner (it is stopping): others take its runs over at once.
    func releaseLeases() async throws
    /// Gives up this owner's lease on one run.
    func releaseLease(runID: String) async throws
    /// The owners holding leases on running runs, with how many each holds.
    func leaseOwners() async throws -> [String: Int]
    /// Running runs whose lease is free, expired, or held by one of `deadOwners`: at most `limit`,
    /// oldest first, found without reading every running run (a journal may hold very many that are
    /// leased and live). Runs recorded as waiting (``JournalBatch/Wake``) are not among them: they are
    /// woken when due or signalled (``dueRuns(before:limit:)``, ``waitingRunsWithSignals(limit:)``).
    func runsToTakeOver(deadOwners: [String], limit: Int) async throws -> [RunRecord]

    // MARK: Due-time index

    /// Open runs that need a driver: held ones, and running ones not recorded as waiting (an activity
    /// in flight, a start not yet activated, a run written before the due-time index). A waiting run
    /// (``JournalBatch/Wake/waiting(until:)``) is left out: it is woken by ``dueRuns(before:limit:)``
    /// or ``waitingRunsWithSignals(limit:)``. Runs with an activity in flight come first, then oldest first.
    func runsToResume() async throws -> [RunRecord]
    /// Running runs recorded as waiting whose earliest timer is due at or before `date`, earliest
    /// first, at most `limit` (an index range, however many runs wait). Runs whose lease this
    /// journal's owner holds (live in its worker, which has their timers) are left out.
    func dueRuns(before date: Date, limit: Int) async throws -> [RunRecord]
    /// The earliest due time after `date` among running runs recorded as waiting, but those whose
    /// lease this journal's owner holds; `nil` when none has a timer.
    func nextWake(after date: Date) async throws -> Date?
    /// Whether any running run is recorded as waiting (an index probe).
    func hasWaitingRuns() async throws -> Bool
    /// Running runs recorded as waiting that have queued signals (a signal, a child's outcome, a
    /// cancellation or termination request), at most `limit`, in the order the oldest signal came.
    func waitingRunsWithSignals(limit: Int) async throws -> [RunRecord]

    // MARK: Change feed

    /// Yields soon after anything is committed to the journal by any process (a submission, a
    /// signal, a run's progress); consecutive changes may be merged into one element. A new sequence
    /// yields once at once, so that a waiter first looks at what is there.
    func changes() -> JournalChanges

    // MARK: Maintenance

    /// Sizes, runs by status, events and payload compression.
    func stats() async throws -> JournalStats
    /// Checks the storage's own integrity and every run: event indexes without gaps, closed runs
    /// ending with a closing event, payloads readable, signals for existing runs.
    func check(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> JournalCheckReport
    /// Writes a consistent copy of the journal to `destination` (a new file), while workers write.
    /// - Returns: the copy's size in bytes.
    func backup(to destination: String) async throws -> Int64
    /// Deletes closed runs that closed before `cutoff` (all closed statuses, or only `statuses`),
    /// in small transactions; never an open run.
    /// - Returns: the runs and events deleted (or, with `dryRun`, that would be).
    func deleteClosedRuns(
        closedBefore cutoff: Date, statuses: [RunStatus]?, dryRun: Bool, progress: @escaping @Sendable (Int) -> Void
    ) async throws -> (runs: Int, events: Int)
    /// Packs closed runs' histories into compressed blocks and gives freed space back.
    func compact(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> CompactionReport
    /// The durability the writer really commits with, read back from the storage (SQLite: the writer
    /// connection's `PRAGMA synchronous`; PostgreSQL: `synchronous_commit` in a write transaction), so
    /// that a benchmark can show its figures are at the durability it claims.
    func effectiveDurability() async throws -> Durability
    /// Moves buffered writes into the main storage (SQLite: a WAL checkpoint); a no-op where there
    /// is nothing to move.
    func checkpoint() async throws
    /// Checks that the journal's storage is still what this process opened (SQLite: the file not
    /// replaced and with one name, its `-wal` and `-shm` files not deleted or replaced); a worker
    /// calls it on every takeover pass. Nothing to check elsewhere.
    /// - Throws: ``JournalError`` `filesChanged`: write no more (a worker stops).
    func checkFiles() throws

    // MARK: Audit log

    /// Appends an entry to the journal's append-only audit log and returns it once it is committed,
    /// at full durability whatever the journal's (it is not a group-commit batch): numbered one past
    /// the last entry, timed now, its fields clipped (``AuditDraft/clipped``) and chained
    /// (``AuditChain``). Appends are serialized across processes, so that the chain is one line.
    ///
    /// The storage refuses to change or delete an entry (triggers), and no maintenance (prune,
    /// compact, reset) touches the log; `journal copy` appends the source's entries to the
    /// destination's with ``importAudit(_:)``.
    func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry
    /// Audit entries in order of ``AuditEntry/seq``, at most `limit`: oldest first, those after
    /// `cursor` (from the first when `nil`); or, with `newestFirst`, newest first, those before
    /// `cursor` (from the last when `nil`). Pass the last seq of a page as the next page's `cursor`.
    /// - Throws: ``JournalError`` `damaged` naming the entry when a stored one cannot be read (SQLite:
    ///   or does not match its row checksum); the hash chain is ``check(progress:)``'s to verify.
    func auditEntries(after cursor: Int64?, limit: Int, newestFirst: Bool) async throws -> [AuditEntry]
    /// The first `limit` audit entries (oldest first) whose target is `target` (indexed): what was
    /// done to one run, or whether an event ID was handled already.
    func auditEntries(target: String, limit: Int) async throws -> [AuditEntry]

    // MARK: Copying

    /// Writes one run exactly as another journal holds it: its record (without a lease), all its
    /// events and its queued signals, in one transaction (`durable journal copy`).
    /// - Throws: ``JournalError`` when a run with the same run ID exists here.
    func importRun(_ run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal]) async throws

    /// Appends entries of another journal's audit log as they are there (numbers, times, fields and
    /// hashes), in one transaction synced whatever the journal's durability, serialized with
    /// ``appendAudit(_:)`` (`durable journal copy`). They must continue this log: the first numbered
    /// one past its last entry and chained from that entry's hash, each next one from the one before
    /// (``AuditChain/checkContinuation(_:after:)``), so that the log stays one verifiable chain.
    /// - Throws: ``JournalError`` naming the first entry that does not follow; nothing is written.
    func importAudit(_ entries: [AuditEntry]) async throws

    /// Terminates an open run and records another in its place, in one transaction: what a reset of
    /// an open run no worker drives writes, so that a crash leaves both or neither. The new run is
    /// recorded as ``importRun(_:events:signals:)`` records one (a `running` run without a lease is
    /// taken over by the next worker that looks).
    /// - Returns: `false`, with nothing written, when the run to end is closed or its lease is not
    ///   `termination.expected`.
    func replaceRun(_ termination: RunTermination, with run: RunRecord, events: [HistoryEvent], signals: [QueuedSignal])
        async throws -> Bool

    /// Releases connections and stops background work; the journal is unusable afterwards.
    func close() async
}

extension Journal {
    package func checkFiles() throws {}

    package func append(_ batch: JournalBatch) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            append(batch) { continuation.resume(with: $0) }
        }
    }

    package func history(_ run: RunRecord) async throws -> [HistoryEvent] { try await history(run, from: 0) }

    @discardableResult
    package func sendSignal(toRun id: String, name: String, data: Data?) async throws -> RunRecord {
        try await sendSignal(toRun: id, name: name, data: data, operation: "signals")
    }

    package func queuedSignals() async throws -> [QueuedSignal] { try await queuedSignals(including: { _, _ in true }) }

    package func runs(statuses: [RunStatus]? = nil, limit: Int? = nil, oldestFirst: Bool = false) async throws -> [RunRecord] {
        try await runs(RunFilter(statuses: statuses, oldestFirst: oldestFirst, limit: limit))
    }

    package func check() async throws -> JournalCheckReport { try await check(progress: { _, _ in }) }

    package func auditEntries(after cursor: Int64? = nil, limit: Int) async throws -> [AuditEntry] {
        try await auditEntries(after: cursor, limit: limit, newestFirst: false)
    }

    package func compact() async throws -> CompactionReport { try await compact(progress: { _, _ in }) }

    package func deleteClosedRuns(
        closedBefore cutoff: Date, statuses: [RunStatus]? = nil, dryRun: Bool = false
    ) async throws -> (runs: Int, events: Int) {
        try await deleteClosedRuns(closedBefore: cutoff, statuses: statuses, dryRun: dryRun, progress: { _ in })
    }

    package func runsToTakeOver(deadOwners: [String]) async throws -> [RunRecord] {
        try await runsToTakeOver(deadOwners: deadOwners, limit: 256)
    }
}

/// What ``Journal/changes()`` yields: one element per noticed change (merged while nobody reads).
package typealias JournalChanges = AsyncStream<Void>

/// A signal waiting in a run's inbox.
package struct QueuedSignal: Sendable, Equatable {
    /// The signal's number in the journal's queue: signals sent later have larger numbers.
    package var id: Int64
    package var runID: String
    package var name: String
    package var data: Data?
    package var sentAt: Date

    package init(id: Int64, runID: String, name: String, data: Data?, sentAt: Date) {
        self.id = id
        self.runID = runID
        self.name = name
        self.data = data
        self.sentAt = sentAt
    }
}

/// A message for another run, queued in its inbox in the transaction that writes the batch carrying
/// it: how a child tells its parent it has ended.
package struct RunNotice: Sendable, Equatable {
    /// The run to tell (run ID). Nothing is queued if that run has ended.
    package var runID: String
    /// The inbox name (the engine's reserved `durable.` names).
    package var name: String
    /// The message, raw (the journal frames it).
    package var payload: Data
    /// The message as stored, framed and encrypted by the journal's payload keys before it is written
    /// (``JournalPayloads/seal(_:)``); `nil`: framed in clear when written.
    package var frame: Data?

    package init(runID: String, name: String, payload: Data) {
        self.runID = runID
        self.name = name
        self.payload = payload
    }
}

/// What ``Journal/sendSignal(toRun:name:data:target:unlessRecordedAs:recording:)`` did.
package enum SignalOnce: Sendable, Equatable {
    /// The signal was queued for `run`, and `entry` recorded in the same transaction.
    case sent(run: RunRecord, entry: AuditEntry)
    /// The log held this entry for the target already: nothing was written.
    case recordedBefore(AuditEntry)
}
