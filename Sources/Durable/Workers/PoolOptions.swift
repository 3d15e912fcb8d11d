/// How a pool keeps an activity's slots: how many are warm, how many may run at once, and when a slot
/// is replaced.
///
/// A slot is one warmed instance of the activity (a loaded model, an open connection, a process).
/// Each slot runs one attempt at a time, so ``maximumSlots`` is the pool's concurrency limit; attempts
/// beyond it wait in a first-in, first-out queue, and that wait is what
/// ``ActivityOptions/scheduleToStart`` bounds.
///
/// ```swift
/// engine.register(ScoreFraud.self, pool: .warm(min: 2, max: 4, maxUses: 1000)) {
///     ScoreFraud(model: try await FraudModel.load())
/// }
/// ```
public struct PoolOptions: Sendable, Equatable {
    /// Slots warmed when the worker starts (``Engine/warmUp()``), before work arrives, and kept warm.
    public var minimumSlots: Int
    /// Most slots at once, warming, busy and being closed (a process still exiting) included.
    public var maximumSlots: Int
    /// A slot above the minimum that has been idle this long is closed; `nil` keeps idle slots.
    public var idleTimeout: Duration?
    /// A slot is replaced after this many attempts; `nil` means never.
    public var maximumUses: Int?
    /// A slot whose attempt failed is replaced rather than reused. (A slot whose attempt timed out or
    /// was cancelled while it ran is always replaced: its code may still be running. For a process
    /// pool, an error the process reported in its response, or output of the wrong shape, does not
    /// count: the process answered and stays; one that crashed or broke the protocol is always
    /// replaced.)
    public var recycleAfterFailure: Bool
    /// Longest time the factory may take to warm a slot; the attempt waiting for it then fails with a
    /// retryable ``SlotWarmUpFailed``. `nil` means no limit (a process pool still waits at most an hour
    /// for a process's ready line).
    public var warmUpTimeout: Duration?
    /// The most the pool's attempts may use together; see ``RateLimit``. `nil`: no limit.
    public var rateLimit: RateLimit?
    /// The most the attempts of each key may use (``ActivityDeclaration/rateLimitKey(for:)``, a tenant
    /// for instance); attempts without a key count only against ``rateLimit``. `nil`: no limit.
    public var keyRateLimit: RateLimit?

    public init(
        minimumSlots: Int = 0, maximumSlots: Int = 4, idleTimeout: Duration? = .seconds(300),
        maximumUses: Int? = nil, recycleAfterFailure: Bool = true, warmUpTimeout: Duration? = .seconds(120),
        rateLimit: RateLimit? = nil, keyRateLimit: RateLimit? = nil
    ) {
        self.maximumSlots = max(1, maximumSlots)
        self.minimumSlots = min(max(0, minimumSlots), self.maximumSlots)
        self.idleTimeout = idleTimeout
        self.maximumUses = maximumUses.map { max(1, $0) }
        self.recycleAfterFailure = recycleAfterFailure
        self.warmUpTimeout = warmUpTimeout
        self.rateLimit = rateLimit
        self.keyRateLimit = keyRateLimit
    }

    /// Whether attempts wait for rate-limit capacity.
    var isRateLimited: Bool { rateLimit != nil || keyRateLimit != nil }

    /// A pool that keeps `min` slots warm and grows to `max`.
    public static func warm(
        min: Int, max: Int, idleTimeout: Duration? = .seconds(300), maxUses: Int? = nil,
        recycleAfterFailure: Bool = true, warmUpTimeout: Duration? = .seconds(120),
        rateLimit: RateLimit? = nil, keyRateLimit: RateLimit? = nil
    ) -> PoolOptions {
        PoolOptions(
            minimumSlots: min, maximumSlots: max, idleTimeout: idleTimeout, maximumUses: maxUses,
            recycleAfterFailure: recycleAfterFailure, warmUpTimeout: warmUpTimeout,
            rateLimit: rateLimit, keyRateLimit: keyRateLimit)
    }
}

