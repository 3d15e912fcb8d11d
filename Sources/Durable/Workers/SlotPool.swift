import CoreMetrics
import Dispatch
import Synchronization

/// A slot held by one attempt. A class: the attempt's state machine moves it from state to state,
/// and a reference costs one retain where this struct's existential and string cost several.
package final class Lease: Sendable {
    package let slot: Int
    /// `"<pool>#<slot>"`, as recorded in attempt details.
    package let name: String
    package let resource: any Sendable
    /// The slot was warmed for this attempt.
    package let cold: Bool
    package let warmUpNanos: UInt64

    package init(slot: Int, name: String, resource: any Sendable, cold: Bool, warmUpNanos: UInt64) {
        self.slot = slot
        self.name = name
        self.resource = resource
        self.cold = cold
        self.warmUpNanos = warmUpNanos
    }
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

/// One activity's pool: the ``PoolStateMachine`` under a lock, carrying out the actions it returns
/// (running factories, handing slots to attempts, closing resources, resuming shutdowns) outside the
/// lock, and recording the pool's metrics.
///
/// An activity registered without a pool gets a *shared* pool: one resource (the activity value)
/// used by any number of attempts at once, with no bookkeeping beyond metrics.
package final class SlotPool: Sendable {
    package typealias Factory = @Sendable () async throws -> any Sendable
    /// The machine with this pool's types: attempts wait with their grant callbacks, warm-ups and
    /// shutdowns with continuations, and factories run in tasks.
    typealias Machine = PoolStateMachine<
        any Sendable, @Sendable (Grant) -> Void, CheckedContinuation<WarmUpOutcome<any Sendable>, Never>,
        Task<Void, Never>, CheckedContinuation<Void, Never>
    >

    let name: String
    let options: PoolOptions
    private let make: Factory
    private let closeResource: (@Sendable (any Sendable) async -> Void)?
    /// Whether a slot's resource can serve (a process that died while idle cannot).
    private let isHealthy: @Sendable (any Sendable) -> Bool
    /// Asks to be told when a resource breaks by itself (a process exits).
    private let watch: (@Sendable (any Sendable, @escaping @Sendable () -> Void) -> Void)?
    /// For a shared pool, the one lease (around the one resource) every attempt gets.
    private let sharedLease: Lease?
    let metrics: PoolMetrics
    private let timers: TimeoutScheduler
    private let machine: Mutex<Machine>
    /// The pool's rate limits, when it has any: attempts wait here before they ask for a slot.
    private let gate: RateGate?

    /// The rate limiter's machine and the one timer armed for its next look, under a lock.
    private final class RateGate: Sendable {
        struct State {
            var machine: RateLimiterStateMachine<@Sendable () -> Void>
            var timer: (id: Int, at: UInt64)?
        }

        let state: Mutex<State>

        init(_ options: PoolOptions, now: UInt64) {
            state = Mutex(State(machine: RateLimiterStateMachine(pool: options.rateLimit, key: options.keyRateLimit, now: now)))
        }
    }

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
        self.sharedLease = nil
        self.metrics = metrics
        self.timers = timers
        self.machine = Mutex(Machine(options: options, closesResources: close != nil))
        if options.isRateLimited {
            gate = RateGate(options, now: timers.clock.uptimeNanos())
            metrics.recordLimits(options)
        } else {
            gate = nil
        }
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
        self.sharedLease = Lease(slot: 0, name: name, resource: shared, cold: false, warmUpNanos: 0)
        self.metrics = metrics
        self.timers = timers
        self.machine = Mutex(Machine(options: options, closesResources: false))
        self.gate = nil
    }

    // MARK: - Attempts

    private let tickets = Atomic<Int>(0)

    /// A ticket for ``acquire(ticket:_:)``, to be recorded before asking (so that a cancel finds it).
    package func newTicket() -> Int { tickets.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Asks for a slot. `granted` is called at once, on this thread, when a slot is free (or the pool
    /// stopped), or later from whichever thread frees one. In a rate-limited pool the attempt first
    /// waits for `claim`'s units (one unit, no key, when `nil`).
    package func acquire(ticket: Int, claim: RateClaim? = nil, _ granted: @escaping @Sendable (Grant) -> Void) {
        if let sharedLease {
            granted(.warm(sharedLease))
            return
        }
        guard let gate else {
            run { $0.acquire(ticket: ticket, granted) }
            return
        }
        let claim = claim ?? RateClaim()
        let (step, atOnce) = gate.state.withLock { gate in
            let result = gate.machine.request(
                ticket: ticket, key: claim.key, cost: claim.cost, now: timers.clock.uptimeNanos()
            ) { [self] in run { $0.acquire(ticket: ticket, granted) } }
            arm(&gate, result.step.wake)
            return result
        }
        if !atOnce { metrics.rateLimited.increment() }
        carryOut(step)
    }

    /// Takes a waiting attempt out of the queue.
    /// - Returns: `false` when it was not waiting any more (its grant is on its way).
    func cancel(ticket: Int) -> Bool {
        if let gate {
            let (waiter, step) = gate.state.withLock { gate in
                let (waiter, step) = gate.machine.cancel(ticket: ticket, now: timers.clock.uptimeNanos())
                arm(&gate, step.wake)
                return (waiter, step)
            }
            carryOut(step)
            if waiter != nil { return true }
        }
        return machine.withLock { $0.cancel(ticket: ticket) }
    }

    // MARK: - Rate limits

    /// Arms the gate's timer for `wake`, unless one is armed as early.
    private func arm(_ gate: inout RateGate.State, _ wake: UInt64?) {
        guard let wake else { return }
        if let timer = gate.timer {
            if timer.at <= wake { return }
            timers.cancel(timer.id)
        }
        let delay = Duration.nanoseconds(Int64(clamping: wake &- min(wake, timers.clock.uptimeNanos())))
        // The scheduler counts whole milliseconds: round up, so the look finds the units there.
        let rounded = Duration.milliseconds((delay.inSeconds * 1000).rounded(.up))
        gate.timer = (timers.schedule(after: rounded) { [self] in rateTick() }, wake)
    }

    /// The gate's timer fired: lets on the attempts the limits allow now.
    private func rateTick() {
        guard let gate else { return }
        let step = gate.state.withLock { gate in
            gate.timer = nil
            let step = gate.machine.tick(now: timers.clock.uptimeNanos())
            arm(&gate, step.wake)
            return step
        }
        carryOut(step)
    }

    /// Sends the granted attempts on to ask for their slots, and records their waits.
    private func carryOut(_ step: RateLimiterStateMachine<@Sendable () -> Void>.Step) {
        metrics.rateLimitWaiting.record(step.waiting)
        for (waiter, waited) in step.granted {
            if waited > 0 { metrics.rateLimitWait.recordNanoseconds(Int64(clamping: waited)) }
            waiter()
        }
    }

    /// Warms a slot granted cold, within the pool's warm-up timeout.
    /// - Throws: ``SlotWarmUpFailed`` (the slot is gone and its capacity freed), or ``PoolStopped``.
    package func warmUp(slot: Int) async throws -> Lease {
        let start = DispatchTime.now().uptimeNanoseconds
        switch await warm(slot) {
        case .ready(let resource):
            let nanos = recordColdStart(since: start)
            return Lease(slot: slot, name: "\(name)#\(slot)", resource: resource, cold: true, warmUpNanos: nanos)
        case .poolStopped(let warmed):
            if warmed { recordColdStart(since: start) }
            throw PoolStopped(pool: name)
        case .failed(let reason):
            metrics.warmUpFailures.increment()
            throw SlotWarmUpFailed(pool: name, reason: reason)
        }
    }

    /// Gives a slot back.
    /// - Parameter retire: close the slot instead of keeping it (failed, timed out, or broken).
    package func release(_ lease: Lease, retire: Bool) {
        guard sharedLease == nil else { return }
        let retire = retire || !isHealthy(lease.resource)
        let now = timers.clock.uptimeNanos()
        run { $0.release(slot: lease.slot, retire: retire, now: now) }
    }

    // MARK: - Life cycle

    /// Warms the minimum slots and waits until they are ready (or failed). Once: later calls return.
    package func start() async {
        guard sharedLease == nil else { return }
        var spares: [Int] = []
        run { machine in
            machine.start().filter { action in
                guard case .warmSpare(let slot) = action else { return true }
                spares.append(slot)
                return false
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for slot in spares { group.addTask { await self.warmSpare(slot) } }
        }
    }

    /// Stops replacing slots, before the attempts that hold them are cancelled (a slot released from
    /// then on is closed, not replaced or counted as recycled). ``shutdown()`` does the rest.
    package func stopReplacing() {
        machine.withLock { $0.stopReplacing() }
    }

    /// Stops the pool: attempts waiting for a slot get ``Grant/unavailable(_:)``, idle slots are
    /// closed, factories still warming are cancelled, and busy slots are closed as their attempts
    /// end. Returns once every slot released so far is closed and, when slots hold resources to
    /// close (processes), once no slot is warming any more: call it after the attempts were cancelled.
    package func shutdown() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            run { $0.shutdown(done) }
            // Attempts waiting for rate-limit capacity ask now, and are refused.
            if let gate {
                let waiters = gate.state.withLock { gate in
                    if let timer = gate.timer { timers.cancel(timer.id) }
                    gate.timer = nil
                    return gate.machine.stop()
                }
                metrics.rateLimitWaiting.record(0)
                for waiter in waiters { waiter() }
            }
        }
    }

    /// Slots warming, idle or busy (not those being closed).
    var slotCount: Int { machine.withLock { $0.liveCount } }

    /// Why the last warm-up failed, if no slot has warmed since.
    var lastWarmUpFailure: String? { machine.withLock { $0.lastWarmUpFailure } }

    /// A pool around one shared resource (an activity registered without a pool).
    var isShared: Bool { sharedLease != nil }

    // MARK: - Carrying out actions

    /// Applies one event to the machine under the lock (recording the slot gauges there, so that the
    /// values recorded follow the changes in order), then carries out its actions.
    private func run(_ event: (inout Machine) -> [Machine.Action]) {
        let actions = machine.withLock { machine in
            let (inUse, idle) = (machine.inUse, machine.idleCount)
            let actions = event(&machine)
            if machine.inUse != inUse { metrics.slotsInUse.record(machine.inUse) }
            if machine.idleCount != idle { metrics.slotsIdle.record(machine.idleCount) }
            return actions
        }
        for action in actions { perform(action) }
    }

    private func perform(_ action: Machine.Action) {
        switch action {
        case .handOver(let slot, let resource, let ticket, let waiter):
            let lease = Lease(slot: slot, name: "\(name)#\(slot)", resource: resource, cold: false, warmUpNanos: 0)
            guard isHealthy(resource) else {
                // Its process died while idle: close and replace it, and ask again.
                release(lease, retire: true)
                acquire(ticket: ticket, waiter)
                return
            }
            metrics.warmHits.increment()
            waiter(.warm(lease))
        case .warmFor(let slot, let waiter):
            waiter(.cold(slot: slot))
        case .warmSpare(let slot):
            Task { await self.warmSpare(slot) }
        case .refuse(let waiter):
            waiter(.unavailable(PoolStopped(pool: name)))
        case .startFactory(let slot, let timeout):
            startFactory(slot: slot, timeout: timeout)
        case .cancelFactory(let factory):
            factory.cancel()  // a process that is starting is killed
        case .cancelTimer(let timer):
            timers.cancel(timer)
        case .endWarmUp(let waiter, let outcome):
            waiter.resume(returning: outcome)
        case .watch(let slot, let resource):
            watch?(resource) { [weak self] in self?.run { $0.retireIdle(slot: slot) } }
        case .close(let slot, let resource, let reason):
            switch reason {
            case .recycled: metrics.recycled.increment()
            case .evicted: metrics.evicted.increment()
            case .stopped, .lateWarmUp: break
            }
            guard let closeResource else { return }
            Task {
                await closeResource(resource)
                run { $0.closed(slot: slot) }
            }
        case .scheduleEvictionCheck(let delay):
            _ = timers.schedule(after: delay) { [self] in
                let now = timers.clock.uptimeNanos()
                run { $0.evictIdle(now: now) }
            }
        case .resumeShutdown(let waiters):
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Asks the machine to warm `slot` and waits for the outcome (the factory's, its timeout's, or the
    /// pool's stop).
    private func warm(_ slot: Int) async -> WarmUpOutcome<any Sendable> {
        await withCheckedContinuation { waiter in run { $0.startWarmUp(slot: slot, waiter) } }
    }

    /// Runs the factory in a task of its own (which the machine may cancel), with a timer for its
    /// warm-up timeout.
    private func startFactory(slot: Int, timeout: Duration?) {
        let make = self.make
        let factory = Task {
            let result: Result<any Sendable, any Error>
            do { result = .success(try await make()) } catch { result = .failure(error) }
            let now = timers.clock.uptimeNanos()
            run { $0.factoryFinished(slot: slot, result, now: now) }
        }
        let timer = timeout.map { limit in
            timers.schedule(after: limit) { [self] in run { $0.warmUpTimedOut(slot: slot) } }
        }
        run { $0.factoryStarted(slot: slot, factory: factory, timer: timer) }
    }

    private func warmSpare(_ slot: Int) async {
        let start = DispatchTime.now().uptimeNanoseconds
        switch await warm(slot) {
        case .ready, .poolStopped(warmed: true): recordColdStart(since: start)
        case .poolStopped(warmed: false): break
        case .failed: metrics.warmUpFailures.increment()
        }
    }

    /// Counts a slot the factory warmed and records its warm-up time.
    /// - Returns: the warm-up time in nanoseconds.
    @discardableResult
    private func recordColdStart(since start: UInt64) -> UInt64 {
        let nanos = DispatchTime.now().uptimeNanoseconds &- start
        metrics.coldStarts.increment()
        metrics.warmUp.recordNanoseconds(Int64(nanos))
        return nanos
    }
}

/// The pool stopped while an attempt waited for it.
struct PoolStopped: Error, CustomStringConvertible {
    var pool: String
    var description: String { "pool \(pool) stopped (the worker is stopping or the activity was registered again)" }
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
