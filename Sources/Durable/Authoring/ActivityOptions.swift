import Foundation

/// How an activity is run: its four timeouts and its retry policy.
///
/// ```swift
/// let options = ActivityOptions(
///     startToClose: .seconds(30), scheduleToClose: .seconds(300), heartbeatTimeout: .seconds(10),
///     retry: .exponential(initial: .seconds(1), maxAttempts: 4))
/// ```
///
/// | timeout | measures | when exceeded |
/// |---|---|---|
/// | `scheduleToStart` | one attempt's wait until its code starts (queue, warm-up) | ``ScheduleToStartTimeout``, not retried |
/// | `startToClose` | one attempt's run, from its start to its result | ``StartToCloseTimeout``, retried |
/// | `heartbeatTimeout` | the gap between heartbeats of one attempt | ``HeartbeatTimeout``, retried |
/// | `scheduleToClose` | the whole activity, every attempt and retry delay | ``ScheduleToCloseTimeout``, not retried |
public struct ActivityOptions: Sendable, Equatable, Codable {
    /// Longest time one attempt may run; the attempt then fails with a retryable
    /// ``StartToCloseTimeout``. `nil` means no limit.
    public var startToClose: Duration?
    /// Longest time one attempt may wait before its code starts: for a pool slot, for a cold slot to
    /// warm, for the worker-wide limit. The activity then fails with ``ScheduleToStartTimeout`` (no
    /// retry: another attempt would wait in the same queue). Keep it above a cold start's warm-up, or
    /// keep slots warm (`minimumSlots`).
    public var scheduleToStart: Duration?
    /// Longest time the whole activity may take, from its scheduling to its result, retries and their
    /// delays included; the activity then fails with ``ScheduleToCloseTimeout``. Counted from the
    /// recorded scheduling time, so a restart does not reset it. A retry whose delay would end after
    /// the deadline is not scheduled: the failed attempt's own error ends the activity.
    public var scheduleToClose: Duration?
    /// Longest gap between two heartbeats of an attempt (``ActivityContext/heartbeat(_:)``); the attempt
    /// then fails with a retryable ``HeartbeatTimeout``. The first heartbeat is due this long after the
    /// attempt starts.
    public var heartbeatTimeout: Duration?
    public var retry: RetryPolicy

    /// Ten minutes per attempt and ``RetryPolicy/default``.
    public static let `default` = ActivityOptions()

    public init(
        startToClose: Duration? = .seconds(600), scheduleToStart: Duration? = nil, scheduleToClose: Duration? = nil,
        heartbeatTimeout: Duration? = nil, retry: RetryPolicy = .default
    ) {
        self.startToClose = startToClose
        self.scheduleToStart = scheduleToStart
        self.scheduleToClose = scheduleToClose
        self.heartbeatTimeout = heartbeatTimeout
        self.retry = retry
    }

    private enum CodingKeys: String, CodingKey {
        case startToCloseMs, scheduleToStartMs, scheduleToCloseMs, heartbeatMs, retry
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func duration(_ key: CodingKeys) throws -> Duration? {
            try container.decodeIfPresent(Int64.self, forKey: key).map { .milliseconds($0) }
        }
        startToClose = try duration(.startToCloseMs)
        scheduleToStart = try duration(.scheduleToStartMs)
        scheduleToClose = try duration(.scheduleToCloseMs)
        heartbeatTimeout = try duration(.heartbeatMs)
        retry = try container.decode(RetryPolicy.self, forKey: .retry)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(startToClose?.milliseconds, forKey: .startToCloseMs)
        try container.encodeIfPresent(scheduleToStart?.milliseconds, forKey: .scheduleToStartMs)
        try container.encodeIfPresent(scheduleToClose?.milliseconds, forKey: .scheduleToCloseMs)
        try container.encodeIfPresent(heartbeatTimeout?.milliseconds, forKey: .heartbeatMs)
        try container.encode(retry, forKey: .retry)
    }
}

/// When and how often a failed activity attempt is retried.
///
/// The delay before attempt *n + 1* is `initialInterval × backoffCoefficient^(n-1)`, capped at
/// `maximumInterval`. An error whose type name is in `nonRetryableErrorTypes`, or an
/// ``ApplicationError`` marked non-retryable, ends the activity at once.
public struct RetryPolicy: Sendable, Equatable, Codable {
    public var initialInterval: Duration
    public var backoffCoefficient: Double
    public var maximumInterval: Duration
    /// Attempts in all, the first included; 0 means unlimited.
    public var maximumAttempts: Int
    /// Swift type names (as `String(describing: type(of: error))` gives them) that are not retried.
    public var nonRetryableErrorTypes: [String]

    /// 1 s, doubling, at most 100 s apart, 5 attempts.
    public static let `default` = RetryPolicy()
    /// One attempt, no retry.
    public static let none = RetryPolicy(maximumAttempts: 1)

    public init(
        initialInterval: Duration = .seconds(1), backoffCoefficient: Double = 2,
        maximumInterval: Duration? = nil, maximumAttempts: Int = 5, nonRetryableErrorTypes: [String] = []
    ) {
        self.initialInterval = initialInterval
        self.backoffCoefficient = max(1, backoffCoefficient)
        self.maximumInterval = maximumInterval ?? initialInterval * 100
        self.maximumAttempts = maximumAttempts
        self.nonRetryableErrorTypes = nonRetryableErrorTypes
    }

    /// Exponential backoff.
    public static func exponential(
        initial: Duration = .seconds(1), coefficient: Double = 2, maximum: Duration? = nil, maxAttempts: Int = 5,
        nonRetryable: [String] = []
    ) -> RetryPolicy {
        RetryPolicy(
            initialInterval: initial, backoffCoefficient: coefficient, maximumInterval: maximum,
            maximumAttempts: maxAttempts, nonRetryableErrorTypes: nonRetryable)
    }

    /// The delay after the failure of `attempt` (1-based).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let initialMs = Double(initialInterval.milliseconds)
        let ms = initialMs * pow(backoffCoefficient, Double(max(0, attempt - 1)))
        return .milliseconds(Int64(min(ms, Double(maximumInterval.milliseconds))))
    }

    /// Whether another attempt may follow the failure of `attempt`.
    public func allowsAttempt(after attempt: Int) -> Bool {
        maximumAttempts == 0 || attempt < maximumAttempts
    }

    private enum CodingKeys: String, CodingKey {
        case initialMs, coefficient, maximumMs, maxAttempts, nonRetryable
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        initialInterval = .milliseconds(try c.decode(Int64.self, forKey: .initialMs))
        backoffCoefficient = try c.decode(Double.self, forKey: .coefficient)
        maximumInterval = .milliseconds(try c.decode(Int64.self, forKey: .maximumMs))
        maximumAttempts = try c.decode(Int.self, forKey: .maxAttempts)
        nonRetryableErrorTypes = try c.decodeIfPresent([String].self, forKey: .nonRetryable) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(initialInterval.milliseconds, forKey: .initialMs)
        try c.encode(backoffCoefficient, forKey: .coefficient)
        try c.encode(maximumInterval.milliseconds, forKey: .maximumMs)
        try c.encode(maximumAttempts, forKey: .maxAttempts)
        if !nonRetryableErrorTypes.isEmpty { try c.encode(nonRetryableErrorTypes, forKey: .nonRetryable) }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