/// A pool whose slots are long-lived subprocesses speaking JSON lines on stdin and stdout, for models
/// written in other languages. See `Docs/activities.md` for the protocol.
///
/// ```swift
/// engine.register(Sentiment.self, processPool: ProcessPoolOptions(
///     command: ["python3", "models/sentiment.py"], pool: .warm(min: 1, max: 2)))
/// ```
public struct ProcessPoolOptions: Sendable, Equatable {
    /// The executable (a path, or a name looked up in `PATH`) and its arguments.
    public var command: [String]
    /// Variables set for the process on top of the worker's environment.
    public var environment: [String: String]
    public var workingDirectory: String?
    /// Slots, recycling and idle eviction, as for in-process pools. The pool's warm-up timeout also
    /// bounds the wait for the process's ready line.
    public var pool: PoolOptions
    /// After a cancellation or timeout the process gets SIGTERM, then SIGKILL once this has passed.
    public var terminationGrace: Duration
    /// Bytes of the process's standard error kept for failure messages.
    public var stderrLimit: Int
    /// The longest line the process may write on stdout (64 MiB by default); a process that writes
    /// more without a newline broke the protocol: its attempt fails and it is killed and replaced.
    public var lineLimit: Int

    public init(
        command: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
        pool: PoolOptions = PoolOptions(), terminationGrace: Duration = .seconds(2), stderrLimit: Int = 8192,
        lineLimit: Int = 64 << 20
    ) {
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.pool = pool
        self.terminationGrace = terminationGrace
        self.stderrLimit = stderrLimit
        self.lineLimit = lineLimit
    }
}

/// Limits that apply to the whole worker (every pool of one engine).
public struct WorkerOptions: Sendable, Equatable {
    /// Most activity attempts running at once in this engine, over all pools; `nil` means no limit
    /// beyond each pool's own. Attempts beyond it wait (and count as schedule-to-start time).
    public var maximumConcurrentActivities: Int?
    /// Heartbeat details are journaled at most this often per attempt (10 ms at the least), only when
    /// they changed, and always with the attempt's failure; a restart resumes from the last journaled
    /// details.
    public var heartbeatJournalInterval: Duration
    /// How long a run's lease lasts unless renewed (renewal happens every third of it). Another
    /// worker on the journal takes a run over once its lease has expired, or at once when the
    /// holder's process is found gone (same host). At least 300 ms.
    public var leaseDuration: Duration
    /// Partial output an attempt publishes (``ActivityContext/publish(_:)``) is journaled at most this
    /// often per attempt (10 ms at the least), the chunks published meanwhile in one
    /// `ActivityOutput` event.
    public var partialOutputInterval: Duration
    /// Most runs the worker keeps live in memory; idle ones beyond it are evicted, least recently
    /// active first, and replayed when something wakes them (`Docs/architecture.md`, "The instance
    /// cache"). `nil`: the `DURABLE_INSTANCE_CACHE` environment variable if set, else an eighth of the
    /// machine's memory at 16 KiB a run, at least 1,000. 0 evicts every run at its first idle moment.
    public var instanceCacheCapacity: Int?

    public init(
        maximumConcurrentActivities: Int? = nil, heartbeatJournalInterval: Duration = .seconds(1),
        leaseDuration: Duration = .seconds(5), partialOutputInterval: Duration = .milliseconds(200),
        instanceCacheCapacity: Int? = nil
    ) {
        self.maximumConcurrentActivities = maximumConcurrentActivities.map { max(1, $0) }
        self.heartbeatJournalInterval = max(.milliseconds(10), heartbeatJournalInterval)
        self.leaseDuration = max(.milliseconds(300), leaseDuration)
        self.partialOutputInterval = max(.milliseconds(10), partialOutputInterval)
        self.instanceCacheCapacity = instanceCacheCapacity.map { max(0, $0) }
    }
}
