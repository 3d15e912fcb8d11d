import Dispatch
import DurableJournal
import Synchronization

/// Appends audit entries with group commit: the entries that arrive while one transaction is being
/// written and synced go together in the next one, so that concurrent callers (the HTTP server's
/// requests) share an fsync instead of each waiting in line for its own. Every caller still resumes
/// only once the transaction holding its entry has committed, synced; a transaction that fails fails
/// every entry in it (none of them is recorded).
///
/// The transactions run on a thread of the writer's own, never on a caller's: a cooperative thread
/// serving requests is not held while the disk syncs.
final class AuditGroupWriter: Sendable {
    /// Writes the drafts in order in one synced transaction and returns their entries, in that order.
    typealias Write = @Sendable ([AuditDraft]) throws -> [AuditEntry]

    private struct Waiter: Sendable {
        var draft: AuditDraft
        var continuation: CheckedContinuation<AuditEntry, any Error>
    }

    private let queue = GroupQueue<Waiter>()
    private let thread = DispatchQueue(label: "durable.journal.audit", qos: .userInitiated)
    private let commits = Atomic<Int>(0)

    /// Transactions committed so far (for tests and benchmarks: entries / commits = sharing).
    var commitCount: Int { commits.load(ordering: .relaxed) }

    /// Queues `draft` for the next transaction and returns its entry once that has committed.
    /// - Parameter write: what writes a group (the journal's); the call that finds the writer idle
    ///   starts the thread's round with it.
    func append(_ draft: AuditDraft, write: @escaping Write) async throws -> AuditEntry {
        try await withCheckedThrowingContinuation { continuation in
            if queue.enqueue(Waiter(draft: draft, continuation: continuation)) { thread.async { self.flush(write) } }
        }
    }

    /// Writes what is queued, group after group, until the queue is empty.
    private func flush(_ write: Write) {
        while true {
            let group = queue.nextGroup()
            if group.isEmpty { return }
            do {
                let entries = try write(group.map(\.draft))
                precondition(entries.count == group.count, "an audit group wrote \(entries.count) of \(group.count) entries")
                commits.add(1, ordering: .relaxed)
                for (waiter, entry) in zip(group, entries) { waiter.continuation.resume(returning: entry) }
            } catch {
                for waiter in group { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
