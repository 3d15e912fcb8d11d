import Durable
import Testing

/// The pool's whole lifecycle alone, without threads or clocks. Labels stand for what the pool holds:
/// resources `r1` (by slot), waiting attempts `a1` (by ticket), warm-up waiters `w1` and factories `f1`
/// (by slot), shutdown callers `s1`.
private typealias Machine = PoolStateMachine<String, String, String, String, String>

private func makeMachine(_ options: PoolOptions, closesResources: Bool = true) -> Machine {
    Machine(options: options, closesResources: closesResources)
}

private struct FactoryFailed: Error, CustomStringConvertible {
    var description: String
}

private func timedOut(after limit: Duration) -> String {
    "the factory did not finish within the warm-up timeout of \(limit)"
}

extension PoolStateMachine where Resource == String, WarmWaiter == String, Factory == String {
    /// Starts the slot's factory `f<slot>` (no timer) for warm-up waiter `w<slot>`.
    fileprivate mutating func runFactory(_ slot: Int) {
        _ = startWarmUp(slot: slot, "w\(slot)")
        _ = factoryStarted(slot: slot, factory: "f\(slot)", timer: nil)
    }

    /// Warms the slot: its factory makes `r<slot>`.
    fileprivate mutating func warm(_ slot: Int, now: UInt64 = 0) -> [Action] {
        runFactory(slot)
        return factoryFinished(slot: slot, .success("r\(slot)"), now: now)
    }
}

@Suite struct PoolStateMachineTests {
    // MARK: - Attempts and slots

