import Durable
import Foundation
import Testing

/// Leases and tasks are labels: `"pool#1"` is the slot, `"task"` the running code.
private typealias Machine = AttemptStateMachine<String, String>

private struct Boom: Error, CustomStringConvertible {
    var description: String { "boom" }
}

/// Times are uptime nanoseconds; one second is `s`.
private let s: UInt64 = 1_000_000_000

private func makeMachine(
    scheduleToStart: Duration? = nil, startToClose: Duration? = nil, heartbeatTimeout: Duration? = nil,
    recycleAfterFailure: Bool = true
) -> Machine {
    Machine(number: 3, configuration: .init(
        scheduleToStart: scheduleToStart, startToClose: startToClose, heartbeatTimeout: heartbeatTimeout,
        recycleAfterFailure: recycleAfterFailure, heartbeatJournalNanos: 1 * s))
}

/// Where an attempt can be when something ends it.
enum AttemptStage: String, CaseIterable, CustomTestStringConvertible {
    case issued, waitingForSlot, warming, waitingForPermit, running, cancelling
    var testDescription: String { rawValue }
    var codeRuns: Bool { self == .running || self == .cancelling }
}

/// A machine brought to `stage`: ticket 7 in the pool, start timer 1; slot `pool#1` granted after 2 s
/// (cold: slot 5 warmed), permit ticket 9; its code started at 2 s as `task`, start-to-close timer 2.
private func machine(at stage: AttemptStage, heartbeatTimeout: Duration? = nil) -> Machine {
    var machine = makeMachine(scheduleToStart: .seconds(30), startToClose: .seconds(60), heartbeatTimeout: heartbeatTimeout)
    if stage == .issued { return machine }
    _ = machine.requestSlot(ticket: 7, inline: false)
    _ = machine.timerArmed(.scheduleToStart, id: 1)
    machine.slotRequestReturned()
    switch stage {
    case .waitingForSlot:
        return machine
    case .warming:
        _ = machine.coldSlotGranted(slot: 5, waited: 2 * s)
        return machine
    case .waitingForPermit:
        _ = machine.slotGranted("pool#1", waited: 2 * s, permitTicket: 9, now: 2 * s)
        return machine
    case .running, .cancelling:
        _ = machine.slotGranted("pool#1", waited: 2 * s, permitTicket: nil, now: 2 * s)
        _ = machine.timerArmed(.startToClose, id: 2)
        _ = machine.started("task")
        if stage == .cancelling { _ = machine.cancelRequested(now: 3 * s) }
        return machine
    case .issued:
        return machine
    }
}

// MARK: - Describing actions

private func describe(_ action: Machine.Action) -> String {
    switch action {
    case .none: "none"
    case .requestSlot(let ticket, let timeout): "request slot \(ticket)" + (timeout.map { ", start timer \($0)" } ?? "")
    case .warmUp(let slot): "warm slot \(slot)"
    case .requestPermit(let ticket): "request permit \(ticket)"
    case .run(let run): describe(run)
    case .releaseSlot(let lease): "release \(lease)"
    case .releasePermit: "release permit"
    case .cancelWork(let work): "cancel \(work)"
    case .cancelTimer(let id): "cancel timer \(id)"
    case .checkHeartbeat(let delay): "check heartbeat after \(delay)"
    case .settle(let settlement): describe(settlement)
    }
}

private func describe(_ run: Machine.Run) -> String {
    var parts = ["run on \(run.lease)"]
    if run.inline { parts.append("inline") }
    if let timer = run.cancelTimer { parts.append("cancel timer \(timer)") }
    if let limit = run.startToClose { parts.append("start-to-close \(limit)") }
    if let limit = run.heartbeatTimeout { parts.append("heartbeat check after \(limit)") }
    return parts.joined(separator: ", ")
}

private func describe(_ ending: Machine.Ending) -> String {
    switch ending {
    case .completed(let output): "completed \(String(decoding: output, as: UTF8.self))"
    case .failed(let failure): "failed: \(describe(failure))"
    case .cancelled(nil): "cancelled"
    case .cancelled(let failure?): "cancelled, then \(describe(failure))"
    case .stopped: "stopped"
    }
}

