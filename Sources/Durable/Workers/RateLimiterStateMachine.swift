/// The rate limits of one pool, as a value: a token bucket for the pool and one per key, and the
/// attempts waiting for capacity, first come first served. Time comes in as nanoseconds on the
/// engine's clock; what to do comes out as a ``Step``: the waiters that may go on, and when to look
/// again. ``SlotPool`` keeps it under a lock and arms one timer for the next look.
///
/// Order: an attempt waits behind every earlier attempt while the pool's bucket is short, so a
/// costly attempt is not starved by cheap ones. An attempt short only of its key's units waits behind
/// earlier attempts of that key alone; attempts of other keys pass it.
struct RateLimiterStateMachine<Waiter> {
    struct Bucket {
        /// Units in the bucket; below zero after a cost above what it held (debt).
        var level: Double
        var updated: UInt64

        mutating func refill(_ limit: RateLimit, now: UInt64) {
            guard now > updated else { return }
            level = min(Double(limit.burst), level + Double(now - updated) * limit.unitsPerNanosecond)
            updated = now
        }

        /// The units an attempt of `cost` needs in the bucket: its cost, or a full bucket for more.
        static func need(_ cost: Int, _ limit: RateLimit) -> Double { Double(min(cost, limit.burst)) }

        func allows(_ cost: Int, _ limit: RateLimit) -> Bool { level >= Self.need(cost, limit) }

        /// Nanoseconds until the bucket allows `cost` (at least 1).
        func nanosUntil(_ cost: Int, _ limit: RateLimit) -> UInt64 {
            let missing = Self.need(cost, limit) - level
            return UInt64(max(1, (missing / limit.unitsPerNanosecond).rounded(.up)))
        }

        func isFull(_ limit: RateLimit) -> Bool { level >= Double(limit.burst) }
    }

    struct Entry {
        var ticket: Int
        var key: String?
        var cost: Int
        var waiter: Waiter
        var since: UInt64
    }

    /// What to carry out after an event.
    struct Step {
        /// Waiters that may ask for their slot now, with the nanoseconds each waited.
        var granted: [(waiter: Waiter, waited: UInt64)] = []
        /// When to call ``tick(now:)`` next; `nil` when nobody waits.
        var wake: UInt64?
        /// Attempts still waiting.
        var waiting = 0
    }

    let poolLimit: RateLimit?
    let keyLimit: RateLimit?
    private var poolBucket: Bucket
    private var keyBuckets: [String: Bucket] = [:]
    /// Key buckets are pruned (full ones dropped: a new bucket starts full) when there are more.
    private var pruneAbove = 1024
    private var queue: [Entry] = []
    private var stopped = false

    init(pool: RateLimit?, key: RateLimit?, now: UInt64) {
        poolLimit = pool
        keyLimit = key
        poolBucket = Bucket(level: Double(pool?.burst ?? 0), updated: now)
    }

    /// Attempts waiting for capacity.
    var waitingCount: Int { queue.count }

    /// An attempt asks for `cost` units, counted against `key`'s limit too when it has one. It may be
    /// granted in the returned step at once (`atOnce`). Once stopped, every request is granted (the
    /// pool then refuses the slot).
    mutating func request(
        ticket: Int, key: String?, cost: Int, now: UInt64, waiter: Waiter
    ) -> (step: Step, atOnce: Bool) {
        if stopped { return (Step(granted: [(waiter, 0)]), true) }
        queue.append(Entry(ticket: ticket, key: key, cost: max(0, cost), waiter: waiter, since: now))
        let step = tick(now: now)
        return (step, !queue.contains { $0.ticket == ticket })
    }

    /// Takes a waiting attempt out of the queue: its waiter, or `nil` when it was not waiting (it was
    /// granted). Attempts behind it may go on in the returned step.
    mutating func cancel(ticket: Int, now: UInt64) -> (Waiter?, Step) {
        guard let index = queue.firstIndex(where: { $0.ticket == ticket }) else { return (nil, Step(waiting: queue.count)) }
        let waiter = queue.remove(at: index).waiter
        return (waiter, tick(now: now))
    }

    /// Stops limiting: returns every waiter, to be sent on.
    mutating func stop() -> [Waiter] {
        stopped = true
        defer { queue.removeAll() }
        return queue.map(\.waiter)
    }

    /// Refills the buckets and grants every waiting attempt that the limits allow now, in order.
    mutating func tick(now: UInt64) -> Step {
        var step = Step()
        if let poolLimit { poolBucket.refill(poolLimit, now: now) }
        var blockedKeys: Set<String> = []
        var index = 0
        scan: while index < queue.count {
            let entry = queue[index]
            if let key = entry.key, let keyLimit {
                if blockedKeys.contains(key) {
                    index += 1
                    continue
                }
                var bucket = keyBuckets[key] ?? Bucket(level: Double(keyLimit.burst), updated: now)
                bucket.refill(keyLimit, now: now)
                keyBuckets[key] = bucket
                if !bucket.allows(entry.cost, keyLimit) {
                    blockedKeys.insert(key)
                    step.wake = min(step.wake ?? .max, now &+ bucket.nanosUntil(entry.cost, keyLimit))
                    index += 1
                    continue
                }
            }
            if let poolLimit, !poolBucket.allows(entry.cost, poolLimit) {
                step.wake = min(step.wake ?? .max, now &+ poolBucket.nanosUntil(entry.cost, poolLimit))
                break scan
            }
            if poolLimit != nil { poolBucket.level -= Double(entry.cost) }
            if let key = entry.key, keyLimit != nil { keyBuckets[key]?.level -= Double(entry.cost) }
            step.granted.append((entry.waiter, now &- entry.since))
            queue.remove(at: index)
        }
        if keyBuckets.count > pruneAbove { prune(except: blockedKeys, now: now) }
        step.waiting = queue.count
        return step
    }

    /// Drops the key buckets that are full again.
    private mutating func prune(except blocked: Set<String>, now: UInt64) {
        guard let keyLimit else { return }
        keyBuckets = keyBuckets.filter { key, bucket in
            var bucket = bucket
            bucket.refill(keyLimit, now: now)
            return blocked.contains(key) || !bucket.isFull(keyLimit)
        }
        pruneAbove = max(1024, 2 * keyBuckets.count)
    }

    /// Key buckets held (for tests of pruning).
    var keyBucketCount: Int { keyBuckets.count }
}
