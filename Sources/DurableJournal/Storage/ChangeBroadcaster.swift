import Synchronization

/// Fans one backend's change notices out to every ``Journal/changes()`` sequence.
///
/// A backend calls ``notify()`` when it notices a commit (its own, or another process's); each
/// subscriber's sequence then yields once, merged with notices it has not read yet. `activity` is
/// told when the first subscriber arrives and the last one leaves, so that a backend watches for
/// other processes' commits only while someone waits (it is handed the broadcaster to notify).
package final class ChangeBroadcaster: Sendable {
    private struct State {
        var nextID = 0
        var subscribers: [Int: AsyncStream<Void>.Continuation] = [:]
    }

    private let state = Mutex(State())
    private let activity: @Sendable (_ broadcaster: ChangeBroadcaster, _ active: Bool) -> Void

    package init(activity: @escaping @Sendable (_ broadcaster: ChangeBroadcaster, _ active: Bool) -> Void = { _, _ in }) {
        self.activity = activity
    }

    /// A new sequence; it yields once at once.
    package func subscribe() -> JournalChanges {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        continuation.yield()
        let (id, first) = state.withLock { state in
            state.nextID += 1
            state.subscribers[state.nextID] = continuation
            return (state.nextID, state.subscribers.count == 1)
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
        if first { activity(self, true) }
        return stream
    }

    /// Wakes every subscriber.
    package func notify() {
        let subscribers = state.withLock { Array($0.subscribers.values) }
        for subscriber in subscribers { subscriber.yield() }
    }

    /// Ends every sequence (the journal is closing).
    package func finish() {
        let subscribers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
        if !subscribers.isEmpty { activity(self, false) }
    }

    package var hasSubscribers: Bool { state.withLock { !$0.subscribers.isEmpty } }

    private func unsubscribe(_ id: Int) {
        let last = state.withLock { state in
            state.subscribers.removeValue(forKey: id) != nil && state.subscribers.isEmpty
        }
        if last { activity(self, false) }
    }
}
