package import Foundation

/// One activity attempt, as a value: from its request for a slot to the one way it ends.
///
/// Every event (a slot or permit granted, its code started or ended, a timer, a heartbeat, the
/// workflow's cancellation, the worker stopping) is a mutating method that returns what the caller
/// must do: ask for a slot, start the code, arm or cancel a timer, give back a slot that came late,
/// or ``Action/settle(_:)`` the attempt. Exactly one event settles it, whatever the races between
/// them; every later event finds it ``State/settled`` and asks at most for something late to be
/// given back. The machine does no I/O and knows no time but the `now` it is told (uptime
/// nanoseconds); ``AttemptRun`` holds it under a lock and ``ActivityExecution`` carries out its
/// actions. The lease and the running code are generic, so tests drive it with plain labels:
///
/// ```swift
/// var attempt = AttemptStateMachine<String, String>(number: 1, configuration: configuration)
/// _ = attempt.requestSlot(ticket: 7, inline: false)        // .requestSlot(ticket: 7, ...)
/// _ = attempt.slotGranted("pool#1", waited: 0, permitTicket: nil, now: 10)  // .run(...)
/// _ = attempt.started("task")
/// _ = attempt.completed(Data("42".utf8), now: 30)          // .settle(<completed, release pool#1>)
/// ```
///
/// States: ``State/issued``, then ``State/waitingForSlot(_:)`` (queued in the pool),
/// ``State/warming(_:)`` (a cold slot is warmed for it) and ``State/waitingForPermit(_:)`` (it holds
/// its slot, the worker-wide limit is reached) until its code starts; ``State/running(_:)``, and
/// ``State/cancelling(_:)`` once the workflow cancelled the running code; ``State/settled``.
package struct AttemptStateMachine<Lease: Sendable, Work: Sendable>: Sendable {
    /// The attempt's timeouts and the pool's policy for a failed attempt's slot.
    package struct Configuration: Sendable {
        package var scheduleToStart: Duration?
        package var startToClose: Duration?
        package var heartbeatTimeout: Duration?
        /// Replace the slot of an attempt whose code failed (``PoolOptions/recycleAfterFailure``).
        package var recycleAfterFailure: Bool
        /// New heartbeat details are journaled at most once in this many nanoseconds.
        package var heartbeatJournalNanos: UInt64

        package init(
            scheduleToStart: Duration? = nil, startToClose: Duration? = nil, heartbeatTimeout: Duration? = nil,
            recycleAfterFailure: Bool = true, heartbeatJournalNanos: UInt64 = 1_000_000_000
        ) {
            self.scheduleToStart = scheduleToStart
            self.startToClose = startToClose
            self.heartbeatTimeout = heartbeatTimeout
            self.recycleAfterFailure = recycleAfterFailure
            self.heartbeatJournalNanos = heartbeatJournalNanos
        }
    }

    package let number: Int
    let configuration: Configuration
    package private(set) var state: State = .issued

    package init(number: Int, configuration: Configuration) {
        self.number = number
        self.configuration = configuration
    }

    package var isSettled: Bool { phase == .settled }

    /// The state's case, without what it holds. The events test it rather than the state: a test of
    /// the state itself copies what it holds (a lease is not trivially copyable).
    package var phase: Phase {
        switch state {
        case .issued: .issued
        case .waitingForSlot: .waitingForSlot
        case .warming: .warming
        case .waitingForPermit: .waitingForPermit
        case .running: .running
        case .cancelling: .cancelling
        case .settled: .settled
        }
    }

    /// Moves the state out, leaving ``State/settled`` until the caller puts one back. The events use
    /// it so that what a state holds (a lease, a task) moves instead of being copied and released.
    private mutating func takeState() -> State {
        var taken = State.settled
        swap(&taken, &state)
        return taken
    }

    // MARK: - Getting a slot and a permit

    /// The attempt asks for a slot under `ticket` (from the pool, so that a cancel finds it).
    /// - Parameter inline: its code may start on this thread if the slot is granted before
    ///   ``slotRequestReturned()`` (see ``ActivityExecution``).
    package mutating func requestSlot(ticket: Int, inline: Bool) -> Action {
        guard phase == .issued else { return .none }  // settled before it asked
        state = .waitingForSlot(Waiting(ticket: ticket, startTimer: nil, inline: inline))
        return .requestSlot(ticket: ticket, startTimeout: configuration.scheduleToStart)
    }

    /// The request for a slot has returned: a slot granted later must not start the code on its thread.
    package mutating func slotRequestReturned() {
        switch takeState() {
        case .waitingForSlot(var waiting):
            waiting.inline = false
            state = .waitingForSlot(waiting)
        case .waitingForPermit(var holding):
            holding.inline = false
            state = .waitingForPermit(holding)
        case let other:
            state = other
        }
    }

    /// The pool handed over a warm slot, or a cold one is warmed.
    /// - Parameters:
    ///   - waited: nanoseconds since the attempt was issued, for its details (for a warmed slot, the
    ///     wait until the pool made the slot, as told to ``coldSlotGranted(slot:waited:)``).
    ///   - permitTicket: the ticket to wait for a worker-wide permit with, `nil` when there is no limit.
    package mutating func slotGranted(_ lease: Lease, waited: UInt64, permitTicket: Int?, now: UInt64) -> Action {
        let startTimer: Int?
        let inline: Bool
        var waited = waited
        switch takeState() {
        case .waitingForSlot(let waiting):
            (startTimer, inline) = (waiting.startTimer, waiting.inline)
        case .warming(let warming):
            (startTimer, inline, waited) = (warming.startTimer, false, warming.waited)
        case let other:
            state = other
            return .releaseSlot(lease)  // it ended while it waited: the slot goes back into service
        }
        if let permitTicket {
            state = .waitingForPermit(Holding(
                lease: lease, permitTicket: permitTicket, startTimer: startTimer, inline: inline, waited: waited))
            return .requestPermit(ticket: permitTicket)
        }
        return beginRunning(lease, startTimer: startTimer, inline: inline, waited: waited, holdsPermit: false, now: now)
    }

    /// The pool made a new slot for this attempt, to be warmed before the code can use it.
    package mutating func coldSlotGranted(slot: Int, waited: UInt64) -> Action {
        switch takeState() {
        case .waitingForSlot(let waiting):
            state = .warming(Warming(startTimer: waiting.startTimer, waited: waited))
        case let other:
            state = other  // ended while it waited: the slot is warmed anyway and then given back (kept warm)
        }
        return .warmUp(slot: slot)
    }

    /// No slot can be had: the pool stopped, or warming the slot failed.
    package mutating func slotUnavailable(_ error: any Error, now: UInt64) -> Action {
        switch phase {
        case .waitingForSlot, .warming: settle(.failed(.threw(error)), now: now)
        case .issued, .waitingForPermit, .running, .cancelling, .settled: .none
        }
    }

    /// A worker-wide permit was granted.
    package mutating func permitGranted(now: UInt64) -> Action {
        switch takeState() {
        case .waitingForPermit(let holding):
            return beginRunning(
                holding.lease, startTimer: holding.startTimer, inline: holding.inline, waited: holding.waited,
                holdsPermit: true, now: now)
        case let other:
            state = other
            return .releasePermit  // it ended while it waited (its ticket was no longer in the queue)
        }
    }

    private mutating func beginRunning(
        _ lease: Lease, startTimer: Int?, inline: Bool, waited: UInt64, holdsPermit: Bool, now: UInt64
    ) -> Action {
        state = .running(Running(lease: lease, since: now, waited: waited, holdsPermit: holdsPermit))
        return .run(Run(
            lease: lease, inline: inline, cancelTimer: startTimer, startToClose: configuration.startToClose,
            heartbeatTimeout: configuration.heartbeatTimeout, startedAt: now))
    }

    // MARK: - Running

    /// The code's task exists (it may have ended already).
    package mutating func started(_ work: Work) -> Action {
        switch takeState() {
        case .running(var running):
            running.work = work
            state = .running(running)
            return .none
        case .cancelling(var running):
            running.work = work
            state = .cancelling(running)
            return .cancelWork(work)  // cancelled before its task was known
        case let other:
            state = other
            return .cancelWork(work)  // a timeout or a stop came first
        }
    }

    /// A timer of ``Action/run(_:)``, ``Action/requestSlot(ticket:startTimeout:)`` or
    /// ``Action/checkHeartbeat(after:)`` was armed under `id`.
    /// - Returns: ``Action/cancelTimer(_:)`` when the attempt no longer needs it.
    package mutating func timerArmed(_ timer: Timer, id: Int) -> Action {
        switch (timer, takeState()) {
        case (.scheduleToStart, .waitingForSlot(var waiting)):
            waiting.startTimer = id
            state = .waitingForSlot(waiting)
        case (.scheduleToStart, .warming(var warming)):
            warming.startTimer = id
            state = .warming(warming)
        case (.scheduleToStart, .waitingForPermit(var holding)):
            holding.startTimer = id
            state = .waitingForPermit(holding)
        case (.startToClose, .running(var running)):
            running.closeTimer = id
            state = .running(running)
        case (.startToClose, .cancelling(var running)):
            running.closeTimer = id
            state = .cancelling(running)
        case (.heartbeatCheck, .running(var running)):
            let kept = running.heartbeatCheckArmed(id)
            state = .running(running)
            if !kept { return .cancelTimer(id) }
        case (.heartbeatCheck, .cancelling(var running)):
            let kept = running.heartbeatCheckArmed(id)
            state = .cancelling(running)
            if !kept { return .cancelTimer(id) }
        case (_, let other):
            state = other
            return .cancelTimer(id)  // settled, or its code started: too late
        }
        return .none
    }

    /// A heartbeat from the code.
    package mutating func heartbeat(_ details: Data?, now: UInt64) -> HeartbeatAction {
        switch takeState() {
        case .running(var running):
            let action = running.beat(details, now: now, interval: configuration.heartbeatJournalNanos)
            state = .running(running)
            return action
        case .cancelling(var running):
            let action = running.beat(details, now: now, interval: configuration.heartbeatJournalNanos)
            state = .cancelling(running)
            return action
        case let other:
            state = other
            return .rejected
        }
    }

    /// The heartbeat check armed by ``Action/checkHeartbeat(after:)`` is due: the attempt times out if
    /// it has been quiet for the heartbeat timeout, or the check is armed again for when it could be.
    /// (One timer per check, not per heartbeat.)
    package mutating func heartbeatCheckDue(now: UInt64) -> Action {
        guard let limit = configuration.heartbeatTimeout else { return .none }
        let lastBeat: UInt64
        switch state {
        case .running(let running), .cancelling(let running): lastBeat = running.lastBeat
        case .issued, .waitingForSlot, .warming, .waitingForPermit, .settled: return .none
        }
        let quiet = now &- lastBeat
        let limitNanos = UInt64(max(0, limit.milliseconds)) * 1_000_000
        if quiet >= limitNanos { return timedOut(.heartbeat, now: now) }
        return .checkHeartbeat(after: .nanoseconds(Int64(limitNanos - quiet)))
    }

    // MARK: - Endings

    /// The code returned its output.
    package mutating func completed(_ output: Data, now: UInt64) -> Action {
        switch phase {
        case .running, .cancelling: settle(.completed(output), now: now)
        case .issued, .waitingForSlot, .warming, .waitingForPermit, .settled: .none  // late: it ended otherwise
        }
    }

    /// The code threw.
    /// - Parameter slotServes: the slot may serve again whatever the pool's recycling policy (a
    ///   process that answered with an error is in service).
    package mutating func failed(_ error: any Error, slotServes: Bool = false, now: UInt64) -> Action {
        switch phase {
        case .running: settle(.failed(.threw(error)), slotServes: slotServes, now: now)
        case .cancelling where error is CancellationError: settle(.cancelled(nil), now: now)  // stopped as asked
        case .cancelling: settle(.cancelled(.threw(error)), slotServes: slotServes, now: now)
        case .issued, .waitingForSlot, .warming, .waitingForPermit, .settled: .none
        }
    }

    /// A timer of the attempt fired (``TimeoutKind/scheduleToStart`` while it waits,
    /// ``TimeoutKind/startToClose`` while it runs), or the activity's ``TimeoutKind/scheduleToClose``
    /// deadline passed (any time before the attempt settled).
    /// - Returns: ``Action/settle(_:)``, or nothing when the timeout does not apply any more.
    package mutating func timedOut(_ kind: TimeoutKind, now: UInt64) -> Action {
        switch phase {
        case .settled:
            return .none
        case .issued, .waitingForSlot, .warming, .waitingForPermit:
            guard kind == .scheduleToStart || kind == .scheduleToClose else { return .none }  // only running code has the others
            return settle(.failed(.timedOut(kind)), now: now)
        case .running:
            guard kind != .scheduleToStart else { return .none }  // the code started as the timer fired
            return settle(.failed(.timedOut(kind)), now: now)
        case .cancelling:
            guard kind != .scheduleToStart else { return .none }
            return settle(.cancelled(.timedOut(kind)), now: now)
        }
    }

    /// The workflow cancelled the activity: an attempt that waits ends now; running code is asked to
    /// stop (``Action/cancelWork(_:)``), and its end then counts as a cancellation.
    package mutating func cancelRequested(now: UInt64) -> Action {
        switch phase {
        case .issued, .waitingForSlot, .warming, .waitingForPermit:
            return settle(.cancelled(nil), now: now)
        case .cancelling, .settled:
            return .none
        case .running:
            guard case .running(let running) = takeState() else { return .none }  // it is (checked above)
            let work = running.work
            state = .cancelling(running)
            return work.map { .cancelWork($0) } ?? .none  // else started(_:) cancels it
        }
    }

    /// The worker stops driving the run (it is stopping, or the run ended or is held elsewhere).
    package mutating func workerStopping(now: UInt64) -> Action {
        isSettled ? .none : settle(.stopped, now: now)
    }

    /// Ends the attempt: everything it holds goes into the settlement, and the state becomes settled.
    private mutating func settle(_ ending: Ending, slotServes: Bool = false, now: UInt64) -> Action {
        var settlement = Settlement(ending: ending)
        switch takeState() {  // leaves it settled
        case .issued, .settled:
            break
        case .waitingForSlot(let waiting):
            settlement.slotTicket = waiting.ticket
            settlement.startTimer = waiting.startTimer
        case .warming(let warming):
            settlement.startTimer = warming.startTimer
            settlement.queueNanos = warming.waited
        case .waitingForPermit(let holding):
            settlement.permitTicket = holding.permitTicket
            settlement.startTimer = holding.startTimer
            settlement.queueNanos = holding.waited
            settlement.lease = holding.lease  // back into service: no code ran on it
        case .running(let running), .cancelling(let running):
            settlement.closeTimer = running.closeTimer
            settlement.heartbeatTimer = running.heartbeatTimer
            settlement.queueNanos = running.waited
            settlement.runNanos = now &- running.since
            settlement.heartbeat = running.details
            settlement.lease = running.lease
            settlement.releasePermit = running.holdsPermit
            switch ending {
            case .failed(.timedOut), .cancelled(.timedOut?), .stopped:
                settlement.work = running.work  // cut off: stop the code (a process is killed)
            case .completed, .failed(.threw), .cancelled(nil), .cancelled(.threw?):
                break  // its code ended by itself
            }
            settlement.retire = retires(ending, slotServes: slotServes)
        }
        return .settle(settlement)
    }

    /// Whether the slot of an attempt whose code ran is replaced rather than kept in service.
    private func retires(_ ending: Ending, slotServes: Bool) -> Bool {
        switch ending {
        case .completed:
            false
        case .failed(.threw), .cancelled(.threw?):
            // A process that answered with an error (or with output of the wrong shape) is in
            // service; one that crashed or broke the protocol is unhealthy and replaced regardless.
            configuration.recycleAfterFailure && !slotServes
        case .failed(.timedOut), .cancelled(.timedOut?), .cancelled(nil), .stopped:
            true  // its code was cut off, and may still use the slot
        }
    }
}
