/// A rate an activity's pool may not exceed: `units` per `interval`, with bursts of up to `burst`
/// units. A unit is what the activity counts with ``ActivityDeclaration/rateLimitCost(for:)``: one
/// request by default, or a model API's tokens.
///
/// It is a token bucket: the bucket holds at most `burst` units and refills at `units / interval`. An
/// attempt takes its cost from the bucket before it asks for a slot; when the bucket holds less than
/// the cost (or the whole bucket, for a cost above `burst`), the attempt waits, first come first
/// served, and the wait counts towards its ``ActivityOptions/scheduleToStart`` timeout. A cost above
/// what the bucket holds leaves it in debt, so the rate holds over time whatever the costs.
///
/// ```swift
/// // 50 requests a second for the pool, and 6,000 tokens a minute per tenant.
/// engine.register(Summarize.self, processPool: ProcessPoolOptions(
///     command: ["python3", "summarize.py"],
///     pool: .warm(min: 1, max: 4, rateLimit: .perSecond(50), keyRateLimit: .perMinute(6_000))))
/// ```
///
/// Limits hold per worker process: two workers serving the same activity may together reach twice the
/// rate.
public struct RateLimit: Sendable, Hashable, CustomStringConvertible {
    /// Units allowed per ``interval`` (at least 1).
    public var units: Int
    /// The interval `units` are counted over (at least 1 ms).
    public var interval: Duration
    /// Units that may be used at once after a quiet spell (at least 1; `units` by default).
    public var burst: Int

    /// `units` per `interval`; out-of-range values are raised to the least allowed.
    public init(_ units: Int, per interval: Duration, burst: Int? = nil) {
        self.units = max(1, units)
        self.interval = max(.milliseconds(1), interval)
        self.burst = max(1, burst ?? units)
    }

    public static func perSecond(_ units: Int, burst: Int? = nil) -> RateLimit {
        RateLimit(units, per: .seconds(1), burst: burst)
    }

    public static func perMinute(_ units: Int, burst: Int? = nil) -> RateLimit {
        RateLimit(units, per: .seconds(60), burst: burst)
    }

    /// Units per second, as reported in metrics.
    public var unitsPerSecond: Double { Double(units) / interval.inSeconds }

    /// Units per nanosecond, the bucket's refill rate.
    var unitsPerNanosecond: Double { Double(units) / (interval.inSeconds * 1e9) }

    public var description: String { "\(units) per \(interval) (burst \(burst))" }
}

/// What one attempt asks of a rate-limited pool: its units, and the key they also count against.
package struct RateClaim: Sendable, Equatable {
    package var key: String?
    package var cost: Int

    package init(key: String? = nil, cost: Int = 1) {
        self.key = key
        self.cost = cost
    }
}

extension Duration {
    /// The duration in seconds, fractions included.
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
