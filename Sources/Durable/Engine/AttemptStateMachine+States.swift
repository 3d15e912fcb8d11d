package import Foundation

/// How an attempt ends, what its machine asks for, and its states.
extension AttemptStateMachine {
    /// How an attempt ended: the one vocabulary for it.
    package enum Ending: Sendable {
        /// Its code returned this output.
        case completed(Data)
        /// Its code threw, it timed out, or it could not get a slot.
        case failed(Failure)
        /// The workflow cancelled the activity. `nil` when the attempt stopped as asked: before its code
        /// ran, or its code threw `CancellationError`; otherwise how its cancelled code ended instead.
        case cancelled(Failure?)
        /// The worker stopped driving the run: nothing is recorded (another worker takes the run over).
        case stopped

        /// Whether a timeout ended it.
        package var timedOut: Bool {
            switch self {
            case .failed(.timedOut), .cancelled(.timedOut?): true
            case .completed, .failed(.threw), .cancelled(.threw?), .cancelled(nil), .stopped: false
            }
        }
    }

    /// Why an attempt did not complete.
    package enum Failure: Sendable {
        case threw(any Error)
        case timedOut(TimeoutKind)
    }

    /// The timers an attempt arms.
    package enum Timer: Sendable, Equatable {
        /// The schedule-to-start timeout, armed when it asks for a slot; cancelled when its code starts.
        case scheduleToStart
        /// The start-to-close timeout, armed when its code starts.
        case startToClose
        /// The next heartbeat check (``heartbeatCheckDue(now:)``).
        case heartbeatCheck
    }

    /// What the caller must do.
    package enum Action: Sendable {
        case none
        /// Arm the schedule-to-start timer for `startTimeout`, if any (report ``timerArmed(_:id:)``),
        /// ask the pool for a slot with this ticket (report ``slotGranted(_:waited:permitTicket:now:)``,
        /// ``coldSlotGranted(slot:waited:)`` or ``slotUnavailable(_:now:)``), then report
        /// ``slotRequestReturned()``.
        case requestSlot(ticket: Int, startTimeout: Duration?)
        /// Warm this slot, then report ``slotGranted(_:waited:permitTicket:now:)`` or
        /// ``slotUnavailable(_:now:)``.
        case warmUp(slot: Int)
        /// Ask for a worker-wide permit with this ticket; report ``permitGranted(now:)``.
        case requestPermit(ticket: Int)
        /// Start the code (see ``Run``) and report ``started(_:)``.
        case run(Run)
        /// A slot granted after the attempt ended: give it back, in service.
        case releaseSlot(Lease)
        /// A permit granted after the attempt ended: give it back.
        case releasePermit
        /// Cancel the code's task.
        case cancelWork(Work)
        case cancelTimer(Int)
        /// Arm the next heartbeat check (report ``timerArmed(_:id:)`` with ``Timer/heartbeatCheck``, then
        /// ``heartbeatCheckDue(now:)`` when it fires).
        case checkHeartbeat(after: Duration)
        /// The attempt ended: carry out the settlement and report its ending.
        case settle(Settlement)
    }

    /// What ``Action/run(_:)`` asks for: in this order, cancel the schedule-to-start timer, arm the
    /// start-to-close timer and the first heartbeat check (reporting them), then start the code on
    /// the lease's resource, on this thread if `inline`.
    package struct Run: Sendable {
        package var lease: Lease
        package var inline: Bool
        package var cancelTimer: Int?
        package var startToClose: Duration?
        /// Arm the first heartbeat check after this long.
        package var heartbeatTimeout: Duration?
        /// When the code starts (the `now` of the event that started it).
        package var startedAt: UInt64
    }

