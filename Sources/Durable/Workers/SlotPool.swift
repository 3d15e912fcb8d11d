import CoreMetrics
import Dispatch
import Synchronization

/// A slot held by one attempt.
package struct Lease: Sendable {
    package let slot: Int
    /// `"<pool>#<slot>"`, as recorded in attempt details.
    package let name: String
    package let resource: any Sendable
    /// The slot was warmed for this attempt.
    package let cold: Bool
    package let warmUpNanos: UInt64
}

/// What an attempt gets from ``SlotPool/acquire(_:)``.
package enum Grant: Sendable {
    /// A warm slot, ready to run.
    case warm(Lease)
    /// A new slot for this attempt; warm it with ``SlotPool/warmUp(slot:)``.
    case cold(slot: Int)
    /// The pool stopped (the worker is stopping or the activity was registered again).
    case unavailable(any Error)
}

/// One activity's pool: the ``PoolStateMachine`` under a lock, the slots' resources, the attempts
/// waiting for a slot, the factory that warms slots, and the pool's metrics.
///
/// An activity registered without a pool gets a *shared* pool: one resource (the activity value)
/// used by any number of attempts at once, with no bookkeeping beyond metrics.
package final class SlotPool: Sendable {
    package typealias Factory = @Sendable () async throws -> any Sendable

    let name: String
    let options: PoolOptions
    private let make: Factory
    private let closeResource: (@Sendable (any Sendable) async -> Void)?
    /// Whether a slot's resource can serve (a process that died while idle cannot).
    private let isHealthy: @Sendable (any Sendable) -> Bool
    /// Asks to be told when a resource breaks by itself (a process exits).
    private let watch: (@Sendable (any Sendable, @escaping @Sendable () -> Void) -> Void)?
    /// For a shared pool, the one resource.
    private let shared: (any Sendable)?
    let metrics: PoolMetrics
    private let timers: TimeoutScheduler

    private struct State {
        var machine: PoolStateMachine
        var resources: [Int: any Sendable] = [:]
        var waiters: [Int: @Sendable (Grant) -> Void] = [:]
        var nextTicket = 1
        var evictionScheduled = false
        /// Why the last warm-up failed, until a slot warms.
        var lastWarmUpFailure: String?
        var started = false
        var stopped = false
        /// Slots running or warming for an attempt; change it only through ``SlotPool/count(_:_:)``.
        var inUse = 0
        /// Closes still under way, and the shutdowns that wait for them (see ``shutdownWaiters(_:)``).
        var closesUnderWay = 0
        var closedWaiters: [CheckedContinuation<Void, Never>] = []
        /// Factories running, by ticket; ``shutdown()`` cancels them. A factory that ends before it is
        /// entered leaves its ticket in `factoriesEnded` instead.
        var factories: [Int: Task<Void, Never>] = [:]
        var factoriesEnded: Set<Int> = []
    }

    private let state: Mutex<State>

    init(
        name: String, options: PoolOptions, metrics: PoolMetrics, timers: TimeoutScheduler,
        make: @escaping Factory, close: (@Sendable (any Sendable) async -> Void)? = nil,
        isHealthy: @escaping @Sendable (any Sendable) -> Bool = { _ in true },
        watch: (@Sendable (any Sendable, @escaping @Sendable () -> Void) -> Void)? = nil
    ) {
        self.name = name
        self.options = options
        self.make = make
        self.closeResource = close
        self.isHealthy = isHealthy
        self.watch = watch
        self.shared = nil
        self.metrics = metrics
        self.timers = timers
        self.state = Mutex(State(machine: PoolStateMachine(options: options)))
    }

    /// A pool with its own timers and no metrics (for benchmarks and tests of the pool alone).
    package convenience init(name: String, options: PoolOptions, make: @escaping Factory) {
        self.init(name: name, options: options, metrics: PoolMetrics(pool: name, factory: NOOPMetricsHandler.instance),
                  timers: TimeoutScheduler(clock: EngineClock()), make: make)
    }

    /// A shared pool around one resource.
    init(name: String, shared: any Sendable, metrics: PoolMetrics, timers: TimeoutScheduler) {
        self.name = name
        self.options = PoolOptions(maximumSlots: .max, idleTimeout: nil, recycleAfterFailure: false)
        self.make = { shared }
        self.closeResource = nil
        self.isHealthy = { _ in true }
        self.watch = nil
        self.shared = shared
        self.metrics = metrics
        self.timers = timers
        self.state = Mutex(State(machine: PoolStateMachine(options: options)))
    }

    // MARK: - Attempts

    private let tickets = Atomic<Int>(0)

    /// A ticket for ``acquire(ticket:_:)``, to be recorded before asking (so that a cancel finds it).
    package func newTicket() -> Int { tickets.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Asks for a slot. `granted` is called at once, on this thread, when a slot is free, or later
    /// from whichever thread frees one.
    package func acquire(ticket: Int, _ granted: @escaping @Sendable (Grant) -> Void) {
        if let shared {
            granted(.warm(Lease(slot: 0, name: name, resource: shared, cold: false, warmUpNanos: 0)))
            return
        }
        let grant = state.withLock { state -> Grant? in
            if state.stopped { return .unavailable(PoolStopped(pool: name)) }
            switch state.machine.acquire(ticket: ticket) {
            case .handOver(let slot, _)?:
                count(+1, &state)
                return .warm(lease(slot, state))
            case .warmFor(let slot, _)?:
                count(+1, &state)
                return .cold(slot: slot)
            default:
                state.waiters[ticket] = granted
                return nil
            }
        }
        guard let grant else { return }
        if !deliver(grant, to: granted) { acquire(ticket: ticket, granted) }
    }

    /// Hands a grant over, unless it is a warm slot that is no longer healthy: that slot is closed
    /// and replaced, and the caller must ask again. - Returns: `false` when the grant was withheld.
    private func deliver(_ grant: Grant, to waiter: @escaping @Sendable (Grant) -> Void) -> Bool {
        if case .warm(let lease) = grant {
            guard isHealthy(lease.resource) else {
                release(lease, retire: true)
                return false
            }
            metrics.warmHits.increment()
        }
        waiter(grant)
        return true
    }

    /// Takes a waiting attempt out of the queue.
    /// - Returns: `false` when it was not waiting any more (its grant is on its way).
    func cancel(ticket: Int) -> Bool {
        state.withLock { state in
            guard state.machine.cancel(ticket: ticket) else { return false }
            state.waiters[ticket] = nil
            return true
        }
    }

    /// Warms a slot granted cold, within the pool's warm-up timeout.
    /// - Throws: ``SlotWarmUpFailed`` (the slot is gone and its capacity freed).
    package func warmUp(slot: Int) async throws -> Lease {
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let resource = try await warm()
            let nanos = DispatchTime.now().uptimeNanoseconds &- start
            metrics.coldStarts.increment()
            metrics.warmUp.recordNanoseconds(Int64(nanos))
            let kept = state.withLock { state -> Bool in
                guard !state.stopped else {
                    count(-1, &state)
                    // Through effects: the slot's place must not be refilled after the stop.
                    _ = effects(state.machine.warmUpFailed(slot: slot), &state)
                    state.closesUnderWay += 1
                    return false
                }
                state.resources[slot] = resource
                state.lastWarmUpFailure = nil
                state.machine.warmedForOwner(slot: slot)
                return true
            }
            guard kept else {
                await closeTracked(resource)
                throw PoolStopped(pool: name)
            }
            watchResource(resource, slot: slot)
            return Lease(slot: slot, name: "\(name)#\(slot)", resource: resource, cold: true, warmUpNanos: nanos)
        } catch let error as PoolStopped {
            throw error
        } catch {
            metrics.warmUpFailures.increment()
            let (work, waiters) = state.withLock { state in
                count(-1, &state)
                state.lastWarmUpFailure = "\(error)"
                return (effects(state.machine.warmUpFailed(slot: slot), &state), shutdownWaiters(&state))
            }
            perform(work)
            for waiter in waiters { waiter.resume() }
            throw SlotWarmUpFailed(pool: name, reason: "\(error)")
        }
    }

    /// Gives a slot back.
    /// - Parameter retire: close the slot instead of keeping it (failed, timed out, or broken).
    package func release(_ lease: Lease, retire: Bool) {
        guard shared == nil else { return }
        let retire = retire || !isHealthy(lease.resource)
        let now = timers.clock.uptimeNanos()
        let (work, scheduleEviction) = state.withLock { state in
            count(-1, &state)
            let actions = state.machine.release(slot: lease.slot, retire: retire || state.stopped, now: now)
            // Replaced: retired (failed, timed out, broken) or at maximumUses; not closed by a stop.
            if !state.stopped, actions.contains(.close(slot: lease.slot)) { metrics.recycled.increment() }
            let work = effects(actions, &state)
            let schedule = options.idleTimeout != nil && !state.evictionScheduled && !state.stopped
                && state.machine.idleCount > 0 && state.machine.liveCount > options.minimumSlots
            if schedule { state.evictionScheduled = true }
            return (work, schedule)
        }
        perform(work)
        if scheduleEviction, let timeout = options.idleTimeout { scheduleEvictionCheck(after: timeout) }
    }

    // MARK: - Life cycle

    /// Warms the minimum slots and waits until they are ready (or failed). Once: later calls return.
    package func start() async {
        guard shared == nil else { return }
        let work = state.withLock { state -> Effects in
            guard !state.started else { return Effects() }
            state.started = true
            return effects(state.machine.start(), &state)
        }
        await withTaskGroup(of: Void.self) { group in
            for slot in work.spares { group.addTask { await self.warmSpare(slot) } }
        }
        perform(Effects(grants: work.grants, closing: work.closing))
    }

    /// Stops replacing slots, before the attempts that hold them are cancelled (a slot released from
    /// then on is closed, not replaced or counted as recycled). ``shutdown()`` does the rest.
    package func stopReplacing() {
        state.withLock { $0.stopped = true }
    }

    /// Stops the pool: attempts waiting for a slot get ``Grant/unavailable(_:)``, idle slots are
    /// closed, factories still warming are cancelled, and busy slots are closed as their attempts
    /// end. Returns once every slot released so far is closed and, when slots hold resources to
    /// close (processes), once no slot is warming any more: call it after the attempts were cancelled.
    package func shutdown() async {
        let (closing, waiters, factories) = state.withLock { state in
            state.stopped = true
            defer { state.waiters.removeAll() }
            return (effects(state.machine.drain(), &state).closing, Array(state.waiters.values),
                    Array(state.factories.values))
        }
        for waiter in waiters { waiter(.unavailable(PoolStopped(pool: name))) }
        for factory in factories { factory.cancel() }  // a process that is starting is killed
        closeInBackground(closing)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            // Resumes this call and any other shutdown waiting with it, if nothing is left to wait for.
            let ready = state.withLock { state in
                state.closedWaiters.append(done)
                return shutdownWaiters(&state)
            }
            for waiter in ready { waiter.resume() }
        }
    }

    /// The shutdowns to resume, if the pool has stopped and nothing it waits for is left: no close
    /// under way and, for resources that need closing, no slot warming (its resource would be closed
    /// after the shutdown returned).
    private func shutdownWaiters(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        guard state.stopped, state.closesUnderWay == 0,
            closeResource == nil || (!state.machine.isWarming && state.factories.isEmpty)
        else { return [] }
        defer { state.closedWaiters = [] }
        return state.closedWaiters
    }

    /// Slots warming, idle or busy (not those being closed).
    var slotCount: Int { state.withLock { $0.machine.liveCount } }

    /// Why the last warm-up failed, if no slot has warmed since.
    var lastWarmUpFailure: String? { state.withLock { $0.lastWarmUpFailure } }

    /// A pool around one shared resource (an activity registered without a pool).
    var isShared: Bool { shared != nil }

    // MARK: - Private

    /// Changes the slots-in-use count and records the gauge, under the lock so that the values
    /// recorded follow the changes in order.
    private func count(_ change: Int, _ state: inout State) {
        state.inUse += change
        metrics.slotsInUse.record(state.inUse)
    }

    private func lease(_ slot: Int, _ state: State) -> Lease {
        Lease(slot: slot, name: "\(name)#\(slot)", resource: state.resources[slot] ?? (), cold: false, warmUpNanos: 0)
    }

    private struct Effects {
        var grants: [(ticket: Int, waiter: @Sendable (Grant) -> Void, grant: Grant)] = []
        var spares: [Int] = []
        /// Resources to close, with their slots (to report ``PoolStateMachine/closed(slot:)`` after).
        var closing: [(slot: Int, resource: any Sendable)] = []
    }

    /// Turns the state machine's actions into work to do outside the lock.
    private func effects(_ actions: [PoolStateMachine.Action], _ state: inout State) -> Effects {
        var work = Effects()
        var actions = actions
        var next = 0
        while next < actions.count {
            let action = actions[next]
            next += 1
            switch action {
            case .handOver(let slot, let ticket):
                guard let waiter = state.waiters.removeValue(forKey: ticket) else { continue }
                count(+1, &state)
                work.grants.append((ticket, waiter, .warm(lease(slot, state))))
            case .warmFor(let slot, let ticket):
                guard let waiter = state.waiters.removeValue(forKey: ticket) else { continue }
                count(+1, &state)
                work.grants.append((ticket, waiter, .cold(slot: slot)))
            case .warmSpare(let slot):
                if state.stopped { _ = state.machine.warmUpFailed(slot: slot) } else { work.spares.append(slot) }
            case .close(let slot):
                if let resource = state.resources.removeValue(forKey: slot), closeResource != nil {
                    state.closesUnderWay += 1  // counted with the decision, so a shutdown waits for it
                    work.closing.append((slot, resource))
                } else {
                    actions += state.machine.closed(slot: slot)  // nothing to wait for
                }
            }
        }
        return work
    }

    private func perform(_ work: Effects) {
        for (ticket, waiter, grant) in work.grants where !deliver(grant, to: waiter) {
            acquire(ticket: ticket, waiter)  // its slot had died: ask again (a new slot may be on its way)
        }
        for slot in work.spares { Task { await self.warmSpare(slot) } }
        closeInBackground(work.closing)
    }

    /// Closes resources in tasks that ``shutdown()`` waits for (``effects(_:_:)`` counted them); each
    /// slot counts against the maximum until its resource is closed.
    private func closeInBackground(_ closing: [(slot: Int, resource: any Sendable)]) {
        guard let closeResource else { return }
        for (slot, resource) in closing {
            Task {
                await closeResource(resource)
                let (work, waiters) = state.withLock { state in
                    let work = effects(state.machine.closed(slot: slot), &state)
                    state.closesUnderWay -= 1
                    return (work, shutdownWaiters(&state))
                }
                perform(work)
                for waiter in waiters { waiter.resume() }
            }
        }
    }

    /// Asks the resource's watcher to report when it breaks while its slot is idle.
    private func watchResource(_ resource: any Sendable, slot: Int) {
        watch?(resource) { [weak self] in self?.idleResourceBroke(slot: slot) }
    }

    /// A slot's resource broke by itself. An idle slot is closed and replaced at once (keeping the
    /// minimum warm); a busy one is replaced when its attempt, which fails, releases it.
    private func idleResourceBroke(slot: Int) {
        let work = state.withLock { state -> Effects? in
            guard !state.stopped else { return nil }
            let actions = state.machine.retireIdle(slot: slot)
            return actions.isEmpty ? nil : effects(actions, &state)
        }
        guard let work else { return }
        metrics.recycled.increment()
        perform(work)
    }

    /// Closes a resource that belongs to no slot (it warmed after the pool stopped or after its
    /// warm-up timed out); the caller counted it in `closesUnderWay` under the lock.
    private func closeTracked(_ resource: any Sendable) async {
        await closeResource?(resource)
        let waiters = state.withLock { state in
            state.closesUnderWay -= 1
            return shutdownWaiters(&state)
        }
        for waiter in waiters { waiter.resume() }
    }

    private func warmSpare(_ slot: Int) async {
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let resource = try await warm()
            metrics.coldStarts.increment()
            metrics.warmUp.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- start))
            let now = timers.clock.uptimeNanos()
            let work = state.withLock { state -> Effects? in
                guard !state.stopped else {
                    _ = effects(state.machine.warmUpFailed(slot: slot), &state)
                    state.closesUnderWay += 1
                    return nil
                }
                state.resources[slot] = resource
                state.lastWarmUpFailure = nil
                return effects(state.machine.warmedSpare(slot: slot, now: now), &state)
            }
            if let work {
                watchResource(resource, slot: slot)
                perform(work)
            } else {
                await closeTracked(resource)
            }
        } catch {
            metrics.warmUpFailures.increment()
            let (work, waiters) = state.withLock { state in
                state.lastWarmUpFailure = "\(error)"
                return (effects(state.machine.warmUpFailed(slot: slot), &state), shutdownWaiters(&state))
            }
            perform(work)
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Runs the factory in a task of its own (which ``shutdown()`` cancels), bounded by the warm-up
    /// timeout. A factory that finishes after its timeout has its resource closed.
    private func warm() async throws -> any Sendable {
        let make = self.make
        let timers = self.timers
        let ticket = newTicket()
        return try await withCheckedThrowingContinuation { continuation in
            let once = ResumeOnce(continuation)
            let factory = Task {
                let result: Result<any Sendable, any Error>
                do { result = .success(try await make()) } catch { result = .failure(error) }
                let late = once.resume(with: result) ? nil : try? result.get()
                // Counted before the factory leaves the table, so that a shutdown waits for the close.
                let waiters = state.withLock { state in
                    if late != nil { state.closesUnderWay += 1 }
                    if state.factories.removeValue(forKey: ticket) == nil { state.factoriesEnded.insert(ticket) }
                    return shutdownWaiters(&state)
                }
                for waiter in waiters { waiter.resume() }
                if let late { await closeTracked(late) }
            }
            let stopped = state.withLock { state -> Bool in
                if state.factoriesEnded.remove(ticket) == nil { state.factories[ticket] = factory }
                return state.stopped
            }
            if stopped { factory.cancel() }
            if let limit = options.warmUpTimeout {
                let timer = timers.schedule(after: limit) {
                    if once.resume(with: .failure(WarmUpTimedOut(limit: limit))) { factory.cancel() }
                }
                once.onResume { timers.cancel(timer) }
            }
        }
    }

    private func scheduleEvictionCheck(after delay: Duration) {
        _ = timers.schedule(after: delay) { [self] in
            let now = timers.clock.uptimeNanos()
            let (evicted, work, next) = state.withLock { state in
                let (actions, next) = state.machine.evictIdle(now: now)
                let work = effects(actions, &state)
                state.evictionScheduled = next != nil && !state.stopped
                return (actions.count, work, state.evictionScheduled ? next : nil)
            }
            if evicted > 0 { metrics.evicted.increment(by: evicted) }
            perform(work)
            if let next {
                scheduleEvictionCheck(after: .nanoseconds(Int64(next &- min(next, now)) + 1_000_000))
            }
        }
    }
}

