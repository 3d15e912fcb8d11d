package import Foundation
import Synchronization

/// The run a batch belongs to, shared by all the batches of one driver of the run.
///
/// The engine knows a run by its run ID only. A backend may keep what it needs to find the run
/// quickly in ``storageKey`` (SQLite: the row's key, set when the run is first read or written);
/// the engine never reads or sets it.
package final class RunRef: Sendable {
    package let runID: String
    private let storedKey: Mutex<Int64?>

    package init(runID: String) {
        self.runID = runID
        self.storedKey = Mutex(nil)
    }

    /// The backend's own key for the run, once it has one; opaque above the storage layer.
    package var storageKey: Int64? {
        get { storedKey.withLock { $0 } }
        set { storedKey.withLock { $0 = newValue } }
    }
}

/// An event ready to be written: its payloads already framed by ``PayloadCodec`` (and encrypted by the
/// journal's ``JournalPayloads`` when it has a current key).
package struct EventDraft: Sendable {
    package var index: Int
    package var kind: EventKind
    package var time: Date
    package var seq: Int
    package var attempt: Int
    package var name: String?
    /// The payload's frame, or a reference to ``outOfLine`` (``PayloadCodec/isReference(_:)``).
    package var data: Data?
    package var meta: Data?
    /// The payload stored out of line that ``data`` refers to, which the writer stores in the same
    /// transaction as the event (``JournalPayloads/seal(_:)`` moves a large payload there).
    package var outOfLine: OutOfLinePayload?

    /// Frames the raw payloads (an encrypted one is kept as stored); call off the writer thread.
    package init(_ event: HistoryEvent) {
        index = event.index
        kind = event.kind
        time = event.time
        seq = event.seq
        attempt = event.attempt
        name = event.name
        data = event.encryptedData?.frame ?? event.data.map(PayloadCodec.encode)
        meta = event.meta
    }
}

/// Everything one activation (or one submission) writes, committed atomically with the other
/// batches of the same group commit.
package struct JournalBatch: Sendable {
    package struct NewRun: Sendable {
        package var workflowID: String
        package var workflowType: String
        package var seed: UInt64
        package var status: RunStatus
        package var createdAt: Date

        package init(workflowID: String, workflowType: String, seed: UInt64, status: RunStatus, createdAt: Date) {
            self.workflowID = workflowID
            self.workflowType = workflowType
            self.seed = seed
            self.status = status
            self.createdAt = createdAt
        }
    }

    /// What a run waits for once a batch is committed: the due-time index (`wake_at`) that lets a
    /// worker drop an idle run from memory and wake it by a query instead of a timer of its own.
    package enum Wake: Sendable, Equatable {
        /// Work is in flight (an activity attempt, a retry, a start not yet activated): the run needs a
        /// driver, and a worker that finds it without one resumes it at once.
        case busy
        /// Nothing is in flight: the run waits for a signal, a child's outcome or a cancellation, and
        /// for its earliest timer at `until` (`nil`: no timer).
        case waiting(until: Date?)

        /// The stored value: NULL while busy, the due time in milliseconds, or `Int64.max` for none.
        package var storedMillis: Int64? {
            switch self {
            case .busy: nil
            case .waiting(let until): until?.journalMillis ?? Int64.max
            }
        }

        /// The value a stored `wake_at` stands for.
        package init(storedMillis: Int64?) {
            switch storedMillis {
            case nil: self = .busy
            case Int64.max?: self = .waiting(until: nil)
            case let millis?: self = .waiting(until: Date(journalMillis: millis))
            }
        }
    }

    package struct StatusChange: Sendable {
        package var status: RunStatus
        package var error: String?

        package init(status: RunStatus, error: String? = nil) {
            self.status = status
            self.error = error
        }
    }

    package var run: RunRef
    /// Insert the run's row first (a new run). Fails with ``JournalError`` `workflowIDInUse` when an
    /// open run already has the workflow ID; the batch then writes nothing.
    package var newRun: NewRun?
    package var events: [EventDraft]
    package var statusChange: StatusChange?
    /// The run this batch ends continues as a new run of the same workflow ID: its row (pending, for a
    /// worker to claim) and `WorkflowStarted` event are written in the same transaction.
    package var continuation: (runID: String, run: NewRun, started: EventDraft)?
    /// Child runs this batch starts: rows (pending, for a worker to claim) and `WorkflowStarted` events.
    package var childRuns: [(runID: String, run: NewRun, started: EventDraft)] = []
    /// A message for another run (the parent of a child this batch ends), queued in its inbox in the
    /// same transaction if that run is still open.
    package var notice: RunNotice?
    /// A signal this batch delivers (its `SignalReceived` event is among `events`): its row leaves the
    /// `signals` table in the same transaction.
    package var deliveredSignal: Int64?
    /// An audit entry for what the batch does (an HTTP start's), appended in the same transaction, which
    /// is then synced whatever the journal's durability: the entry is written if and only if the batch
    /// is. A batch that fails appends nothing.
    package var audit: AuditDraft?
    /// The run's wait after this batch (``Wake``), written to its row; `nil`: unchanged.
    package var wake: Wake?
    /// Gives up this journal owner's lease on the run (a worker evicting the idle run from memory):
    /// any worker may then wake it. Nothing happens if the lease is no longer this owner's.
    package var releasesLease = false

    /// A batch that writes nothing: it completes once every batch handed over before it is
    /// committed (a shutting-down worker waits for its writes with it).
    package static func barrier() -> JournalBatch { JournalBatch(run: RunRef(runID: "")) }

    /// Whether an event of the batch (not of the runs it starts) moved its payload out of line.
    package var storesOutOfLine: Bool { events.contains { $0.outOfLine != nil } }

    /// Whether the batch writes nothing (a ``barrier()``).
    package var isEmpty: Bool {
        newRun == nil && events.isEmpty && statusChange == nil && continuation == nil && childRuns.isEmpty
            && notice == nil && deliveredSignal == nil && wake == nil && !releasesLease
    }

    package init(
        run: RunRef, newRun: NewRun? = nil, events: [EventDraft] = [],
        statusChange: StatusChange? = nil, deliveredSignal: Int64? = nil
    ) {
        self.run = run
        self.newRun = newRun
        self.events = events
        self.statusChange = statusChange
        self.deliveredSignal = deliveredSignal
    }
}
