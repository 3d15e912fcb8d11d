import CoreMetrics

/// One pool's metrics, reported through swift-metrics with the dimension `pool=<activity name>`.
///
/// | label | kind | what |
/// |---|---|---|
/// | `durable_pool_cold_starts_total` | counter | slots warmed (the factory ran) |
/// | `durable_pool_warm_hits_total` | counter | attempts given a slot that was already warm |
/// | `durable_pool_warm_up_failures_total` | counter | factories that threw or timed out |
/// | `durable_pool_recycled_total` | counter | slots replaced after a failure, timeout or `maximumUses`, or found broken |
/// | `durable_pool_evicted_total` | counter | idle slots closed after `idleTimeout` |
/// | `durable_pool_failures_total` | counter | attempts that failed or timed out (not cancelled ones) |
/// | `durable_pool_queue_wait_seconds` | timer | from an attempt's issue to its slot |
/// | `durable_pool_warm_up_seconds` | timer | factory time per slot |
/// | `durable_pool_run_seconds` | timer | the activity code's time per attempt |
/// | `durable_pool_slots_in_use` | gauge | slots running or warming for an attempt |
/// | `durable_pool_slots_idle` | gauge | warm slots waiting for an attempt |
/// | `durable_pool_rate_limit_units_per_second` | gauge | the pool's ``PoolOptions/rateLimit``, set at registration |
/// | `durable_pool_key_rate_limit_units_per_second` | gauge | the ``PoolOptions/keyRateLimit`` of each key, set at registration |
/// | `durable_pool_rate_limited_total` | counter | attempts that had to wait for rate-limit capacity |
/// | `durable_pool_rate_limit_wait_seconds` | timer | those attempts' wait for capacity (part of the queue wait) |
/// | `durable_pool_rate_limit_waiting` | gauge | attempts waiting for capacity now |
///
/// An activity registered without a pool (one shared value) has no slots: of these it reports only
/// `durable_pool_queue_wait_seconds`, `durable_pool_run_seconds` and `durable_pool_failures_total`.
/// The engine's own metrics (runs, attempts, journal commits) are in `WorkerMetrics.swift`.
struct PoolMetrics: Sendable {
    let coldStarts: Counter
    let warmHits: Counter
    let warmUpFailures: Counter
    let recycled: Counter
    let evicted: Counter
    let failures: Counter
    let queueWait: Timer
    let warmUp: Timer
    let run: Timer
    let slotsInUse: Gauge
    let slotsIdle: Gauge
    let rateLimited: Counter
    let rateLimitWait: Timer
    let rateLimitWaiting: Gauge
    private let dimensions: [(String, String)]
    private let factory: any MetricsFactory
    /// The activity type's attempts (dimension `activity_type`; see `WorkerMetrics.swift`), kept here
    /// because a pool serves exactly one activity type.
    let attempts: ActivityMetrics

    init(pool: String, factory: any MetricsFactory) {
        let dimensions = [("pool", pool)]
        func counter(_ label: String) -> Counter { Counter(label: label, dimensions: dimensions, factory: factory) }
        func timer(_ label: String) -> Timer { Timer(label: label, dimensions: dimensions, factory: factory) }
        coldStarts = counter("durable_pool_cold_starts_total")
        warmHits = counter("durable_pool_warm_hits_total")
        warmUpFailures = counter("durable_pool_warm_up_failures_total")
        recycled = counter("durable_pool_recycled_total")
        evicted = counter("durable_pool_evicted_total")
        failures = counter("durable_pool_failures_total")
        queueWait = timer("durable_pool_queue_wait_seconds")
        warmUp = timer("durable_pool_warm_up_seconds")
        run = timer("durable_pool_run_seconds")
        slotsInUse = Gauge(label: "durable_pool_slots_in_use", dimensions: dimensions, factory: factory)
        slotsIdle = Gauge(label: "durable_pool_slots_idle", dimensions: dimensions, factory: factory)
        attempts = ActivityMetrics(activityType: pool, factory: factory)
        rateLimited = counter("durable_pool_rate_limited_total")
        rateLimitWait = timer("durable_pool_rate_limit_wait_seconds")
        rateLimitWaiting = Gauge(label: "durable_pool_rate_limit_waiting", dimensions: dimensions, factory: factory)
        self.dimensions = dimensions
        self.factory = factory
    }

    /// Reports the pool's configured limits (units per second).
    func recordLimits(_ options: PoolOptions) {
        for (label, limit) in [
            ("durable_pool_rate_limit_units_per_second", options.rateLimit),
            ("durable_pool_key_rate_limit_units_per_second", options.keyRateLimit),
        ] {
            guard let limit else { continue }
            Gauge(label: label, dimensions: dimensions, factory: factory).record(limit.unitsPerSecond)
        }
    }
}