    /// What a settled attempt held, to let go of, and how it ended.
    package struct Settlement: Sendable {
        package var ending: Ending
        /// Take the ticket out of the pool's queue (a grant may be on its way all the same).
        package var slotTicket: Int?
        /// Take the ticket out of the permit queue (a permit may be on its way all the same).
        package var permitTicket: Int?
        package var startTimer: Int?
        package var closeTimer: Int?
        package var heartbeatTimer: Int?
        /// The running code to cancel (it ended by itself otherwise, or was asked to stop already).
        package var work: Work?
        /// The slot to give back; replaced rather than kept in service if `retire`.
        package var lease: Lease?
        package var retire = false
        /// Give back the worker-wide permit the code ran under.
        package var releasePermit = false
        /// How long it waited for its slot, once granted.
        package var queueNanos: UInt64?
        /// How long its code ran; `nil` if it never started.
        package var runNanos: UInt64?
        /// The last heartbeat details.
        package var heartbeat: Data?

        init(ending: Ending) {
            self.ending = ending
        }

        /// The timers to cancel.
        package func forEachTimer(_ body: (Int) -> Void) {
            if let startTimer { body(startTimer) }
            if let closeTimer { body(closeTimer) }
            if let heartbeatTimer { body(heartbeatTimer) }
        }

        /// Whether the code started.
        package var codeRan: Bool { runNanos != nil }

        /// Whether the attempt counts as failed in the pool's metrics: not when it completed, stopped
        /// as the workflow asked, or the worker stopped.
        package var countsAsFailure: Bool {
            switch ending {
            case .failed, .cancelled(_?): true
            case .completed, .cancelled(nil), .stopped: false
            }
        }
    }

    /// What a heartbeat asks for.
    package enum HeartbeatAction: Sendable, Equatable {
        case accepted
        /// Journal these new details.
        case journal(Data)
        /// The attempt has ended: the code gets `CancellationError`.
        case rejected
    }

    // MARK: States

    /// The cases of ``State``, without their payloads.
    package enum Phase: Sendable, Equatable {
        case issued, waitingForSlot, warming, waitingForPermit, running, cancelling, settled
    }

    package enum State: Sendable {
        /// Issued; it has not asked for a slot yet.
        case issued
        /// Queued in its pool.
        case waitingForSlot(Waiting)
        /// A new slot is warmed for it.
        case warming(Warming)
        /// It holds its slot and waits for a worker-wide permit.
        case waitingForPermit(Holding)
        /// Its code runs.
        case running(Running)
        /// Its code runs and was asked to stop: the workflow cancelled the activity.
        case cancelling(Running)
        /// It ended; what it held is let go of.
        case settled

    }

    package struct Waiting: Sendable {
        package var ticket: Int
        package var startTimer: Int?
        package var inline: Bool
    }

    package struct Warming: Sendable {
        package var startTimer: Int?
        package var waited: UInt64
    }

    package struct Holding: Sendable {
        package var lease: Lease
        package var permitTicket: Int
        package var startTimer: Int?
        package var inline: Bool
        package var waited: UInt64
    }

    package struct Running: Sendable {
        package var lease: Lease
        package var work: Work?
        package var since: UInt64
        package var waited: UInt64
        package var holdsPermit: Bool
        package var closeTimer: Int?
        package var heartbeatTimer: Int?
        package var lastBeat: UInt64
        /// The latest heartbeat details, and the last ones journaled and when.
        package var details: Data?
        var journaled: Data?
        var journaledAt: UInt64?

        init(lease: Lease, since: UInt64, waited: UInt64, holdsPermit: Bool) {
            self.lease = lease
            self.since = since
            self.waited = waited
            self.holdsPermit = holdsPermit
            self.lastBeat = since  // the first heartbeat is due a heartbeat timeout after the start
        }

        /// Each check replaces the one that fired. Timer ids grow: a report that comes after the next
        /// check's (its timer fired before it was reported) is moot. - Returns: whether it is kept.
        mutating func heartbeatCheckArmed(_ id: Int) -> Bool {
            if let current = heartbeatTimer, current > id { return false }
            heartbeatTimer = id
            return true
        }

        /// Journals new details at most once per interval; the latest also go with a failure.
        mutating func beat(_ new: Data?, now: UInt64, interval: UInt64) -> HeartbeatAction {
            lastBeat = now
            guard let new else { return .accepted }
            details = new
            if new == journaled { return .accepted }
            if let journaledAt, now &- journaledAt < interval { return .accepted }
            journaledAt = now
            journaled = new
            return .journal(new)
        }
    }
}