    @Test func waitersAreServedInOrderAndCancelledWaitersSkipped() {
        var pool = makeMachine(.warm(min: 0, max: 1))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.warm(1) == [.watch(slot: 1, "r1"), .endWarmUp("w1", .ready("r1"))])
        #expect(pool.acquire(ticket: 2, "a2") == [])
        #expect(pool.acquire(ticket: 3, "a3") == [])
        #expect(pool.acquire(ticket: 4, "a4") == [])
        let cancelled = pool.cancel(ticket: 3)
        let cancelledAgain = pool.cancel(ticket: 3)
        #expect(cancelled && !cancelledAgain)
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.handOver(slot: 1, "r1", ticket: 2, "a2")])
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.handOver(slot: 1, "r1", ticket: 4, "a4")])
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.scheduleEvictionCheck(after: .seconds(300))])
        #expect(pool.idleCount == 1)
    }

    @Test func aRetiredSlotIsReplacedForTheNextWaiterOnlyOnceClosedAndTheMinimumIsKept() {
        var pool = makeMachine(.warm(min: 1, max: 1, maxUses: 2))
        #expect(pool.start() == [.warmSpare(slot: 1)])
        #expect(pool.warm(1) == [.watch(slot: 1, "r1"), .endWarmUp("w1", .ready("r1"))])
        #expect(pool.acquire(ticket: 1, "a1") == [.handOver(slot: 1, "r1", ticket: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [])
        // The slot being closed still counts: no second slot while its process exits.
        #expect(pool.release(slot: 1, retire: true, now: 0) == [.close(slot: 1, "r1", .recycled)])
        #expect(pool.liveCount == 0 && pool.slots.count == 1)
        #expect(pool.closed(slot: 1) == [.warmFor(slot: 2, "a2")])
        _ = pool.warm(2)
        #expect(pool.release(slot: 2, retire: false, now: 0) == [])
        #expect(pool.acquire(ticket: 3, "a3") == [.handOver(slot: 2, "r2", ticket: 3, "a3")])
        // Second use reaches maximumUses: closed, then a spare restores the minimum.
        #expect(pool.release(slot: 2, retire: false, now: 0) == [.close(slot: 2, "r2", .recycled)])
        #expect(pool.closed(slot: 2) == [.warmSpare(slot: 3)])
        #expect(pool.closed(slot: 2) == [], "a slot is closed once")
    }

    @Test func anIdleSlotWhoseResourceBrokeIsClosedAndReplacedButABusyOneIsLeftToItsAttempt() {
        var pool = makeMachine(.warm(min: 1, max: 2))
        #expect(pool.start() == [.warmSpare(slot: 1)])
        _ = pool.warm(1)
        #expect(pool.retireIdle(slot: 1) == [.close(slot: 1, "r1", .recycled)])
        #expect(pool.closed(slot: 1) == [.warmSpare(slot: 2)], "the minimum is restored at once")
        _ = pool.warm(2)
        #expect(pool.acquire(ticket: 1, "a1") == [.handOver(slot: 2, "r2", ticket: 1, "a1")])
        #expect(pool.retireIdle(slot: 2) == [], "a busy slot is replaced when its attempt releases it")
    }

    @Test func aSpareThatWarmsIsHandedToTheFirstWaitingAttemptAndCountsAsInUseOnlyThen() {
        var pool = makeMachine(.warm(min: 1, max: 1))
        #expect(pool.start() == [.warmSpare(slot: 1)])
        #expect(pool.start() == [], "the minimum is warmed once")
        #expect(pool.inUse == 0, "a spare warms for no attempt")
        #expect(pool.acquire(ticket: 1, "a1") == [])
        #expect(pool.warm(1) == [
            .watch(slot: 1, "r1"), .handOver(slot: 1, "r1", ticket: 1, "a1"), .endWarmUp("w1", .ready("r1")),
        ])
        #expect(pool.inUse == 1)
        #expect(pool.release(slot: 1, retire: false, now: 0) == [])
        #expect(pool.inUse == 0)
        #expect(pool.acquire(ticket: 2, "a2") == [.handOver(slot: 1, "r1", ticket: 2, "a2")])
        #expect(pool.inUse == 1)
    }

    // MARK: - Warm-ups

    @Test func aFailedWarmUpFreesItsSlotAndIsReportedUntilASlotWarms() {
        var pool = makeMachine(.warm(min: 1, max: 3, idleTimeout: .milliseconds(1)))
        #expect(pool.start() == [.warmSpare(slot: 1)])
        pool.runFactory(1)
        #expect(pool.factoryFinished(slot: 1, .failure(FactoryFailed(description: "no model")), now: 0) == [
            .endWarmUp("w1", .failed(reason: "no model"))
        ], "a failed spare is not retried at once")
        #expect(pool.lastWarmUpFailure == "no model")
        #expect(pool.slots.isEmpty)
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 2, "a1")])
        #expect(pool.inUse == 1)
        pool.runFactory(2)
        #expect(pool.factoryFinished(slot: 2, .failure(FactoryFailed(description: "still no model")), now: 0) == [
            .warmSpare(slot: 3), .endWarmUp("w2", .failed(reason: "still no model")),
        ], "an attempt's failed slot is gone, and the minimum warmed again")
        #expect(pool.inUse == 0)
        _ = pool.warm(3)
        #expect(pool.lastWarmUpFailure == nil)
    }

    @Test func aWarmUpThatTimesOutFailsAtOnceAndWhatItsFactoryMakesLaterIsClosed() {
        var pool = makeMachine(.warm(min: 0, max: 1, warmUpTimeout: .seconds(2)))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [])
        #expect(pool.startWarmUp(slot: 1, "w1") == [.startFactory(slot: 1, timeout: .seconds(2))])
        // The timer fires before the factory's task is even reported: the slot goes to the next waiter.
        #expect(pool.warmUpTimedOut(slot: 1) == [
            .warmFor(slot: 2, "a2"), .endWarmUp("w1", .failed(reason: timedOut(after: .seconds(2)))),
        ])
        #expect(pool.lastWarmUpFailure == timedOut(after: .seconds(2)))
        #expect(pool.factoryStarted(slot: 1, factory: "f1", timer: 9) == [.cancelFactory("f1")])
        #expect(pool.warmUpTimedOut(slot: 1) == [], "a warm-up times out once")
        #expect(pool.factoryFinished(slot: 1, .success("r1"), now: 0) == [.close(slot: 1, "r1", .lateWarmUp)])
        #expect(pool.slots.keys.sorted() == [2], "the late resource belongs to no slot")
        #expect(pool.closed(slot: 1) == [])
        #expect(pool.closed(slot: 1) == [], "closed once")
    }

    @Test func aFactoryThatEndsBeforeItsTaskIsReportedHasItsTimerCancelled() {
        var pool = makeMachine(.warm(min: 0, max: 1))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.startWarmUp(slot: 1, "w1") == [.startFactory(slot: 1, timeout: .seconds(120))])
        #expect(pool.factoryFinished(slot: 1, .success("r1"), now: 0) == [
            .watch(slot: 1, "r1"), .endWarmUp("w1", .ready("r1")),
        ])
        #expect(pool.factoryStarted(slot: 1, factory: "f1", timer: 3) == [.cancelTimer(3)])
        #expect(pool.warmUpTimedOut(slot: 1) == [])
        #expect(pool.slots[1]?.state == .busy("r1"))
    }

    @Test func aFactoryThatFinishesInTimeHasItsTimerCancelled() {
        var pool = makeMachine(.warm(min: 0, max: 1))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        _ = pool.startWarmUp(slot: 1, "w1")
        #expect(pool.factoryStarted(slot: 1, factory: "f1", timer: 3) == [])
        #expect(pool.factoryFinished(slot: 1, .success("r1"), now: 0) == [
            .cancelTimer(3), .watch(slot: 1, "r1"), .endWarmUp("w1", .ready("r1")),
        ])
    }

    // MARK: - Idle eviction and maximum uses

    @Test func idleEvictionStopsAtTheMinimum() {
        var pool = makeMachine(.warm(min: 1, max: 3, idleTimeout: .milliseconds(1)))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [.warmFor(slot: 2, "a2")])
        _ = pool.warm(1)
        _ = pool.warm(2)
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.scheduleEvictionCheck(after: .milliseconds(1))])
        #expect(pool.release(slot: 2, retire: false, now: 500_000) == [], "one check is scheduled at a time")
        #expect(pool.evictIdle(now: 1_200_000) == [.close(slot: 1, "r1", .evicted)], "slot 2 is the minimum")
        #expect(pool.liveCount == 1)
        #expect(pool.closed(slot: 1) == [])
        #expect(pool.slots.count == 1)
    }

    @Test func idleSlotsAreEvictedOldestFirstWithTheNextCheckAtTheNextExpiry() {
        var pool = makeMachine(.warm(min: 0, max: 2, idleTimeout: .milliseconds(10)))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [.warmFor(slot: 2, "a2")])
        _ = pool.warm(1)
        _ = pool.warm(2)
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.scheduleEvictionCheck(after: .milliseconds(10))])
        #expect(pool.release(slot: 2, retire: false, now: 4_000_000) == [])
        // At 10 ms slot 1 expired; slot 2 expires at 14 ms, checked 1 ms after.
        #expect(pool.evictIdle(now: 10_000_000) == [
            .close(slot: 1, "r1", .evicted), .scheduleEvictionCheck(after: .milliseconds(5)),
        ])
        #expect(pool.evictIdle(now: 15_000_000) == [.close(slot: 2, "r2", .evicted)])
        #expect(pool.evictIdle(now: 30_000_000) == [], "nothing idle: no further check")
        // A slot released again schedules a new check.
        #expect(pool.acquire(ticket: 3, "a3") == [])
        #expect(pool.closed(slot: 1) == [.warmFor(slot: 3, "a3")])
        _ = pool.warm(3)
        #expect(pool.release(slot: 3, retire: false, now: 31_000_000) == [
            .scheduleEvictionCheck(after: .milliseconds(10))
        ])
    }

    @Test func aSlotIsClosedAtItsMaximumUsesEvenWhenAttemptsWait() {
        var pool = makeMachine(.warm(min: 0, max: 1, idleTimeout: nil, maxUses: 3))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        _ = pool.warm(1)
        #expect(pool.acquire(ticket: 2, "a2") == [])
        #expect(pool.acquire(ticket: 3, "a3") == [])
        #expect(pool.acquire(ticket: 4, "a4") == [])
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.handOver(slot: 1, "r1", ticket: 2, "a2")])
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.handOver(slot: 1, "r1", ticket: 3, "a3")])
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.close(slot: 1, "r1", .recycled)], "third use")
        #expect(pool.closed(slot: 1) == [.warmFor(slot: 2, "a4")])
        #expect(pool.slots[2]?.uses == 0)
    }

    // MARK: - Stopping and shutting down

    @Test func shutdownRefusesWaitersCancelsFactoriesClosesIdleSlotsAndClosesBusyOnesWhenReleased() {
        var pool = makeMachine(.warm(min: 0, max: 4, idleTimeout: nil))
        for ticket in 1...4 { #expect(pool.acquire(ticket: ticket, "a\(ticket)") == [.warmFor(slot: ticket, "a\(ticket)")]) }
        _ = pool.warm(1)
        _ = pool.warm(2)
        _ = pool.warm(3)
        pool.runFactory(4)
        #expect(pool.release(slot: 1, retire: false, now: 0) == [], "slot 1 idle, slot 2 busy")
        #expect(pool.release(slot: 3, retire: true, now: 0) == [.close(slot: 3, "r3", .recycled)], "slot 3 closing")

        #expect(pool.shutdown("s1") == [.cancelFactory("f4"), .close(slot: 1, "r1", .stopped)], "slot 4 warming")
        #expect(pool.lifecycle == .shuttingDown(waiters: ["s1"]))
        #expect(pool.acquire(ticket: 5, "a5") == [.refuse("a5")])
        #expect(pool.closed(slot: 3) == [], "nothing is refilled")
        #expect(pool.closed(slot: 1) == [])
        #expect(pool.factoryFinished(slot: 4, .failure(CancellationError()), now: 0) == [
            .endWarmUp("w4", .failed(reason: "CancellationError()")), .resumeShutdown(["s1"]),
        ], "the busy slot is not waited for")
        #expect(pool.lifecycle == .shutDown)

        // Its attempt ends later: the slot is closed, and a shutdown asked for meanwhile waits for it.
        #expect(pool.release(slot: 2, retire: false, now: 0) == [.close(slot: 2, "r2", .stopped)])
        #expect(pool.lifecycle == .shuttingDown(waiters: []))
        #expect(pool.shutdown("s2") == [])
        #expect(pool.closed(slot: 2) == [.resumeShutdown(["s2"])])
        #expect(pool.shutdown("s3") == [.resumeShutdown(["s3"])])
        #expect(pool.slots.isEmpty && pool.inUse == 0)
    }

    @Test func aCloseThatFinishesAfterTheShutdownBeganEndsItAndRefillsNothing() {
        var pool = makeMachine(.warm(min: 1, max: 1))
        #expect(pool.start() == [.warmSpare(slot: 1)])
        _ = pool.warm(1)
        #expect(pool.acquire(ticket: 1, "a1") == [.handOver(slot: 1, "r1", ticket: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [])
        #expect(pool.release(slot: 1, retire: true, now: 0) == [.close(slot: 1, "r1", .recycled)])
        #expect(pool.shutdown("s1") == [.refuse("a2")], "the close under way is waited for")
        #expect(pool.closed(slot: 1) == [.resumeShutdown(["s1"])], "no slot for the waiter, no spare for the minimum")
        #expect(pool.slots.isEmpty)
    }

    @Test func aFactoryThatFinishesAfterTheStopHasItsResourceClosedAndItsAttemptToldThePoolStopped() {
        var pool = makeMachine(.warm(min: 0, max: 1))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.startWarmUp(slot: 1, "w1") == [.startFactory(slot: 1, timeout: .seconds(120))])
        #expect(pool.factoryStarted(slot: 1, factory: "f1", timer: 7) == [])
        #expect(pool.shutdown("s1") == [.cancelFactory("f1")])
        // The factory ignored the cancellation and made its resource anyway.
        #expect(pool.factoryFinished(slot: 1, .success("r1"), now: 0) == [
            .cancelTimer(7), .close(slot: 1, "r1", .stopped), .endWarmUp("w1", .poolStopped(warmed: true)),
        ])
        #expect(pool.lifecycle == .shuttingDown(waiters: ["s1"]), "the shutdown waits for that close")
        #expect(pool.inUse == 0)
        #expect(pool.closed(slot: 1) == [.resumeShutdown(["s1"])])
    }

    @Test func aSpareThatWarmsAfterTheStopIsClosedAndNotReplaced() {
        var pool = makeMachine(.warm(min: 1, max: 1))
        #expect(pool.start() == [.warmSpare(slot: 1)])
        pool.runFactory(1)
        pool.stopReplacing()
        #expect(pool.factoryFinished(slot: 1, .success("r1"), now: 0) == [
            .close(slot: 1, "r1", .stopped), .endWarmUp("w1", .poolStopped(warmed: true)),
        ])
        #expect(pool.closed(slot: 1) == [])
        #expect(pool.slots.isEmpty)
        #expect(pool.lifecycle == .stopping)
    }

    @Test func noFactoryRunsAfterTheStopAndTheShutdownWaitsForASlotGrantedBeforeIt() {
        var pool = makeMachine(.warm(min: 0, max: 2))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [.warmFor(slot: 2, "a2")])
        #expect(pool.startWarmUp(slot: 2, "w2") == [.startFactory(slot: 2, timeout: .seconds(120))])
        pool.stopReplacing()
        #expect(pool.factoryStarted(slot: 2, factory: "f2", timer: nil) == [.cancelFactory("f2")])
        // Slot 1's attempt has not begun to warm it: the shutdown waits for it to ask.
        #expect(pool.shutdown("s1") == [.cancelFactory("f2")])
        #expect(pool.startWarmUp(slot: 1, "w1") == [.endWarmUp("w1", .poolStopped(warmed: false))])
        #expect(pool.hasWorkUnderWay, "factory f2 still runs")
        #expect(pool.factoryFinished(slot: 2, .failure(CancellationError()), now: 0) == [
            .endWarmUp("w2", .failed(reason: "CancellationError()")), .resumeShutdown(["s1"]),
        ])
    }

    @Test func shutdownWaitersAreResumedOnlyOnceEveryCloseAndFactoryIsDone() {
        var pool = makeMachine(.warm(min: 0, max: 4, idleTimeout: nil, warmUpTimeout: .seconds(5)))
        for ticket in 1...4 { _ = pool.acquire(ticket: ticket, "a\(ticket)") }
        _ = pool.warm(1)
        _ = pool.warm(2)
        _ = pool.release(slot: 1, retire: false, now: 0)
        _ = pool.release(slot: 2, retire: false, now: 0)
        #expect(pool.startWarmUp(slot: 3, "w3") == [.startFactory(slot: 3, timeout: .seconds(5))])
        #expect(pool.factoryStarted(slot: 3, factory: "f3", timer: 3) == [])
        _ = pool.startWarmUp(slot: 4, "w4")
        #expect(pool.factoryStarted(slot: 4, factory: "f4", timer: 4) == [])
        #expect(pool.warmUpTimedOut(slot: 4) == [
            .cancelFactory("f4"), .endWarmUp("w4", .failed(reason: timedOut(after: .seconds(5)))),
        ])

        #expect(pool.shutdown("s1") == [
            .cancelFactory("f3"), .cancelFactory("f4"), .close(slot: 1, "r1", .stopped), .close(slot: 2, "r2", .stopped),
        ])
        #expect(pool.shutdown("s2") == [])
        #expect(pool.closed(slot: 1) == [])
        #expect(pool.closed(slot: 2) == [], "factories f3 and f4 still run")
        #expect(pool.factoryFinished(slot: 3, .failure(CancellationError()), now: 0) == [
            .cancelTimer(3), .endWarmUp("w3", .failed(reason: "CancellationError()")),
        ])
        #expect(pool.hasWorkUnderWay, "the abandoned factory f4 still runs")
        #expect(pool.factoryFinished(slot: 4, .success("r4"), now: 0) == [.close(slot: 4, "r4", .lateWarmUp)])
        #expect(pool.lifecycle == .shuttingDown(waiters: ["s1", "s2"]), "its late resource is being closed")
        #expect(pool.closed(slot: 4) == [.resumeShutdown(["s1", "s2"])])
        #expect(pool.lifecycle == .shutDown)
        #expect(pool.shutdown("s3") == [.resumeShutdown(["s3"])])
    }

    @Test func attemptsWaitingWhenTheStopComesGetNoSlotAndAreRefusedByTheShutdown() {
        var pool = makeMachine(.warm(min: 0, max: 1))
        #expect(pool.acquire(ticket: 1, "a1") == [.warmFor(slot: 1, "a1")])
        _ = pool.warm(1)
        #expect(pool.acquire(ticket: 2, "a2") == [])
        #expect(pool.acquire(ticket: 3, "a3") == [])
        pool.stopReplacing()
        #expect(pool.acquire(ticket: 4, "a4") == [.refuse("a4")])
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.close(slot: 1, "r1", .stopped)], "not handed over")
        #expect(pool.closed(slot: 1) == [], "no slot is warmed for a waiter after the stop")
        #expect(pool.waitingCount == 2)
        let cancelled = pool.cancel(ticket: 3)
        #expect(cancelled, "a cancelled attempt still leaves the queue")
        #expect(pool.shutdown("s1") == [.refuse("a2"), .resumeShutdown(["s1"])])
        #expect(pool.waitingCount == 0)
        let cancelledAfterTheShutdown = pool.cancel(ticket: 2)
        #expect(!cancelledAfterTheShutdown, "it was refused")
        #expect(pool.acquire(ticket: 5, "a5") == [.refuse("a5")])
    }

    @Test func aStoppedPoolSchedulesNoMoreEvictionChecksAndLeavesBrokenIdleSlotsToTheShutdown() {
        var pool = makeMachine(.warm(min: 0, max: 3, idleTimeout: .milliseconds(1)))
        for ticket in 1...3 { _ = pool.acquire(ticket: ticket, "a\(ticket)") }
        for slot in 1...3 { _ = pool.warm(slot) }
        #expect(pool.release(slot: 1, retire: false, now: 0) == [.scheduleEvictionCheck(after: .milliseconds(1))])
        #expect(pool.release(slot: 3, retire: false, now: 2_000_000) == [])
        pool.stopReplacing()
        #expect(pool.release(slot: 2, retire: false, now: 2_000_000) == [.close(slot: 2, "r2", .stopped)])
        #expect(pool.retireIdle(slot: 3) == [])
        #expect(pool.evictIdle(now: 2_500_000) == [.close(slot: 1, "r1", .evicted)], "slot 3 is left, unchecked")
        #expect(pool.shutdown("s1") == [.close(slot: 3, "r3", .stopped)])
    }

    @Test func withoutResourcesToCloseSlotsGoAtOnceAndTheShutdownDoesNotWaitForFactories() {
        var pool = makeMachine(.warm(min: 1, max: 2), closesResources: false)
        #expect(pool.start() == [.warmSpare(slot: 1)])
        _ = pool.warm(1)
        #expect(pool.acquire(ticket: 1, "a1") == [.handOver(slot: 1, "r1", ticket: 1, "a1")])
        #expect(pool.acquire(ticket: 2, "a2") == [.warmFor(slot: 2, "a2")])
        pool.runFactory(2)
        #expect(pool.acquire(ticket: 3, "a3") == [])
        // Slot 1 is gone with its close, and its place goes to the waiter in the same step.
        #expect(pool.release(slot: 1, retire: true, now: 0) == [.close(slot: 1, "r1", .recycled), .warmFor(slot: 3, "a3")])
        #expect(pool.slots.keys.sorted() == [2, 3])
        #expect(pool.shutdown("s1") == [.cancelFactory("f2"), .resumeShutdown(["s1"])])
        #expect(pool.factoryFinished(slot: 2, .success("r2"), now: 0) == [
            .close(slot: 2, "r2", .stopped), .endWarmUp("w2", .poolStopped(warmed: true)),
        ])
        #expect(pool.lifecycle == .shutDown)
        #expect(pool.startWarmUp(slot: 3, "w3") == [.endWarmUp("w3", .poolStopped(warmed: false))])
        #expect(pool.slots.isEmpty)
    }
}
