/// The whole life of one slot pool, as a value: which slots exist and in what state, which attempts
/// wait for one, which factories are warming, which closes are under way, and whether the pool runs,
/// shuts down or has shut down.
///
/// Every event (an attempt asks for a slot or gives one back, a factory ends, a timer fires, a
/// resource closes or breaks, the worker stops) is a mutating method that returns what the caller must
/// do (``Action``): hand a slot over, warm one, close one, cancel a factory, refuse an attempt, resume a
/// shutdown. The machine does no I/O and knows no time but what it is told; ``SlotPool`` carries the
/// actions out, outside its lock. Resources and waiters are generic, so that tests can drive the
/// machine with plain labels:
///
/// ```swift
/// var pool = PoolStateMachine<String, String, String, String, String>(
///     options: .warm(min: 0, max: 1), closesResources: true)
/// pool.acquire(ticket: 1, "attempt")      // [.warmFor(slot: 1, "attempt")]
/// pool.startWarmUp(slot: 1, "warm-up")    // [.startFactory(slot: 1, timeout: .seconds(120))]
/// pool.factoryStarted(slot: 1, factory: "task", timer: 7)  // []
/// pool.factoryFinished(slot: 1, .success("model"), now: 0)
/// // [.cancelTimer(7), .watch(slot: 1, "model"), .endWarmUp("warm-up", .ready("model"))]
/// ```
///
/// The pool is ``Lifecycle/running`` until ``stopReplacing()`` (``Lifecycle/stopping``) or
/// ``shutdown(_:)`` (``Lifecycle/shuttingDown(waiters:)``, then ``Lifecycle/shutDown`` once no close
/// and no factory is left to wait for). The shutdown's part is in `PoolStateMachine+Shutdown.swift`, the
/// factories' in `PoolStateMachine+WarmUp.swift`.
package struct PoolStateMachine<
    Resource: Sendable, Waiter: Sendable, WarmWaiter: Sendable, Factory: Sendable, ShutdownWaiter: Sendable