private func describe(_ failure: Machine.Failure) -> String {
    switch failure {
    case .threw(let error): "threw \(error)"
    case .timedOut(let kind): "timed out (\(kind.rawValue))"
    }
}

/// E.g. `"settle: timed out (startToClose) | timers 2 | cancel task | retire pool#1 | ran 5s | failure"`.
private func describe(_ settlement: Machine.Settlement) -> String {
    var parts = ["settle: \(describe(settlement.ending))"]
    if let ticket = settlement.slotTicket { parts.append("dequeue slot ticket \(ticket)") }
    if let ticket = settlement.permitTicket { parts.append("dequeue permit ticket \(ticket)") }
    var timers: [String] = []
    settlement.forEachTimer { timers.append("\($0)") }
    if !timers.isEmpty { parts.append("timers \(timers.joined(separator: ","))") }
    if let work = settlement.work { parts.append("cancel \(work)") }
    if let lease = settlement.lease { parts.append("\(settlement.retire ? "retire" : "release") \(lease)") }
    if settlement.releasePermit { parts.append("release permit") }
    if let run = settlement.runNanos { parts.append("ran \(Double(run) / Double(s))s") }
    if let beat = settlement.heartbeat { parts.append("heartbeat \(String(decoding: beat, as: UTF8.self))") }
    if settlement.countsAsFailure { parts.append("failure") }
    return parts.joined(separator: " | ")
}

private func endings(_ action: Machine.Action) -> [String] {
    if case .settle(let settlement) = action { [describe(settlement.ending)] } else { [] }
}

// MARK: - Tests

@Suite struct AttemptStateMachineTests {
    // MARK: Getting a slot

