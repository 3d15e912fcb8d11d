/// The bookkeeping of one pool, as a value: which slots exist, which are idle, who waits. Every
/// change returns the actions the caller must perform (warm a slot, hand one over, close one); the
/// state machine itself does no I/O and knows no time but what it is told.
package struct PoolStateMachine: Sendable {
    package enum SlotState: Sendable, Equatable {
        /// Being warmed; `owned` when an attempt waits for exactly this slot (a cold start).
        case warming(owned: Bool)
        case idle(since: UInt64)
        case busy
        /// Its resource is being closed (a process exiting); it still counts against the maximum, so
        /// that a replacement never runs beside it.
        case closing
    }

    package struct Slot: Sendable, Equatable {
        package var state: SlotState
        package var uses = 0
    }

    /// What the caller must do.
    package enum Action: Sendable, Equatable {
        /// Give this idle slot to the waiting ticket (a warm hit).
        case handOver(slot: Int, ticket: Int)
        /// Warm a new slot for the waiting ticket (a cold start).
        case warmFor(slot: Int, ticket: Int)
        /// Warm a new slot with no attempt waiting for it (to keep the minimum warm).
        case warmSpare(slot: Int)
        /// Close the slot's resource, then report ``PoolStateMachine/closed(slot:)``.
        case close(slot: Int)
    }

    package let options: PoolOptions
    package private(set) var slots: [Int: Slot] = [:]
    /// Idle slots, the most recently used last (taken first, so the others age out).
    private var idle: [Int] = []
    /// Tickets waiting for a slot, in arrival order (`head` is the first still in use).
    private var queue: [Int] = []
    private var head = 0
    private var nextSlot = 1
    /// Slots in the `closing` state.
    private var closingCount = 0

    package init(options: PoolOptions) {
        self.options = options
    }

    package var idleCount: Int { idle.count }

    /// Slots warming, idle or busy (not those being closed).
    package var liveCount: Int { slots.count - closingCount }

    /// Whether a slot is being warmed.
    package var isWarming: Bool {
        slots.values.contains { if case .warming = $0.state { true } else { false } }
    }

    /// The slots to warm when the worker starts.
    package mutating func start() -> [Action] { rebalance(restoreMinimum: true) }

    /// A ticket asks for a slot: an idle one (warm), a new one (cold), or a place in the queue.
    /// - Returns: `handOver` or `warmFor` for this ticket, or nothing when it waits.
    package mutating func acquire(ticket: Int) -> Action? {
        if head == queue.count, let slot = idle.popLast() {
            slots[slot]?.state = .busy
            return .handOver(slot: slot, ticket: ticket)
        }
        if head == queue.count, slots.count < options.maximumSlots {
            let slot = newSlot(.warming(owned: true))
            return .warmFor(slot: slot, ticket: ticket)
        }
        queue.append(ticket)
        return nil
    }

    /// Takes a ticket out of the queue (its attempt timed out or was cancelled).
    /// - Returns: `false` when the ticket was not waiting (it was handed a slot already).
    package mutating func cancel(ticket: Int) -> Bool {
        guard let index = queue[head...].firstIndex(of: ticket) else { return false }
        queue.remove(at: index)
        compactQueue()
        return true
    }

    /// A slot warmed for an attempt (``Action/warmFor(slot:ticket:)``) is ready and in use.
    package mutating func warmedForOwner(slot: Int) {
        slots[slot]?.state = .busy
    }

    /// A spare slot (``Action/warmSpare(slot:)``) is ready.
    package mutating func warmedSpare(slot: Int, now: UInt64) -> [Action] {
        slots[slot]?.state = .idle(since: now)
        idle.append(slot)
        return rebalance(restoreMinimum: false)
    }

    /// Warming a slot failed; it is gone. A failed spare is not replaced at once (a factory that keeps
    /// failing would otherwise loop); the next attempt to need it warms it again.
    package mutating func warmUpFailed(slot: Int) -> [Action] {
        let spare = slots[slot]?.state == .warming(owned: false)
        slots[slot] = nil
        return rebalance(restoreMinimum: !spare)
    }

    /// An attempt is done with its slot.
    /// - Parameter retire: replace the slot (its attempt failed or timed out, or it is broken).
    package mutating func release(slot: Int, retire: Bool, now: UInt64) -> [Action] {
        guard var state = slots[slot] else { return rebalance(restoreMinimum: true) }
        state.uses += 1
        var actions: [Action] = []
        if retire || options.maximumUses.map({ state.uses >= $0 }) == true {
            actions.append(startClosing(slot))
        } else {
            state.state = .idle(since: now)
            slots[slot] = state
            idle.append(slot)
        }
        return actions + rebalance(restoreMinimum: true)
    }

    /// Closes slots above the minimum that have been idle for the pool's idle timeout.
    /// - Returns: the slots to close and, if idle slots remain above the minimum, the earliest time
    ///   one of them can expire.
    package mutating func evictIdle(now: UInt64) -> (actions: [Action], nextCheck: UInt64?) {
        guard let timeout = options.idleTimeout else { return ([], nil) }
        let limit = UInt64(max(0, timeout.milliseconds)) * 1_000_000
        var actions: [Action] = []
        var next: UInt64?
        // Oldest idle slots first (the front of `idle`).
        var kept: [Int] = []
        for slot in idle {
            guard case .idle(let since) = slots[slot]?.state else { continue }
            if liveCount > options.minimumSlots && now &- since >= limit {
                actions.append(startClosing(slot))
            } else {
                kept.append(slot)
                if liveCount > options.minimumSlots { next = min(next ?? .max, since &+ limit) }
            }
        }
        idle = kept
        return (actions, next)
    }

    /// Closes every idle slot and forgets the queue (the worker is stopping).
    package mutating func drain() -> [Action] {
        let actions = idle.map { startClosing($0) }
        idle.removeAll()
        queue.removeAll()
        head = 0
        return actions
    }

    /// An idle slot's resource broke (its process died): close it, so that the minimum is restored
    /// now rather than when an attempt next needs the slot.
    package mutating func retireIdle(slot: Int) -> [Action] {
        guard let index = idle.firstIndex(of: slot) else { return [] }
        idle.remove(at: index)
        return [startClosing(slot)]
    }

    /// A slot's resource is closed: the slot is gone and its place can be filled.
    package mutating func closed(slot: Int) -> [Action] {
        guard slots[slot]?.state == .closing else { return [] }
        slots[slot] = nil
        closingCount -= 1
        return rebalance(restoreMinimum: true)
    }

    // MARK: - Private

    private mutating func startClosing(_ slot: Int) -> Action {
        slots[slot]?.state = .closing
        closingCount += 1
        return .close(slot: slot)
    }

    private mutating func newSlot(_ state: SlotState) -> Int {
        let slot = nextSlot
        nextSlot += 1
        slots[slot] = Slot(state: state)
        return slot
    }

    /// Gives idle or new slots to waiting tickets, then warms spares up to the minimum.
    private mutating func rebalance(restoreMinimum: Bool) -> [Action] {
        var actions: [Action] = []
        while head < queue.count {
            let ticket = queue[head]
            if let slot = idle.popLast() {
                slots[slot]?.state = .busy
                actions.append(.handOver(slot: slot, ticket: ticket))
            } else if slots.count < options.maximumSlots {
                actions.append(.warmFor(slot: newSlot(.warming(owned: true)), ticket: ticket))
            } else {
                break
            }
            head += 1
        }
        compactQueue()
        if restoreMinimum {
            while liveCount < options.minimumSlots && slots.count < options.maximumSlots {
                actions.append(.warmSpare(slot: newSlot(.warming(owned: false))))
            }
        }
        return actions
    }

    private mutating func compactQueue() {
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }
}