>: Sendable {
    package let options: PoolOptions
    /// Whether a resource must be closed before its slot's place is free (a process must exit); if
    /// not, a slot is gone as soon as it is closed and a shutdown does not wait for factories.
    package let closesResources: Bool
    package internal(set) var slots: [Int: Slot] = [:]
    package internal(set) var lifecycle: Lifecycle = .running
    /// Why the last warm-up failed, until a slot warms.
    package internal(set) var lastWarmUpFailure: String?
    /// Slots busy or warming for an attempt (the `durable_pool_slots_in_use` gauge).
    package private(set) var inUse = 0
    /// Idle slots, the most recently used last (taken first, so the others age out).
    var idle: [Int] = []
    /// Tickets of the attempts waiting for a slot, in arrival order (`head` is the first still waiting),
    /// and their waiters.
    var queue: [Int] = []
    var head = 0
    var waiting: [Int: Waiter] = [:]
    private var nextSlot = 1
    /// Slots in the `closing` and in the `warming` state.
    private(set) var closingCount = 0
    private(set) var warmingCount = 0
    /// Factories running or abandoned, by the slot they warm (slot numbers are never reused).
    var factories: [Int: WarmUp] = [:]
    /// Resources being closed that belong to no slot (made after their warm-up timed out), by the slot
    /// they were made for.
    var lateCloses: Set<Int> = []
    private var started = false
    /// An eviction check is scheduled (``Action/scheduleEvictionCheck(after:)``).
    private var evictionScheduled = false

    package init(options: PoolOptions, closesResources: Bool) {
        self.options = options
        self.closesResources = closesResources
    }

    // MARK: - Queries

    package var idleCount: Int { idle.count }

    /// Slots warming, idle or busy (not those being closed).
    package var liveCount: Int { slots.count - closingCount }

    /// Attempts waiting for a slot.
    package var waitingCount: Int { queue.count - head }

    var isRunning: Bool {
        if case .running = lifecycle { true } else { false }
    }

    // MARK: - Attempts

    /// The slots to warm when the worker starts (once, and only while the pool runs).
    package mutating func start() -> [Action] {
        guard !started, isRunning else { return [] }
        started = true
        return rebalance(restoreMinimum: true)
    }

    /// An attempt asks for a slot: an idle one (warm), a new one (cold), or a place in the queue; once
    /// the pool stopped, none.
    /// - Returns: `handOver`, `warmFor` or `refuse` for this waiter, or nothing when it waits.
    package mutating func acquire(ticket: Int, _ waiter: Waiter) -> [Action] {
        guard isRunning else { return [.refuse(waiter)] }
        if head == queue.count {
            if let taken = takeIdle() {
                setState(of: taken.slot, to: .busy(taken.resource))
                return [.handOver(slot: taken.slot, taken.resource, ticket: ticket, waiter)]
            }
            if slots.count < options.maximumSlots {
                return [.warmFor(slot: newSlot(.warming(owned: true)), waiter)]
            }
        }
        queue.append(ticket)
        waiting[ticket] = waiter
        return []
    }

    /// Takes an attempt out of the queue (it timed out or was cancelled).
    /// - Returns: `false` when the ticket was not waiting (it was handed a slot or refused already).
    package mutating func cancel(ticket: Int) -> Bool {
        guard waiting.removeValue(forKey: ticket) != nil, let index = queue[head...].firstIndex(of: ticket) else {
            return false
        }
        queue.remove(at: index)
        compactQueue()
        return true
    }

    /// An attempt is done with its slot. The slot is kept idle, or closed: when `retire` is set, when
    /// it reached `maximumUses`, or when the pool has stopped.
    /// - Parameter retire: replace the slot (its attempt failed or timed out, or it is broken).
    package mutating func release(slot: Int, retire: Bool, now: UInt64) -> [Action] {
        guard case .busy(let resource) = slots[slot]?.state else { return rebalance(restoreMinimum: true) }
        slots[slot]?.uses += 1
        let uses = slots[slot]?.uses ?? 0
        var actions: [Action] = []
        if !isRunning {
            actions = startClosing(slot, resource, .stopped)
        } else if retire || options.maximumUses.map({ uses >= $0 }) == true {
            actions = startClosing(slot, resource, .recycled)
        } else {
            setState(of: slot, to: .idle(resource, since: now))
            idle.append(slot)
        }
        actions += rebalance(restoreMinimum: true)
        if isRunning, let timeout = options.idleTimeout, !evictionScheduled, !idle.isEmpty,
            liveCount > options.minimumSlots
        {
            evictionScheduled = true
            actions.append(.scheduleEvictionCheck(after: timeout))
        }
        return actions
    }

    // MARK: - Idle slots

    /// Closes slots above the minimum that have been idle for the pool's idle timeout, and schedules the
    /// next check while idle slots above the minimum remain (and the pool runs).
    package mutating func evictIdle(now: UInt64) -> [Action] {
        evictionScheduled = false
        guard let timeout = options.idleTimeout else { return [] }
        let limit = UInt64(max(0, timeout.milliseconds)) * 1_000_000
        var live = liveCount
        var expired: [(slot: Int, resource: Resource)] = []
        var kept: [Int] = []
        var next: UInt64?
        // Oldest idle slots first (the front of `idle`).
        for slot in idle {
            guard case .idle(let resource, let since) = slots[slot]?.state else { continue }
            if live > options.minimumSlots && now &- since >= limit {
                expired.append((slot, resource))
                live -= 1
            } else {
                kept.append(slot)
                if live > options.minimumSlots { next = min(next ?? .max, since &+ limit) }
            }
        }
        idle = kept
        var actions = expired.flatMap { startClosing($0.slot, $0.resource, .evicted) }
        if let next, isRunning {
            evictionScheduled = true
            actions.append(.scheduleEvictionCheck(after: .nanoseconds(Int64(next &- min(next, now)) + 1_000_000)))
        }
        return actions
    }

    /// An idle slot's resource broke (its process died): close it, so that the minimum is restored now
    /// rather than when an attempt next needs the slot. A busy slot is left to its attempt, which fails
    /// and releases it; once the pool stopped, the shutdown closes it.
    package mutating func retireIdle(slot: Int) -> [Action] {
        guard isRunning, let index = idle.firstIndex(of: slot), case .idle(let resource, _) = slots[slot]?.state
        else { return [] }
        idle.remove(at: index)
        return startClosing(slot, resource, .recycled)
    }

    // MARK: - Internal

    /// Puts a slot in a state (`nil` removes it), keeping the counts in step.
    mutating func setState(of slot: Int, to state: SlotState?) {
        if let old = slots[slot]?.state { count(old, -1) }
        guard let state else {
            slots[slot] = nil
            return
        }
        slots[slot, default: Slot(state: state)].state = state
        count(state, +1)
    }

    private mutating func count(_ state: SlotState, _ change: Int) {
        switch state {
        case .warming(let owned):
            warmingCount += change
            if owned { inUse += change }
        case .busy: inUse += change
        case .closing: closingCount += change
        case .idle: break
        }
    }

    private mutating func newSlot(_ state: SlotState) -> Int {
        let slot = nextSlot
        nextSlot += 1
        setState(of: slot, to: state)
        return slot
    }

    private mutating func takeIdle() -> (slot: Int, resource: Resource)? {
        while let slot = idle.popLast() {
            if case .idle(let resource, _) = slots[slot]?.state { return (slot, resource) }
        }
        return nil
    }

    /// Gives idle or new slots to waiting attempts, then warms spares up to the minimum; nothing once
    /// the pool stopped.
    mutating func rebalance(restoreMinimum: Bool) -> [Action] {
        guard isRunning else { return [] }
        var actions: [Action] = []
        while head < queue.count {
            let ticket = queue[head]
            guard let waiter = waiting[ticket] else {
                head += 1
                continue
            }
            if let taken = takeIdle() {
                waiting[ticket] = nil
                setState(of: taken.slot, to: .busy(taken.resource))
                actions.append(.handOver(slot: taken.slot, taken.resource, ticket: ticket, waiter))
            } else if slots.count < options.maximumSlots {
                waiting[ticket] = nil
                actions.append(.warmFor(slot: newSlot(.warming(owned: true)), waiter))
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
