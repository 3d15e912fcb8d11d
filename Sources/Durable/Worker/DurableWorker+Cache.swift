import Dispatch
import DurableJournal
import Foundation
import Synchronization

/// The bounded cache of live workflow instances of one worker.
///
/// A run's driver (its mailbox, its live ``WorkflowInstance``) stays in memory while the run is driven
/// here. A run that waits with nothing in flight (a signal, a timer, a child, a cancellation: its
/// ``JournalBatch/Wake`` is `waiting`) is *idle*; when more runs are driven here than ``capacity``, the
/// least recently active idle ones are evicted: the instance is torn down, its timers dropped, its
/// lease given up in a group-committed batch. The journal keeps what is needed to wake it: its inbox,
/// and its earliest due time in the runs' due-time index (`wake_at`). Whatever wakes it (a signal, a
/// child's outcome, a cancellation, its due time) makes a worker take its lease and rebuild it by
/// replaying its history, then deliver.
///
/// The queue holds one entry per idle moment, with the driver's stamp at that moment; an entry whose
/// stamp is no longer its driver's (the run was active since, or ended) is skipped.
struct InstanceCache {
    /// Most runs driven here at once before idle ones are evicted (0: every idle run is evicted).
    var capacity: Int
    private var queue: [(stamp: UInt64, driver: RunDriver)] = []
    private var head = 0
    private var stamp: UInt64 = 0
    /// Runs chosen for eviction whose eviction batch is not committed yet (their drivers are still in
    /// the driver table), so that the next choice does not count them as live.
    var evicting = 0
    /// Runs evicted by this worker since it started.
    var evicted = 0

    init(capacity: Int) { self.capacity = capacity }

    /// The default capacity: an eighth of the machine's memory at 16 KiB a run (an idle run measured
    /// about 13 KB in a debug build), at least 1,000.
    static var defaultCapacity: Int {
        max(1000, Int(min(ProcessInfo.processInfo.physicalMemory / 8 / 16384, UInt64(Int.max))))
    }

    /// Records that `driver` became idle now (the most recently active of the idle runs).
    mutating func noteIdle(_ driver: RunDriver, driven: Int) {
        stamp += 1
        driver.idleStamp.store(stamp, ordering: .relaxed)
        queue.append((stamp, driver))
        // Entries of runs active since, or ended, are dropped now and then, so that they keep no
        // driver alive for long.
        if queue.count - head > 2 * driven + 1024 {
            queue = queue[head...].filter { $0.driver.idleStamp.load(ordering: .relaxed) == $0.stamp && !$0.driver.isClosed }
            head = 0
        }
    }

    /// The idle runs to evict so that at most ``capacity`` runs stay driven here, least recently
    /// active first.
    mutating func victims(driven: Int) -> [RunDriver] {
        var over = driven - evicting - capacity
        var victims: [RunDriver] = []
        while over > 0, head < queue.count {
            let (stamp, driver) = queue[head]
            head += 1
            guard driver.idleStamp.load(ordering: .relaxed) == stamp, !driver.isClosed else { continue }
            victims.append(driver)
            over -= 1
        }
        evicting += victims.count  // until evicted, or found busy again (``DurableWorker/evictionDeclined()``)
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return victims
    }
}

/// The worker-wide timer of the due-time index: one deadline in the engine's scheduler, at the
/// earliest due time of an evicted run this worker knows of.
struct DueTimer {
    var at: Int64?
    var id: Int?
}

extension DurableWorker {
    // MARK: - The instance cache

    /// Most runs this worker keeps live in memory; idle ones beyond it are evicted, least recently
    /// active first (see `Docs/architecture.md`, "The instance cache"). By default an eighth of the
    /// machine's memory at 16 KiB a run, at least 1,000. Lowering it evicts at the next idle moment.
    public var instanceCacheCapacity: Int {
        get { instanceCache.withLock { $0.capacity } }
        set { instanceCache.withLock { $0.capacity = max(0, newValue) } }
    }

