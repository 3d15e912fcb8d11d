/// Warming slots: the factories, their warm-up timeouts, and what becomes of what they make.
///
/// A slot to warm (``PoolStateMachine/Action/warmFor(slot:_:)`` or
/// ``PoolStateMachine/Action/warmSpare(slot:)``) gets its factory through ``PoolStateMachine/startWarmUp(slot:_:)``.
/// The factory's end decides: the slot becomes busy (for its attempt) or idle (a spare); or it is gone
/// (the factory threw); or, once the pool stopped, what the factory made is closed. A factory that
/// outlives its warm-up timeout is abandoned: its waiter fails at once and what it makes later is
/// closed. Where resources need closing, a shutdown waits for every factory to end.
extension PoolStateMachine {
    /// The attempt given a cold slot, or the task warming a spare, asks for the slot's factory to run;
    /// `waiter` learns how the warm-up ended (``Action/endWarmUp(_:_:)``). Once the pool stopped, no
    /// factory runs: the slot is gone and the waiter told so at once.
    package mutating func startWarmUp(slot: Int, _ waiter: WarmWaiter) -> [Action] {
        guard case .warming = slots[slot]?.state, factories[slot] == nil else {
            return [.endWarmUp(waiter, .failed(reason: "slot \(slot) is not waiting to be warmed"))]
        }
        guard isRunning else {
            return slotFailedToWarm(slot) + [.endWarmUp(waiter, .poolStopped(warmed: false))] + finishShutdownIfDone()
        }
        factories[slot] = .running(waiter: waiter, factory: nil, timer: nil)
        return [.startFactory(slot: slot, timeout: options.warmUpTimeout)]
    }

    /// The factory's task and its warm-up timer (``Action/startFactory(slot:timeout:)``) exist. The
    /// factory may have finished already (the timer is then cancelled) or timed out; once the pool
    /// stopped, it is cancelled.
    package mutating func factoryStarted(slot: Int, factory: Factory, timer: Int?) -> [Action] {
        switch factories[slot] {
        case nil:
            return timer.map { [.cancelTimer($0)] } ?? []
        case .running(let waiter, _, _):
            factories[slot] = .running(waiter: waiter, factory: factory, timer: timer)
            return isRunning ? [] : [.cancelFactory(factory)]
        case .abandoned:
            factories[slot] = .abandoned(factory: factory)
            return [.cancelFactory(factory)]
        }
    }

    /// A factory ended with a resource or an error.
    ///
    /// - A warm-up still waited for: the slot is ready (busy for its attempt, or idle and handed to the
    ///   first waiting attempt), or gone if the factory threw. Once the pool stopped, the resource is
    ///   closed and the waiter told the pool stopped.
    /// - A warm-up that timed out: the resource belongs to no slot and is closed.
    /// - Parameter now: the time a spare becomes idle from.
    package mutating func factoryFinished(slot: Int, _ result: Result<Resource, any Error>, now: UInt64) -> [Action] {
        guard case .running(let waiter, _, let timer) = factories.removeValue(forKey: slot) else {
            // Abandoned (or unknown): nothing waits for what it made.
            guard case .success(let resource) = result else { return finishShutdownIfDone() }
            return closeLate(slot, resource) + finishShutdownIfDone()
        }
        var actions: [Action] = timer.map { [.cancelTimer($0)] } ?? []
        switch result {
        case .failure(let error):
            lastWarmUpFailure = "\(error)"
            actions += slotFailedToWarm(slot)
            actions.append(.endWarmUp(waiter, .failed(reason: "\(error)")))
        case .success(let resource):
            guard case .warming(let owned) = slots[slot]?.state else {
                actions += closeLate(slot, resource)
                actions.append(.endWarmUp(waiter, .failed(reason: "slot \(slot) was not waiting to be warmed")))
                break
            }
            guard isRunning else {
                actions += startClosing(slot, resource, .stopped)
                actions.append(.endWarmUp(waiter, .poolStopped(warmed: true)))
                break
            }
            lastWarmUpFailure = nil
            actions.append(.watch(slot: slot, resource))
            if owned {
                setState(of: slot, to: .busy(resource))
            } else {
                setState(of: slot, to: .idle(resource, since: now))
                idle.append(slot)
                actions += rebalance(restoreMinimum: false)
            }
            actions.append(.endWarmUp(waiter, .ready(resource)))
        }
        return actions + finishShutdownIfDone()
    }

    /// The warm-up timer of a slot fired. A factory still running is abandoned (and cancelled): its
    /// waiter fails, the slot is gone, and whatever the factory makes later is closed.
    package mutating func warmUpTimedOut(slot: Int) -> [Action] {
        guard case .running(let waiter, let factory, _) = factories[slot] else { return [] }
        factories[slot] = .abandoned(factory: factory)
        let reason = "\(WarmUpTimedOut(limit: options.warmUpTimeout ?? .zero))"
        lastWarmUpFailure = reason
        var actions: [Action] = factory.map { [.cancelFactory($0)] } ?? []
        actions += slotFailedToWarm(slot)
        actions.append(.endWarmUp(waiter, .failed(reason: reason)))
        return actions + finishShutdownIfDone()
    }

    /// Warming a slot failed (or cannot start): the slot is gone. A failed spare is not replaced at once
    /// (a factory that keeps failing would otherwise loop); the next attempt to need it warms it again.
    private mutating func slotFailedToWarm(_ slot: Int) -> [Action] {
        var spare = false
        if case .warming(owned: false) = slots[slot]?.state { spare = true }
        setState(of: slot, to: nil)
        return rebalance(restoreMinimum: !spare)
    }

    /// Closes a resource that belongs to no slot; where resources need closing, a shutdown waits for it.
    private mutating func closeLate(_ slot: Int, _ resource: Resource) -> [Action] {
        if closesResources {
            lateCloses.insert(slot)
            workStarted()
        }
        return [.close(slot: slot, resource, .lateWarmUp)]
    }
}