    @Test func aWarmSlotStartsTheCodeWhichCompletesTheAttemptAndKeepsTheSlot() {
        var machine = makeMachine(startToClose: .seconds(60))
        #expect(describe(machine.requestSlot(ticket: 7, inline: false)) == "request slot 7")
        machine.slotRequestReturned()
        #expect(describe(machine.slotGranted("pool#1", waited: 1, permitTicket: nil, now: 1 * s))
            == "run on pool#1, start-to-close 60.0 seconds")
        #expect(describe(machine.timerArmed(.startToClose, id: 2)) == "none")
        #expect(describe(machine.started("task")) == "none")
        #expect(describe(machine.completed(Data("42".utf8), now: 4 * s))
            == "settle: completed 42 | timers 2 | release pool#1 | ran 3.0s")
        #expect(machine.isSettled)
    }

    @Test func theCodeStartsInlineOnlyWhenItsSlotCameBeforeTheRequestReturned() {
        var early = makeMachine()
        _ = early.requestSlot(ticket: 7, inline: true)
        #expect(describe(early.slotGranted("pool#1", waited: 0, permitTicket: nil, now: 0)) == "run on pool#1, inline")

        var late = makeMachine()
        _ = late.requestSlot(ticket: 7, inline: true)
        late.slotRequestReturned()
        #expect(describe(late.slotGranted("pool#1", waited: 0, permitTicket: nil, now: 0)) == "run on pool#1")
    }

    @Test func aColdSlotIsWarmedAndItsQueueWaitEndsWhenThePoolMadeIt() {
        var machine = makeMachine()
        _ = machine.requestSlot(ticket: 7, inline: true)
        #expect(describe(machine.coldSlotGranted(slot: 5, waited: 2 * s)) == "warm slot 5")
        #expect(describe(machine.slotGranted("pool#5", waited: 9 * s, permitTicket: nil, now: 9 * s))
            == "run on pool#5", "never inline after a warm-up")
        _ = machine.started("task")
        guard case .settle(let settlement) = machine.completed(Data(), now: 10 * s) else {
            Issue.record("not settled")
            return
        }
        #expect(settlement.queueNanos == 2 * s)
    }

    @Test func underAWorkerLimitTheAttemptHoldsItsSlotUntilItGetsAPermit() {
        var machine = makeMachine()
        _ = machine.requestSlot(ticket: 7, inline: false)
        #expect(describe(machine.slotGranted("pool#1", waited: 0, permitTicket: 9, now: 0)) == "request permit 9")
        #expect(describe(machine.permitGranted(now: 1 * s)) == "run on pool#1")
        _ = machine.started("task")
        #expect(describe(machine.completed(Data("1".utf8), now: 2 * s))
            == "settle: completed 1 | release pool#1 | release permit | ran 1.0s")
    }

    @Test func noSlotForTheAttemptFailsIt() {
        var waiting = machine(at: .waitingForSlot)
        #expect(describe(waiting.slotUnavailable(Boom(), now: s))
            == "settle: failed: threw boom | dequeue slot ticket 7 | timers 1 | failure")
        var warming = machine(at: .warming)
        #expect(describe(warming.slotUnavailable(Boom(), now: s)) == "settle: failed: threw boom | timers 1 | failure")
    }

    // MARK: Timeouts

    @Test func scheduleToStartTimeoutWhileWaitingForASlotTakesItsTicketOutOfTheQueue() {
        var machine = makeMachine(scheduleToStart: .seconds(5))
        #expect(describe(machine.requestSlot(ticket: 7, inline: false)) == "request slot 7, start timer 5.0 seconds")
        _ = machine.timerArmed(.scheduleToStart, id: 1)
        #expect(describe(machine.timedOut(.scheduleToStart, now: 5 * s))
            == "settle: failed: timed out (scheduleToStart) | dequeue slot ticket 7 | timers 1 | failure")
        #expect(describe(machine.slotGranted("pool#1", waited: 5 * s, permitTicket: nil, now: 5 * s)) == "release pool#1",
                "a grant already on its way goes back into service")
    }

    @Test func scheduleToStartTimeoutWhileWaitingForAPermitGivesTheSlotBackInService() {
        var machine = machine(at: .waitingForPermit)
        #expect(describe(machine.timedOut(.scheduleToStart, now: 30 * s))
            == "settle: failed: timed out (scheduleToStart) | dequeue permit ticket 9 | timers 1 | release pool#1 | failure")
        #expect(describe(machine.permitGranted(now: 30 * s)) == "release permit", "a permit on its way goes back")
    }

    @Test func scheduleToStartTimeoutWhileWarmingGivesTheWarmedSlotBack() {
        var machine = machine(at: .warming)
        #expect(endings(machine.timedOut(.scheduleToStart, now: 30 * s)) == ["failed: timed out (scheduleToStart)"])
        #expect(describe(machine.slotGranted("pool#5", waited: 0, permitTicket: nil, now: 31 * s)) == "release pool#5")
    }

    @Test func theCodeStartingCancelsTheScheduleToStartTimerAndTheTimerFiringLateIsIgnored() {
        var machine = makeMachine(scheduleToStart: .seconds(5))
        _ = machine.requestSlot(ticket: 7, inline: false)
        _ = machine.timerArmed(.scheduleToStart, id: 1)
        #expect(describe(machine.slotGranted("pool#1", waited: 0, permitTicket: nil, now: 0)) == "run on pool#1, cancel timer 1")
        #expect(describe(machine.timedOut(.scheduleToStart, now: 5 * s)) == "none")
        #expect(!machine.isSettled)
    }

    @Test func startToCloseTimeoutCutsOffRunningCodeAndRetiresItsSlot() {
        var machine = machine(at: .running)
        #expect(describe(machine.timedOut(.startToClose, now: 62 * s))
            == "settle: failed: timed out (startToClose) | timers 2 | cancel task | retire pool#1 | ran 60.0s | failure")
        #expect(describe(machine.failed(CancellationError(), now: 62 * s)) == "none", "the cut-off code's end is moot")
    }

    @Test func runningTimeoutsDoNotApplyBeforeTheCodeStarts() {
        for stage in [AttemptStage.issued, .waitingForSlot, .warming, .waitingForPermit] {
            var machine = machine(at: stage)
            #expect(describe(machine.timedOut(.startToClose, now: s)) == "none", "\(stage)")
            #expect(describe(machine.timedOut(.heartbeat, now: s)) == "none", "\(stage)")
            #expect(describe(machine.heartbeatCheckDue(now: s)) == "none", "\(stage)")
            #expect(!machine.isSettled, "\(stage)")
        }
    }

    @Test(arguments: AttemptStage.allCases)
    func scheduleToCloseEndsTheAttemptWhereverItIs(_ stage: AttemptStage) {
        var machine = machine(at: stage)
        let expected = switch stage {
        case .issued: "settle: failed: timed out (scheduleToClose) | failure"
        case .waitingForSlot: "settle: failed: timed out (scheduleToClose) | dequeue slot ticket 7 | timers 1 | failure"
        case .warming: "settle: failed: timed out (scheduleToClose) | timers 1 | failure"
        case .waitingForPermit:
            "settle: failed: timed out (scheduleToClose) | dequeue permit ticket 9 | timers 1 | release pool#1 | failure"
        case .running:
            "settle: failed: timed out (scheduleToClose) | timers 2 | cancel task | retire pool#1 | ran 8.0s | failure"
        case .cancelling:
            "settle: cancelled, then timed out (scheduleToClose) | timers 2 | cancel task | retire pool#1 | ran 8.0s | failure"
        }
        #expect(describe(machine.timedOut(.scheduleToClose, now: 10 * s)) == expected)
        #expect(describe(machine.timedOut(.scheduleToClose, now: 11 * s)) == "none", "once")
    }

    @Test func heartbeatsReArmTheHeartbeatCheckUntilTheCodeFallsQuiet() {
        var machine = machine(at: .running, heartbeatTimeout: .seconds(10))  // code started at 2 s
        _ = machine.timerArmed(.heartbeatCheck, id: 3)
        #expect(machine.heartbeat(nil, now: 6 * s) == .accepted)
        #expect(describe(machine.heartbeatCheckDue(now: 12 * s)) == "check heartbeat after 4.0 seconds",
                "quiet for 6 s of 10: checked again when it could be 10")
        _ = machine.timerArmed(.heartbeatCheck, id: 4)
        #expect(machine.heartbeat(nil, now: 15 * s) == .accepted)
        #expect(describe(machine.heartbeatCheckDue(now: 16 * s)) == "check heartbeat after 9.0 seconds")
        _ = machine.timerArmed(.heartbeatCheck, id: 5)
        #expect(describe(machine.heartbeatCheckDue(now: 25 * s))
            == "settle: failed: timed out (heartbeat) | timers 2,5 | cancel task | retire pool#1 | ran 23.0s | failure")
        #expect(machine.heartbeat(nil, now: 26 * s) == .rejected, "the cut-off code gets CancellationError")
    }

    @Test func theFirstHeartbeatIsDueAHeartbeatTimeoutAfterTheCodeStarted() {
        var machine = makeMachine(heartbeatTimeout: .seconds(10))
        _ = machine.requestSlot(ticket: 7, inline: false)
        #expect(describe(machine.slotGranted("pool#1", waited: 50 * s, permitTicket: nil, now: 50 * s))
            == "run on pool#1, heartbeat check after 10.0 seconds")
        #expect(describe(machine.heartbeatCheckDue(now: 59 * s)) == "check heartbeat after 1.0 seconds",
                "the wait for the slot does not count")
        #expect(endings(machine.heartbeatCheckDue(now: 60 * s)) == ["failed: timed out (heartbeat)"])
    }

    @Test func aHeartbeatCheckReportedAfterTheNextOneIsCancelledNotKept() {
        var machine = machine(at: .running, heartbeatTimeout: .seconds(10))
        #expect(describe(machine.timerArmed(.heartbeatCheck, id: 8)) == "none")
        #expect(describe(machine.timerArmed(.heartbeatCheck, id: 6)) == "cancel timer 6")
        #expect(describe(machine.timedOut(.startToClose, now: 3 * s)).contains("timers 2,8"))
    }

    @Test func heartbeatDetailsAreJournaledWhenNewAtMostOncePerIntervalAndGoWithTheFailure() {
        var machine = machine(at: .running)
        let page = { (n: Int) in Data("\(n)".utf8) }
        #expect(machine.heartbeat(page(1), now: 3 * s) == .journal(page(1)))
        #expect(machine.heartbeat(page(1), now: 5 * s) == .accepted, "the same details again")
        #expect(machine.heartbeat(page(2), now: 5 * s + 1) == .journal(page(2)))
        #expect(machine.heartbeat(page(3), now: 5 * s + 2) == .accepted, "within the interval")
        #expect(machine.heartbeat(nil, now: 6 * s) == .accepted)
        #expect(describe(machine.failed(Boom(), now: 7 * s))
            == "settle: failed: threw boom | timers 2 | retire pool#1 | ran 5.0s | heartbeat 3 | failure")
    }

    // MARK: Cancellation

    @Test(arguments: [AttemptStage.issued, .waitingForSlot, .warming, .waitingForPermit])
    func cancellingAWaitingAttemptEndsItAtOnceAndLetsGoOfWhatItHolds(_ stage: AttemptStage) {
        var machine = machine(at: stage)
        let expected = switch stage {
        case .waitingForSlot: "settle: cancelled | dequeue slot ticket 7 | timers 1"
        case .warming: "settle: cancelled | timers 1"
        case .waitingForPermit: "settle: cancelled | dequeue permit ticket 9 | timers 1 | release pool#1"
        default: "settle: cancelled"
        }
        #expect(describe(machine.cancelRequested(now: s)) == expected)
        #expect(describe(machine.cancelRequested(now: s)) == "none")
    }

    @Test func cancellingRunningCodeAsksItToStopAndItsCancellationErrorEndsTheAttemptAsCancelled() {
        var machine = machine(at: .running)
        #expect(describe(machine.cancelRequested(now: 3 * s)) == "cancel task")
        #expect(describe(machine.cancelRequested(now: 3 * s)) == "none", "asked once")
        #expect(!machine.isSettled, "the code decides when it stops")
        #expect(describe(machine.failed(CancellationError(), now: 4 * s))
            == "settle: cancelled | timers 2 | retire pool#1 | ran 2.0s")
    }

    @Test func aCancellationBeforeTheCodesTaskIsKnownCancelsTheTaskWhenItIs() {
        var machine = makeMachine()
        _ = machine.requestSlot(ticket: 7, inline: true)
        _ = machine.slotGranted("pool#1", waited: 0, permitTicket: nil, now: 0)
        #expect(describe(machine.cancelRequested(now: 1)) == "none")
        #expect(describe(machine.started("task")) == "cancel task")
    }

    @Test func cancelledCodeThatThrowsAnotherErrorOrTimesOutEndsAsCancelledWithIt() {
        var threw = machine(at: .cancelling)
        #expect(describe(threw.failed(Boom(), now: 4 * s))
            == "settle: cancelled, then threw boom | timers 2 | retire pool#1 | ran 2.0s | failure")
        var timedOut = machine(at: .cancelling)
        #expect(describe(timedOut.timedOut(.startToClose, now: 62 * s))
            == "settle: cancelled, then timed out (startToClose) | timers 2 | cancel task | retire pool#1 | ran 60.0s | failure")
    }

    @Test func cancelledCodeThatCompletesAnywayCompletesTheAttempt() {
        var machine = machine(at: .cancelling)
        #expect(describe(machine.completed(Data("7".utf8), now: 4 * s))
            == "settle: completed 7 | timers 2 | release pool#1 | ran 2.0s")
    }

    // MARK: Races and late events

    @Test func completionRacingATimeoutHasExactlyOneEnding() {
        var completedFirst = machine(at: .running)
        var seen = endings(completedFirst.completed(Data("1".utf8), now: 62 * s))
        seen += endings(completedFirst.timedOut(.startToClose, now: 62 * s))
        seen += endings(completedFirst.timedOut(.scheduleToClose, now: 62 * s))
        #expect(seen == ["completed 1"])

        var timedOutFirst = machine(at: .running)
        seen = endings(timedOutFirst.timedOut(.startToClose, now: 62 * s))
        seen += endings(timedOutFirst.completed(Data("1".utf8), now: 62 * s))
        seen += endings(timedOutFirst.failed(Boom(), now: 62 * s))
        seen += endings(timedOutFirst.cancelRequested(now: 62 * s))
        seen += endings(timedOutFirst.workerStopping(now: 62 * s))
        #expect(seen == ["failed: timed out (startToClose)"])
    }

    @Test func aLateCompletionAfterSettlingIsIgnored() {
        var machine = machine(at: .waitingForSlot)
        _ = machine.cancelRequested(now: s)
        #expect(describe(machine.completed(Data("1".utf8), now: 2 * s)) == "none")
        #expect(describe(machine.failed(Boom(), now: 2 * s)) == "none")
        #expect(machine.isSettled)
    }

    @Test func whatComesAfterTheAttemptSettledIsGivenBackOrCancelled() {
        var machine = machine(at: .waitingForSlot)
        _ = machine.workerStopping(now: s)
        #expect(describe(machine.requestSlot(ticket: 8, inline: false)) == "none")
        #expect(describe(machine.coldSlotGranted(slot: 5, waited: s)) == "warm slot 5", "warmed for the pool")
        #expect(describe(machine.slotGranted("pool#5", waited: s, permitTicket: nil, now: s)) == "release pool#5")
        #expect(describe(machine.permitGranted(now: s)) == "release permit")
        #expect(describe(machine.started("task")) == "cancel task")
        #expect(describe(machine.timerArmed(.startToClose, id: 4)) == "cancel timer 4")
        #expect(describe(machine.timerArmed(.heartbeatCheck, id: 5)) == "cancel timer 5")
        #expect(machine.heartbeat(nil, now: s) == .rejected)
    }

    @Test(arguments: AttemptStage.allCases)
    func theWorkerStoppingEndsTheAttemptWhereverItIsAndCutsOffRunningCode(_ stage: AttemptStage) {
        var machine = machine(at: stage)
        let expected = switch stage {
        case .issued: "settle: stopped"
        case .waitingForSlot: "settle: stopped | dequeue slot ticket 7 | timers 1"
        case .warming: "settle: stopped | timers 1"
        case .waitingForPermit: "settle: stopped | dequeue permit ticket 9 | timers 1 | release pool#1"
        case .running, .cancelling: "settle: stopped | timers 2 | cancel task | retire pool#1 | ran 3.0s"
        }
        #expect(describe(machine.workerStopping(now: 5 * s)) == expected)
        #expect(describe(machine.workerStopping(now: 5 * s)) == "none")
    }

    // MARK: Slots after failures

    @Test func aFailedAttemptsSlotIsReplacedUnlessThePoolKeepsItOrTheSlotStillServes() {
        func settlement(recycle: Bool, serves: Bool) -> String {
            var machine = makeMachine(recycleAfterFailure: recycle)
            _ = machine.requestSlot(ticket: 7, inline: false)
            _ = machine.slotGranted("pool#1", waited: 0, permitTicket: nil, now: 0)
            return describe(machine.failed(Boom(), slotServes: serves, now: s))
        }
        #expect(settlement(recycle: true, serves: false) == "settle: failed: threw boom | retire pool#1 | ran 1.0s | failure")
        #expect(settlement(recycle: true, serves: true) == "settle: failed: threw boom | release pool#1 | ran 1.0s | failure")
        #expect(settlement(recycle: false, serves: false) == "settle: failed: threw boom | release pool#1 | ran 1.0s | failure")
    }
}
