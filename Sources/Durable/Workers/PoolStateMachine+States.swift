/// The states of a slot pool and the actions its machine returns.
extension PoolStateMachine {
    /// Where the pool is in its life.
    package enum Lifecycle: Sendable {
        /// Slots are warmed, handed over, replaced and evicted.
        case running
        /// ``PoolStateMachine/stopReplacing()`` came: a slot released is closed, no slot is warmed or
        /// handed over, and an attempt that asks is refused. Tickets already waiting keep waiting for
        /// the shutdown (their attempts are being cancelled).
        case stopping
        /// ``PoolStateMachine/shutdown(_:)`` came: waiting tickets were refused, idle slots closed and
        /// factories cancelled; `waiters` are resumed once no close is under way and, where resources
        /// need closing, no slot is warming and no factory running.
        case shuttingDown(waiters: [ShutdownWaiter])
        /// Nothing is under way. A slot an attempt still held is closed when it is released, which
        /// moves the pool back to ``shuttingDown(waiters:)`` until that close is done.
        case shutDown
    }

    package enum SlotState: Sendable {
        /// Being warmed; `owned` when an attempt waits for exactly this slot (a cold start).
        case warming(owned: Bool)
        case idle(Resource, since: UInt64)
        case busy(Resource)
        /// Its resource is being closed (a process exiting); it still counts against the maximum, so
        /// that a replacement never runs beside it.
        case closing
    }

    package struct Slot: Sendable {
        package var state: SlotState
        package var uses = 0
    }

    /// A factory warming a slot, by the slot it warms.
    enum WarmUp: Sendable {
        /// Running for `waiter`; the factory's task and its warm-up timer are nil until
        /// ``PoolStateMachine/factoryStarted(slot:factory:timer:)`` reports them.
        case running(waiter: WarmWaiter, factory: Factory?, timer: Int?)
        /// Its warm-up timed out (its waiter was told and the slot is gone); whatever it makes is closed.
        case abandoned(factory: Factory?)

        var factory: Factory? {
            switch self {
            case .running(_, let factory, _), .abandoned(let factory): factory
            }
        }
    }

    /// Why a resource is closed, for the pool's metrics.
    package enum CloseReason: Sendable, Equatable {
        /// Its attempt failed or timed out, it reached `maximumUses`, or it broke.
        case recycled
        /// It stayed idle for the idle timeout.
        case evicted
        /// The pool stopped.
        case stopped
        /// Its factory finished after the warm-up timeout; it belongs to no slot.
        case lateWarmUp
    }

    /// What the caller must do.
    package enum Action: Sendable {
        /// Give this idle slot to the waiting attempt (a warm hit). If its resource turns out to be
        /// broken, report ``PoolStateMachine/release(slot:retire:now:)`` with `retire` and ask again
        /// with the same ticket.
        case handOver(slot: Int, Resource, ticket: Int, Waiter)
        /// Give the attempt a new slot; it warms it with ``PoolStateMachine/startWarmUp(slot:_:)``
        /// (a cold start).
        case warmFor(slot: Int, Waiter)
        /// Warm a new slot with no attempt waiting for it (to keep the minimum warm), through
        /// ``PoolStateMachine/startWarmUp(slot:_:)``.
        case warmSpare(slot: Int)
        /// The pool stopped: tell the attempt that no slot will come.
        case refuse(Waiter)
        /// Run the slot's factory in a task, start a timer for `timeout` (if any) that reports
        /// ``PoolStateMachine/warmUpTimedOut(slot:)``, and report both with
        /// ``PoolStateMachine/factoryStarted(slot:factory:timer:)``; report the factory's end with
        /// ``PoolStateMachine/factoryFinished(slot:_:now:)``.
        case startFactory(slot: Int, timeout: Duration?)
        /// Cancel a factory's task (a process that is starting is killed).
        case cancelFactory(Factory)
        /// Cancel a warm-up timer that is no longer needed.
        case cancelTimer(Int)
        /// Tell the warm-up's waiter how it ended.
        case endWarmUp(WarmWaiter, WarmUpOutcome<Resource>)
        /// Ask to be told when this slot's resource breaks by itself (a process exits), and then report
        /// ``PoolStateMachine/retireIdle(slot:)``.
        case watch(slot: Int, Resource)
        /// Close the resource if resources need closing (``PoolStateMachine/closesResources``), then
        /// report ``PoolStateMachine/closed(slot:)``; otherwise just let it go.
        case close(slot: Int, Resource, CloseReason)
        /// Report ``PoolStateMachine/evictIdle(now:)`` after this delay.
        case scheduleEvictionCheck(after: Duration)
        /// The shutdown is complete: resume these callers of ``PoolStateMachine/shutdown(_:)``.
        case resumeShutdown([ShutdownWaiter])
    }
}

/// How a slot's warm-up ended, for the attempt or the spare warming it.
package enum WarmUpOutcome<Resource: Sendable>: Sendable {
    /// The slot is ready with this resource.
    case ready(Resource)
    /// The factory threw, or did not finish within the warm-up timeout.
    case failed(reason: String)
    /// The pool stopped; `warmed` when the factory made a resource anyway (it is being closed).
    case poolStopped(warmed: Bool)
}

/// The factory did not finish within the pool's warm-up timeout.
struct WarmUpTimedOut: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "the factory did not finish within the warm-up timeout of \(limit)" }
}

extension PoolStateMachine.Lifecycle: Equatable where ShutdownWaiter: Equatable {}
extension PoolStateMachine.SlotState: Equatable where Resource: Equatable {}
extension PoolStateMachine.Slot: Equatable where Resource: Equatable {}
extension PoolStateMachine.Action: Equatable
where Resource: Equatable, Waiter: Equatable, WarmWaiter: Equatable, Factory: Equatable, ShutdownWaiter: Equatable {}
extension WarmUpOutcome: Equatable where Resource: Equatable {}
