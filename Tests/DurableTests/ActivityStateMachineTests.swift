import Durable
import Foundation
import Testing

/// Attempts are labels: `"a1"`, `"a2"`, ...
private typealias Machine = ActivityStateMachine<String>

private let start = Date(timeIntervalSinceReferenceDate: 0)

/// Retries 1 s, 2 s, 4 s apart, four attempts in all; a schedule-to-close deadline at `start + deadline`.
private func makeMachine(maxAttempts: Int = 4, deadline: TimeInterval? = nil) -> Machine {
    Machine(
        retry: .exponential(initial: .seconds(1), maxAttempts: maxAttempts),
        closeDeadline: deadline.map { start.addingTimeInterval($0) })
}

private func at(_ seconds: TimeInterval) -> Date { start.addingTimeInterval(seconds) }

private func describe(_ action: Machine.Action) -> String {
    switch action {
    case .none: "none"
    case .start(let attempt): "start \(attempt)"
    case .cancelAttempt(let attempt): "cancel \(attempt)"
    case .timeOutAttempt(let attempt, let number): "time out \(attempt) (attempt \(number))"
    case .recordFailure(let attempt, let delay): "record failure of attempt \(attempt), retry after \(delay)"
    case .armRetryTimer(let next, let delay): "arm retry timer for attempt \(next) after \(delay)"
    case .cancelTimer(let id): "cancel timer \(id)"
    case .finish(let finish): "finish \(finish.outcome) at attempt \(finish.attempt)" + describe(finish.timers)
    case .stop(let stop): "stop" + (stop.attempt.map { " \($0)" } ?? "") + describe(stop.timers)
    }
}

private func describe(_ timers: Machine.Timers) -> String {
    let ids = [timers.close.map { "close \($0)" }, timers.retry.map { "retry \($0)" }].compactMap { $0 }
    return ids.isEmpty ? "" : ", cancel " + ids.joined(separator: ", ")
}

/// A machine whose attempt 1 failed and whose retry timer (id 5) runs for attempt 2.
private func waitingToRetry() -> Machine {
    var machine = makeMachine()
    _ = machine.issue("a1", number: 1)
    _ = machine.attemptFailed(1, retryable: true, now: at(1))
    _ = machine.failureRecorded(1)
    _ = machine.retryTimerArmed(5)
    return machine
}

@Suite struct ActivityStateMachineTests {
    // MARK: Retries