/// A continuation resumed by whichever of two racers comes first.
private final class ResumeOnce: Sendable {
    private struct State {
        var continuation: CheckedContinuation<any Sendable, any Error>?
        var resumed = false
        var onResume: (@Sendable () -> Void)?
    }

    private let state: Mutex<State>

    init(_ continuation: CheckedContinuation<any Sendable, any Error>) {
        self.state = Mutex(State(continuation: continuation))
    }

    /// - Returns: `true` for the first caller, who resumed the continuation.
    @discardableResult
    func resume(with result: Result<any Sendable, any Error>) -> Bool {
        let (continuation, then) = state.withLock { state in
            defer { state.continuation = nil; state.resumed = true; state.onResume = nil }
            return (state.continuation, state.onResume)
        }
        guard let continuation else { return false }
        continuation.resume(with: result)
        then?()
        return true
    }

    /// Runs `action` once resumed (now, if it is already).
    func onResume(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.resumed { return true }
            state.onResume = action
            return false
        }
        if now { action() }
    }
}

/// The pool stopped while an attempt waited for it.
struct PoolStopped: Error, CustomStringConvertible {
    var pool: String
    var description: String { "pool \(pool) stopped (the worker is stopping or the activity was registered again)" }
}

private struct WarmUpTimedOut: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "the factory did not finish within the warm-up timeout of \(limit)" }
}

