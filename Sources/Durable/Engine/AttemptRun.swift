import Dispatch
import Foundation
import Synchronization

/// One attempt of an ``ActivityExecution``: what it holds (queue tickets, a slot, timers, its task)
/// and its heartbeats. It is settled exactly once; ``settle()`` hands what it held to the one caller
/// that settled it.
final class AttemptRun: HeartbeatSink {
    let number: Int
    /// The registration current when the attempt was issued (its pool and code).
    let registration: ActivityRegistration
    private let execution: ActivityExecution  // the cycle ends when the execution drops its attempt
    private let issuedAt = DispatchTime.now().uptimeNanoseconds

    /// What the attempt holds when it is settled.
    struct Held {
        var timers: [Int] = []
        var heartbeatTimer: Int?
        var slotTicket: Int?
        var permitTicket: Int?
        var lease: Lease?
        var task: Task<Void, Never>?
        var queueNanos: UInt64?
        /// Set when the attempt's code had started running.
        var runNanos: UInt64?
        var heartbeat: Data?
    }

    private struct State {
        var held = Held()
        var settled = false
        var startTimer = 0
        var runningSince: UInt64?
        /// The attempt may start on the current thread (see ``ActivityExecution``).
        var inline = false
        var lastBeat: UInt64 = 0
        var journaledBeat: UInt64?
        var journaledDetails: Data?
    }

    private let state = Mutex(State())

    init(execution: ActivityExecution, registration: ActivityRegistration, number: Int) {
        self.execution = execution
        self.registration = registration
        self.number = number
    }

    var isSettled: Bool { state.withLock { $0.settled } }

    /// Keeps a deadline to cancel when the attempt is settled (or cancels it now if it is).
    func addTimer(_ timer: Int, startTimer: Bool = false) {
        let late = state.withLock { state -> Bool in
            guard !state.settled else { return true }
            state.held.timers.append(timer)
            if startTimer { state.startTimer = timer }
            return false
        }
        if late { execution.cancelTimer(timer) }
    }

    /// The heartbeat check re-arms itself: it replaces its own deadline rather than adding one.
    func setHeartbeatTimer(_ timer: Int) {
        let late = state.withLock { state -> Bool in
            guard !state.settled else { return true }
            state.held.heartbeatTimer = timer
            return false
        }
        if late { execution.cancelTimer(timer) }
    }

    /// Records the slot ticket before the attempt queues. - Returns: `false` when it is settled already.
    func setSlotTicket(_ ticket: Int, inline: Bool) -> Bool {
        state.withLock { state in
            guard !state.settled else { return false }
            state.held.slotTicket = ticket
            state.inline = inline
            return true
        }
    }

    /// Records the permit ticket before the attempt waits. - Returns: `false` when it is settled already.
    func setPermitTicket(_ ticket: Int) -> Bool {
        state.withLock { state in
            guard !state.settled else { return false }
            state.held.permitTicket = ticket
            return true
        }
    }

    /// The request for a slot has returned: a grant that comes later must not run on its thread.
    func endInlineWindow() { state.withLock { $0.inline = false } }

    /// The slot was granted. - Returns: the time the attempt waited for it.
    func markGranted() -> UInt64 {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { state in
            state.held.slotTicket = nil
            state.held.queueNanos = now &- issuedAt
            return now &- issuedAt
        }
    }

    /// Takes the slot. - Returns: `false` when the attempt was settled meanwhile (give the slot back).
    func hold(_ lease: Lease) -> Bool {
        state.withLock { state in
            guard !state.settled else { return false }
            state.held.lease = lease
            return true
        }
    }

    /// The code is about to run. - Returns: the schedule-to-start timer to cancel (0 if none) and
    /// whether the code may start on this thread, or `nil` when the attempt was settled meanwhile.
    func beginRunning() -> (startTimer: Int, inline: Bool)? {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { state in
            guard !state.settled else { return nil }
            state.runningSince = now
            state.lastBeat = now
            state.held.permitTicket = nil
            state.held.timers.removeAll { $0 == state.startTimer }
            defer { state.inline = false }
            return (state.startTimer, state.inline)
        }
    }

    func setTask(_ task: Task<Void, Never>) {
        let settled = state.withLock { state -> Bool in
            if !state.settled { state.held.task = task }
            return state.settled
        }
        if settled { task.cancel() }
    }

    /// Cancels the attempt's code if it runs. - Returns: `false` when it has not started (settle it instead).
    func cancelRunningCode() -> Bool {
        let (running, task) = state.withLock { ($0.runningSince != nil && !$0.settled, $0.held.task) }
        task?.cancel()  // a task not set yet is cancelled by setTask, which finds the attempt settled
        return running
    }

    /// Marks the attempt settled. - Returns: what it held, to the first caller only.
    func settle() -> Held? {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { state in
            guard !state.settled else { return nil }
            state.settled = true
            var held = state.held
            held.runNanos = state.runningSince.map { now &- $0 }
            if let timer = held.heartbeatTimer { held.timers.append(timer) }
            state.held = Held()
            return held
        }
    }

    func nanosSinceHeartbeat() -> UInt64 {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { now &- $0.lastBeat }
    }

    // MARK: - HeartbeatSink

    func heartbeat(_ details: Data?) throws {
        let now = DispatchTime.now().uptimeNanoseconds
        let interval = execution.heartbeatJournalNanos
        let journal = try state.withLock { state throws -> Bool in
            guard !state.settled else { throw CancellationError() }
            state.lastBeat = now
            guard let details else { return false }
            state.held.heartbeat = details
            // Journal new details at most once per interval; the latest also goes with a failure.
            if details == state.journaledDetails { return false }
            if let last = state.journaledBeat, now &- last < interval { return false }
            state.journaledBeat = now
            state.journaledDetails = details
            return true
        }
        if journal, let details { execution.journalHeartbeat(self, details) }
    }
}