    /// Runs this worker has evicted from memory since it started.
    public var evictedRunCount: Int { instanceCache.withLock { $0.evicted } }

    /// Runs driven here now, live in memory.
    public var liveRunCount: Int { drivers.withLock { $0.count } }

    /// A run driven here became idle (its last activation committed, it waits with nothing in
    /// flight): it joins the cache's queue, and idle runs beyond the capacity are evicted.
    func noteIdle(_ driver: RunDriver) {
        let driven = drivers.withLock { $0.count }
        let victims = instanceCache.withLock { cache in
            cache.noteIdle(driver, driven: driven)
            return cache.victims(driven: driven)
        }
        for victim in victims {
            // On another thread: this one is a commit callback, and an eviction writes a batch.
            DispatchQueue.global().async { [self] in
                if !victim.post(.evict) { evictionDeclined() }  // ended meanwhile
            }
        }
    }

    /// Called by an idle run's mailbox processor, its mailbox closed: gives up its lease (a batch),
    /// then forgets it. Until that batch is committed the driver stays in the table, so that nothing
    /// wakes the run here while the lease is still this worker's.
    func evict(_ driver: RunDriver, wake: JournalBatch.Wake) {
        var batch = JournalBatch(run: driver.ref)
        batch.releasesLease = true
        append(batch) { [self] result in
            let waiters = drivers.withLock { drivers -> [OutcomeWaiter] in
                if drivers[driver.runID] === driver { drivers.removeValue(forKey: driver.runID) }
                return outcomeWaiters.withLock { $0.removeValue(forKey: driver.runID) } ?? []
            }
            instanceCache.withLock {
                $0.evicting -= 1
                $0.evicted += 1
            }
            // Callers waiting for the outcome here watch the journal instead (`nil`: not driven here).
            for waiter in waiters { waiter.continuation.resume(returning: nil) }
            if case .failure = result {  // the lease may still be this worker's: given up later
                droppedRuns.withLock { _ = $0.insert(driver.runID) }
                Task { try? await releaseDroppedRuns() }
            }
            if case .waiting(let until?) = wake { noteDue(until) }
            watchWaitingRuns()
            // Something came for the run while it was being evicted: it is in its inbox.
            if driver.refusedItems {
                clock.beginWork()
                Task {
                    defer { clock.endWork() }
                    await deliverSignals()
                }
            }
        }
    }

    /// A run chosen for eviction was not idle any more when its mailbox got to it: it stays.
    func evictionDeclined() {
        instanceCache.withLock { $0.evicting -= 1 }
    }

    /// Wakes a run the journal records as waiting: takes its lease (only if it is still as `run`
    /// says), replays its history and drives it here. - Returns: whether it is driven here now.
    ///
    /// Never a run whose lease `run` records as this worker's: it is driven here, being evicted, or
    /// dropped (its release to come). Its lease does not change while a driver holds it, so a record
    /// read while one did would pass the compare-and-set then, and after an eviction's release a second
    /// driver would run beside the first, or outlive the lease.
    @discardableResult
    func wake(_ run: RunRecord) async -> Bool {
        guard !isStopping, run.status == .running, run.leaseOwner != workerID, drivers.withLock({ $0[run.runID] == nil }),
            leaseIsFree(run), let registration = workflowRegistration(run.workflowType)
        else { return false }
        guard (try? await journal.acquireLease(runID: run.runID, expected: RunLease(of: run))) == true else {
            return false
        }
        startLeaseRenewals()
        if await resume(run, registration) != nil { return false }  // held
        return drivers.withLock { $0[run.runID] != nil }
    }

    /// Wakes the waiting runs that have something in their inbox (a signal, a child's outcome, a
    /// cancellation or termination). - Returns: whether any was woken.
    func wakeSignalledRuns() async -> Bool {
        var woke = false
        while !isStopping {
            guard let runs = try? await journal.waitingRunsWithSignals(limit: Self.wakeBatch) else { break }
            let progressed = await wakeTogether(runs)
            woke = woke || progressed
            if runs.count < Self.wakeBatch || !progressed { break }
        }
        return woke
    }

