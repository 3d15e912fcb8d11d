import Dispatch
import Foundation
import Synchronization

/// One attempt of an ``ActivityExecution``: what it holds (queue tickets, a slot, timers, its task)
/// and its heartbeats. It is settled exactly once; ``settle()`` hands what it held to the one caller
/// that settled it.
final class AttemptRun: HeartbeatSink {
    let number: Int
    private let execution: ActivityExecution  // the cycle ends when the execution drops its attempt
    private let issuedAt = DispatchTime.now().uptimeNanoseconds

    /// What the attempt holds when it is settled.
    struct Held {
        var timers: [Int] = []
        var slotTicket: Int?
        var permitTicket: Int?
        var lease: Lease?
        var task: Task<Void, Never>?
        var queueNanos: UInt64?
        /// Set when the attempt's code started running.
        var runNanos: UInt64?
        var heartbeat: Data?
    }

    private struct State {
        var held = Held()
        var settled = false
        var startTimer = 0
        var grantedAt: UInt64?
        var runningSince: UInt64?
        var lastBeat: UInt64 = 0
        var journaledBeat: UInt64?
    }

    private let state = Mutex(State())

    init(execution: ActivityExecution, number: Int) {
        self.execution = execution
        self.number = number
    }

    var isSettled: Bool { state.withLock { $0.settled } }

    func addTimer(_ timer: Int, startTimer: Bool = false) {
        let late = state.withLock { state -> Bool in
            guard !state.settled else { return true }
            state.held.timers.append(timer)
            if startTimer { state.startTimer = timer }
            return false
        }
        if late { execution.cancelTimer(timer) }
    }

    func setSlotTicket(_ ticket: Int) {
        state.withLock { state in
            if state.grantedAt == nil { state.held.slotTicket = ticket }
        }
    }

    func setPermitTicket(_ ticket: Int) {
        state.withLock { state in
            if state.runningSince == nil { state.held.permitTicket = ticket }
        }
    }

    /// The slot was granted. - Returns: the time the attempt waited for it.
    func markGranted() -> UInt64 {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { state in
            state.grantedAt = now
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

    /// The code is about to run. - Returns: the schedule-to-start timer to cancel (0 if none), or
    /// `nil` when the attempt was settled meanwhile.
    func beginRunning() -> Int? {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { state in
            guard !state.settled else { return nil }
            state.runningSince = now
            state.lastBeat = now
            state.held.permitTicket = nil
            state.held.timers.removeAll { $0 == state.startTimer }
            return state.startTimer
        }
    }

    func setTask(_ task: Task<Void, Never>) {
        let settled = state.withLock { state -> Bool in
            if !state.settled { state.held.task = task }
            return state.settled
        }
        if settled { task.cancel() }
    }

    /// The task of an attempt whose code is running, `nil` before (or after).
    var runningTask: Task<Void, Never>? {
        state.withLock { $0.runningSince != nil && !$0.settled ? $0.held.task : nil }
    }

    /// Marks the attempt settled. - Returns: what it held, to the first caller only.
    func settle() -> Held? {
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLock { state in
            guard !state.settled else { return nil }
            state.settled = true
            var held = state.held
            held.runNanos = state.runningSince.map { now &- $0 }
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
            if let last = state.journaledBeat, now &- last < interval { return false }
            state.journaledBeat = now
            return true
        }
        if journal, let details { execution.journalHeartbeat(self, details) }
    }
}
