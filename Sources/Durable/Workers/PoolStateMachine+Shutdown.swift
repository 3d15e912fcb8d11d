/// Stopping the pool, closing slots, and telling the shutdown when nothing is left under way.
///
/// A close is counted when it is decided (the slot turns `closing`, or a late resource enters
/// `lateCloses`), not when it starts, so that a shutdown asked for in between waits for it.
extension PoolStateMachine {
    /// Stops replacing slots, before the attempts that hold them are cancelled: from now on a slot
    /// released is closed (not kept, replaced or counted as recycled), nothing is warmed or handed over,
    /// and an attempt that asks is refused. ``shutdown(_:)`` does the rest.
    package mutating func stopReplacing() {
        if case .running = lifecycle { lifecycle = .stopping }
    }

    /// Stops the pool: waiting attempts are refused, factories cancelled and idle slots closed; busy
    /// slots are closed as their attempts release them. `waiter` is resumed
    /// (``Action/resumeShutdown(_:)``) once no close is under way and, where resources need closing, no
    /// slot is warming and no factory running (what it made would be closed after the shutdown
    /// returned); at once if nothing is left.
    package mutating func shutdown(_ waiter: ShutdownWaiter) -> [Action] {
        switch lifecycle {
        case .running, .stopping:
            lifecycle = .shuttingDown(waiters: [waiter])
            var actions: [Action] = queue[head...].compactMap { waiting[$0].map { .refuse($0) } }
            queue.removeAll()
            head = 0
            waiting.removeAll()
            for slot in factories.keys.sorted() {
                if let factory = factories[slot]?.factory { actions.append(.cancelFactory(factory)) }
            }
            let closing = idle
            idle.removeAll()
            for slot in closing {
                if case .idle(let resource, _) = slots[slot]?.state { actions += startClosing(slot, resource, .stopped) }
            }
            return actions + finishShutdownIfDone()
        case .shuttingDown(var waiters):
            lifecycle = .shutDown  // drops the case's reference, so that the append does not copy
            waiters.append(waiter)
            lifecycle = .shuttingDown(waiters: waiters)
            return finishShutdownIfDone()
        case .shutDown:
            return [.resumeShutdown([waiter])]
        }
    }

    /// A resource is closed (``Action/close(slot:_:_:)``): its slot is gone and its place can be filled.
    package mutating func closed(slot: Int) -> [Action] {
        if case .closing = slots[slot]?.state {
            setState(of: slot, to: nil)
            return rebalance(restoreMinimum: true) + finishShutdownIfDone()
        }
        if lateCloses.remove(slot) != nil { return finishShutdownIfDone() }
        return []  // closed once already
    }

    /// What a shutdown waits for: closes under way and, where resources need closing, slots warming
    /// and factories running.
    package var hasWorkUnderWay: Bool {
        closingCount > 0 || !lateCloses.isEmpty || (closesResources && (warmingCount > 0 || !factories.isEmpty))
    }

    // MARK: - Internal

    /// Takes the slot's resource out of service, counting its close (where resources need closing) with
    /// the decision; otherwise the slot is gone at once and its place refilled.
    mutating func startClosing(_ slot: Int, _ resource: Resource, _ reason: CloseReason) -> [Action] {
        guard closesResources else {
            setState(of: slot, to: nil)
            return [.close(slot: slot, resource, reason)] + rebalance(restoreMinimum: true)
        }
        setState(of: slot, to: .closing)
        workStarted()
        return [.close(slot: slot, resource, reason)]
    }

    /// A close began after the shutdown completed (a slot an attempt still held was released): a later
    /// shutdown waits for it.
    mutating func workStarted() {
        if case .shutDown = lifecycle { lifecycle = .shuttingDown(waiters: []) }
    }

    /// Completes a shutdown that has nothing left to wait for.
    mutating func finishShutdownIfDone() -> [Action] {
        guard case .shuttingDown(let waiters) = lifecycle, !hasWorkUnderWay else { return [] }
        lifecycle = .shutDown
        return waiters.isEmpty ? [] : [.resumeShutdown(waiters)]
    }
}
