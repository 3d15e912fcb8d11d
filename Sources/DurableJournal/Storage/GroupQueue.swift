import Synchronization

/// The queue of a writer with group commit: what arrives while one group is being written waits, and
/// goes in the next group. One flush at a time drains it: the ``enqueue(_:)`` that finds no flush
/// running starts one, and the flush takes group after group until ``nextGroup()`` finds none left.
package final class GroupQueue<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var flushing = false
    }

    private let state = Mutex(State())

    package init() {}

    /// Queues `item`; `true` when no flush was running, so the caller must start one.
    package func enqueue(_ item: Item) -> Bool {
        state.withLock { state in
            state.items.append(item)
            if state.flushing { return false }
            state.flushing = true
            return true
        }
    }

    /// Everything queued, in arrival order, for the next group; empty when nothing is, which ends the
    /// flush (the next ``enqueue(_:)`` starts another).
    package func nextGroup() -> [Item] {
        state.withLock { state in
            let group = state.items
            state.items.removeAll(keepingCapacity: true)
            if group.isEmpty { state.flushing = false }
            return group
        }
    }

    /// Ends the flush when nothing is queued; `true` when items wait, and the flush goes on (for a
    /// flush that hands the rest over to another thread).
    package func hasMore() -> Bool {
        state.withLock { state in
            if state.items.isEmpty { state.flushing = false }
            return !state.items.isEmpty
        }
    }
}
