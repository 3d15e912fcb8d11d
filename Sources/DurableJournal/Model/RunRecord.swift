public import Foundation

/// Where a run stands.
public enum RunStatus: String, Sendable, CaseIterable, Codable {
    /// Submitted (for instance from the CLI) and not yet picked up by a worker.
    case pending
    /// Driven by a worker, or waiting for one after a crash.
    case running
    /// Stopped by the engine because replaying its history through the current code did not match
    /// (non-determinism) or the workflow code misused the engine. It is not failed: a worker with
    /// fixed code retries it on start.
    case held
    case completed
    case failed
    /// Ended by workflow code after a cancellation request (`durable cancel`).
    case cancelled
    /// Ended at once from outside (`durable terminate`), with a reason.
    case terminated
    /// Ended by continuing as a new run of the same workflow ID (``EventKind/workflowContinuedAsNew``).
    case continuedAsNew

    public var isOpen: Bool {
        switch self {
        case .pending, .running, .held: true
        case .completed, .failed, .cancelled, .terminated, .continuedAsNew: false
        }
    }
}

/// A run as the journal records it.
public struct RunRecord: Sendable, Equatable {
    public var runID: String
    public var workflowID: String
    public var workflowType: String
    public var status: RunStatus
    public var createdAt: Date
    public var updatedAt: Date
    public var closedAt: Date?
    /// Seed of the run's deterministic random generator.
    public var seed: UInt64
    /// Why the run failed or is held.
    public var error: String?
    /// The worker driving the run (`host/pid/start/engine`), while it holds the run's lease.
    public var leaseOwner: String?
    /// When the lease ends unless its owner renews it.
    public var leaseExpiresAt: Date?

    package init(
        runID: String, workflowID: String, workflowType: String, status: RunStatus,
        createdAt: Date, updatedAt: Date, closedAt: Date?, seed: UInt64, error: String?,
        leaseOwner: String? = nil, leaseExpiresAt: Date? = nil
    ) {
        self.runID = runID
        self.workflowID = workflowID
        self.workflowType = workflowType
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.closedAt = closedAt
        self.seed = seed
        self.error = error
        self.leaseOwner = leaseOwner
        self.leaseExpiresAt = leaseExpiresAt
    }
}

/// The worker identity and lease length a journal's writer uses.
package struct LeaseSettings: Sendable {
    package var owner: String
    package var durationMs: Int64

    package init(owner: String, durationMs: Int64) {
        self.owner = owner
        self.durationMs = durationMs
    }
}

/// A run's lease as last seen: compared before taking it over, so two workers cannot both take it.
package struct RunLease: Sendable, Equatable {
    package var owner: String?
    package var expiresAtMillis: Int64?

    package init(_ owner: String?, _ expiresAtMillis: Int64?) {
        self.owner = owner
        self.expiresAtMillis = expiresAtMillis
    }

    package init(of run: RunRecord) {
        self.init(run.leaseOwner, run.leaseExpiresAt?.journalMillis)
    }
}

extension RunRecord {
    /// A new run ID: a random (version 4) UUID in lowercase, from the system's generator (`getrandom`).
    /// Foundation's `UUID()` opened and read `/dev/urandom` for each one on Linux, about 1 % of the
    /// CPU of an HTTP start under load.
    package static func newRunID() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = (generator.next() as UInt64, generator.next() as UInt64)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = raw[6] & 0x0f | 0x40  // version 4
            raw[8] = raw[8] & 0x3f | 0x80  // the RFC 9562 variant
            let hex = raw.lowercaseHex.utf8
            var text = ""
            text.reserveCapacity(36)
            for (i, digit) in hex.enumerated() {
                if i == 8 || i == 12 || i == 16 || i == 20 { text.append("-") }
                text.unicodeScalars.append(Unicode.Scalar(digit))
            }
            return text
        }
    }
}