    /// How many waiting runs one query of the due-time index returns.
    static let wakeBatch = 256
    /// How many runs one pass wakes at once: their lease writes and replays overlap instead of each
    /// waiting for the one before (signals sent together to evicted runs are not answered in turn).
    static let wakeConcurrency = 16

    /// Wakes the runs (``wake(_:)``), up to ``wakeConcurrency`` at a time. - Returns: whether any was woken.
    func wakeTogether(_ runs: [RunRecord]) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            var pending = runs[...]
            func startNext() {
                if let run = pending.popFirst() { group.addTask { await self.wake(run) } }
            }
            for _ in 0..<Self.wakeConcurrency { startNext() }
            var woke = false
            while let progressed = await group.next() {
                woke = woke || progressed
                startNext()
            }
            return woke
        }
    }

    // MARK: - The due-time index

    /// Makes the worker-wide due timer fire at `date` at the latest.
    func noteDue(_ date: Date) {
        let millis = date.journalMillis
        let (schedule, old) = dueTimer.withLock { timer -> (Bool, Int?) in
            if let at = timer.at, at <= millis { return (false, nil) }
            defer { timer.id = nil }
            timer.at = millis
            return (true, timer.id)
        }
        guard schedule, !isStopping else { return }
        if let old { timeouts.cancel(old) }
        let id = timeouts.schedule(at: date) { [weak self] in self?.dueTimerFired(millis) }
        dueTimer.withLock { timer in
            if timer.at == millis && timer.id == nil { timer.id = id } else { timeouts.cancel(id) }
        }
    }

    private func dueTimerFired(_ millis: Int64) {
        dueTimer.withLock { timer in
            if timer.at == millis {
                timer.at = nil
                timer.id = nil
            }
        }
        clock.beginWork()
        Task {
            defer { clock.endWork() }
            await wakeDueRuns()
        }
    }

    /// Wakes the waiting runs whose due time has come (one index query per batch of them), then sets
    /// the due timer to the next due time the index holds.
    func wakeDueRuns() async {
        guard !isStopping else { return }
        let now = clock.now()
        var heldElsewhere = false
        while !isStopping {
            guard let due = try? await journal.dueRuns(before: now, limit: Self.wakeBatch) else {
                noteDue(now.addingTimeInterval(1))  // the journal failed: look again in a second
                return
            }
            var progressed = false
            for run in due where drivers.withLock({ $0[run.runID] == nil }) {
                if await wake(run) { progressed = true } else { heldElsewhere = true }
            }
            if due.count < Self.wakeBatch || !progressed { break }
        }
        // A due run another live worker holds is its to wake; look again once its lease could have lapsed.
        if heldElsewhere { noteDue(now.addingTimeInterval(workerOptions.leaseDuration.timeInterval)) }
        if let next = try? await journal.nextWake(after: now) { noteDue(next) }
    }

    /// Once this worker has evicted a run (or found waiting runs at start), and while it runs no worker
    /// loop (``runWorker(takeoverInterval:)``, which does the same on every change), a change to the
    /// journal makes it look for signals of waiting runs: what a client in this process sends to an
    /// evicted run reaches it without a worker loop.
    func watchWaitingRuns() {
        guard !watchingWaitingRuns.exchange(true, ordering: .relaxed) else { return }
        let changes = journal.changes()
        Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in changes {
                        if self.isStopping || Task.isCancelled { break }
                        if self.workerLoops.load(ordering: .relaxed) == 0 { await self.deliverSignals() }
                    }
                }
                let stopped = self.stopSignal()
                group.addTask { for await _ in stopped {} }
                await group.next()
                group.cancelAll()
            }
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `TimeInterval`.
    fileprivate var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