    @Test func aFailedAttemptIsJournaledBeforeItsRetryTimerIsArmed() {
        var machine = makeMachine()
        #expect(describe(machine.issue("a1", number: 1)) == "start a1")
        #expect(describe(machine.attemptFailed(1, retryable: true, now: at(1)))
            == "record failure of attempt 1, retry after 1.0 seconds")
        #expect(describe(machine.issue("a2", number: 2)) == "none", "no attempt before the failure is journaled")
        #expect(describe(machine.failureRecorded(1)) == "arm retry timer for attempt 2 after 1.0 seconds")
        #expect(describe(machine.retryTimerArmed(5)) == "none")
        #expect(describe(machine.issue("a2", number: 2)) == "start a2")
        #expect(describe(machine.attemptFailed(2, retryable: true, now: at(3)))
            == "record failure of attempt 2, retry after 2.0 seconds", "backoff")
        _ = machine.failureRecorded(2)
        _ = machine.issue("a3", number: 3)
        #expect(describe(machine.attemptCompleted(3)) == "finish completed at attempt 3")
        #expect(machine.isFinished)
    }

    @Test func retriesStopAtTheMaximumAttemptsAndForNonRetryableFailures() {
        var last = makeMachine(maxAttempts: 2)
        _ = last.issue("a1", number: 1)
        _ = last.attemptFailed(1, retryable: true, now: at(1))
        _ = last.failureRecorded(1)
        _ = last.issue("a2", number: 2)
        #expect(describe(last.attemptFailed(2, retryable: true, now: at(3))) == "finish failed at attempt 2")

        var fatal = makeMachine()
        _ = fatal.issue("a1", number: 1)
        #expect(describe(fatal.attemptFailed(1, retryable: false, now: at(1))) == "finish failed at attempt 1")
    }

    @Test func aLostAttemptIsRetriedWithoutDelay() {
        var machine = makeMachine()
        _ = machine.issue("a1", number: 1)
        #expect(describe(machine.attemptFailed(1, retryable: true, immediately: true, now: at(1)))
            == "record failure of attempt 1, retry after 0.0 seconds")
    }

    @Test func noRetryIsScheduledWhoseDelayWouldEndAfterTheDeadline() {
        var machine = makeMachine(deadline: 10)
        _ = machine.issue("a1", number: 1)
        #expect(describe(machine.attemptFailed(1, retryable: true, now: at(8)))
            == "record failure of attempt 1, retry after 1.0 seconds")
        _ = machine.failureRecorded(1)
        _ = machine.issue("a2", number: 2)
        #expect(describe(machine.attemptFailed(2, retryable: true, now: at(8.5))) == "finish failed at attempt 2",
                "a 2 s delay would end after the deadline")
    }

    @Test func theEndOfAnAttemptThatIsNotCurrentIsIgnored() {
        var machine = makeMachine()
        _ = machine.issue("a1", number: 1)
        #expect(describe(machine.attemptCompleted(2)) == "none")
        #expect(describe(machine.attemptFailed(2, retryable: true, now: at(1))) == "none")
        #expect(describe(machine.failureRecorded(1)) == "none", "nothing was being recorded")
        #expect(!machine.isFinished)
    }

    // MARK: Cancellation

    @Test func cancellingBetweenAttemptsEndsTheActivityAtOnceWithTheLastAttempt() {
        var machine = waitingToRetry()
        #expect(describe(machine.cancel()) == "finish cancelled at attempt 1, cancel retry 5")
        #expect(describe(machine.issue("a2", number: 2)) == "none", "a retry timer firing meanwhile starts nothing")
        #expect(describe(machine.cancel()) == "none")
    }

    @Test func cancellingTheCurrentAttemptCancelsItAndItsFailureEndsTheActivityAsCancelled() {
        var machine = makeMachine()
        _ = machine.issue("a1", number: 1)
        #expect(describe(machine.cancel()) == "cancel a1")
        #expect(describe(machine.attemptFailed(1, retryable: true, now: at(1))) == "finish cancelled at attempt 1",
                "not retried")
    }

    @Test func aCancelledAttemptThatCompletesAnywayCompletesTheActivity() {
        var machine = makeMachine()
        _ = machine.issue("a1", number: 1)
        _ = machine.cancel()
        #expect(describe(machine.attemptCompleted(1)) == "finish completed at attempt 1")
    }

    @Test func cancellingWhileAFailureIsJournaledEndsTheActivityOnceItIs() {
        var machine = makeMachine()
        _ = machine.issue("a1", number: 1)
        _ = machine.attemptFailed(1, retryable: true, now: at(1))
        #expect(describe(machine.cancel()) == "none")
        #expect(describe(machine.failureRecorded(1)) == "finish cancelled at attempt 1")
    }

    @Test func aCancellationBeforeTheFirstAttemptIsRecordedWithAttemptZero() {
        var machine = Machine(retry: .default, closeDeadline: nil, cancelRequested: true)
        #expect(describe(machine.issue("a1", number: 1)) == "finish cancelled at attempt 0")
    }

    @Test func aRecoveredActivityCancelledBeforeTheRestartEndsWithItsLastIssuedAttempt() {
        var machine = Machine(retry: .default, closeDeadline: nil, lastAttempt: 3, cancelRequested: true)
        #expect(describe(machine.endCancelledBeforeRestart()) == "finish cancelled at attempt 3")
        var notCancelled = Machine(retry: .default, closeDeadline: nil, lastAttempt: 3)
        #expect(describe(notCancelled.endCancelledBeforeRestart()) == "none")
    }

    @Test func aRecoveredActivityRecordsItsLostAttemptOrWaitsOutTheRestOfItsRetryDelay() {
        var lost = Machine(retry: .default, closeDeadline: nil, lastAttempt: 2)
        #expect(describe(lost.attemptFailed(2, retryable: true, immediately: true, now: at(0)))
            == "record failure of attempt 2, retry after 0.0 seconds")
        var delayed = Machine(retry: .default, closeDeadline: nil, lastAttempt: 2)
        #expect(describe(delayed.retryPending(2, after: .milliseconds(300)))
            == "arm retry timer for attempt 3 after 0.3 seconds")
    }

    // MARK: Schedule-to-close

    @Test func theDeadlineTimesOutTheCurrentAttemptOrEndsTheActivityBetweenAttempts() {
        var attempting = makeMachine(deadline: 10)
        _ = attempting.closeTimerArmed(4)
        _ = attempting.issue("a1", number: 1)
        #expect(describe(attempting.closeDeadlinePassed()) == "time out a1 (attempt 1)")
        #expect(describe(attempting.attemptFailed(1, retryable: false, now: at(10))) == "finish failed at attempt 1",
                "the attempt's timeout is the activity's failure")

        var between = waitingToRetry()
        _ = between.closeTimerArmed(4)
        #expect(describe(between.closeDeadlinePassed()) == "finish timedOut at attempt 1, cancel retry 5")

        var idle = Machine(retry: .default, closeDeadline: at(10), lastAttempt: 2)
        #expect(describe(idle.closeDeadlinePassed()) == "finish timedOut at attempt 2")
    }

    @Test func theDeadlineForAnAttemptThatHadEndedEndsTheActivityUnlessTheAttemptsEndCameFirst() {
        var deadlineFirst = makeMachine(deadline: 10)
        _ = deadlineFirst.issue("a1", number: 1)
        _ = deadlineFirst.closeDeadlinePassed()
        #expect(describe(deadlineFirst.closeDeadlinePassedAfterAttempt(1)) == "finish timedOut at attempt 1")
        #expect(describe(deadlineFirst.attemptCompleted(1)) == "none", "exactly one end")

        var completedFirst = makeMachine(deadline: 10)
        _ = completedFirst.issue("a1", number: 1)
        _ = completedFirst.closeDeadlinePassed()
        #expect(describe(completedFirst.attemptCompleted(1)) == "finish completed at attempt 1")
        #expect(describe(completedFirst.closeDeadlinePassedAfterAttempt(1)) == "none")
    }

    @Test func theEndOfTheActivityCancelsItsCloseTimerAndLateTimersAreCancelled() {
        var machine = makeMachine(deadline: 10)
        _ = machine.closeTimerArmed(4)
        _ = machine.issue("a1", number: 1)
        #expect(describe(machine.attemptCompleted(1)) == "finish completed at attempt 1, cancel close 4")
        #expect(describe(machine.closeTimerArmed(6)) == "cancel timer 6")
        #expect(describe(machine.retryTimerArmed(7)) == "cancel timer 7")
        #expect(describe(machine.closeDeadlinePassed()) == "none")
    }

    @Test func aRetryTimerReportedAfterItFiredIsCancelledNotKept() {
        var machine = makeMachine()
        _ = machine.issue("a1", number: 1)
        _ = machine.attemptFailed(1, retryable: true, now: at(1))
        _ = machine.failureRecorded(1)
        #expect(describe(machine.issue("a2", number: 2)) == "start a2", "the timer fired before it was reported")
        #expect(describe(machine.retryTimerArmed(5)) == "cancel timer 5")
        #expect(describe(machine.cancel()) == "cancel a2", "the retry timer is not the activity's any more")
    }

    // MARK: Stopping

    @Test func stoppingLetsGoOfTheAttemptAndTimersOnceAndNothingEndsTheActivityAfter() {
        var attempting = makeMachine(deadline: 10)
        _ = attempting.closeTimerArmed(4)
        _ = attempting.issue("a1", number: 1)
        #expect(describe(attempting.stop()) == "stop a1, cancel close 4")
        #expect(describe(attempting.stop()) == "none")
        #expect(describe(attempting.attemptCompleted(1)) == "none")

        var between = waitingToRetry()
        #expect(describe(between.stop()) == "stop, cancel retry 5")
        #expect(describe(between.issue("a2", number: 2)) == "none")
    }
}