/// A first-in, first-out limit on attempts running at once in one engine (``WorkerOptions``).
final class WorkerPermits: Sendable {
    private struct State {
        var available: Int
        var queue: [(ticket: Int, granted: @Sendable () -> Void)] = []
    }

    private let state: Mutex<State>
    private let tickets = Atomic<Int>(0)

    init(limit: Int) {
        state = Mutex(State(available: limit))
    }

    /// A ticket for ``acquire(ticket:_:)``, to be recorded before asking.
    func newTicket() -> Int { tickets.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Asks for a permit; `granted` runs at once or when one is released.
    func acquire(ticket: Int, _ granted: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.available > 0 && state.queue.isEmpty {
                state.available -= 1
                return true
            }
            state.queue.append((ticket, granted))
            return false
        }
        if now { granted() }
    }

    /// - Returns: `false` when the ticket was not waiting (granted already, or not queued yet).
    func cancel(ticket: Int) -> Bool {
        state.withLock { state in
            guard let index = state.queue.firstIndex(where: { $0.ticket == ticket }) else { return false }
            state.queue.remove(at: index)
            return true
        }
    }

    func release() {
        let next = state.withLock { state -> (@Sendable () -> Void)? in
            if state.queue.isEmpty {
                state.available += 1
                return nil
            }
            return state.queue.removeFirst().granted
        }
        next?()
    }
}
