import Dispatch
package import Foundation
import Synchronization

/// The time an engine records in history and waits by.
///
/// An engine's clock is the system clock. A test engine's clock (`skipping: true`, what
/// DurableTesting's `TestEnvironment` uses) can also run ahead of it: while a caller awaits a run's
/// outcome and nothing is in progress, it jumps to the next deadline in the engine's scheduler, so a
/// workflow that sleeps 30 days finishes in milliseconds. Between jumps it moves at the real rate, so
/// an activity's timeouts still mean what they say.
///
/// "Nothing in progress" is counted exactly, not guessed: an activation being processed, a batch
/// handed to the journal and not yet through its commit callback, an activity attempt from its start
/// until its outcome is posted, and a fired scheduler callback until it returns, each hold the
/// clock (``beginWork()``/``endWork()``). A system clock does none of this bookkeeping.
package final class EngineClock: Sendable {
    /// Whether the clock may skip ahead.
    package let skipping: Bool
    private let aheadNanos = Atomic<UInt64>(0)
    private let busy = Atomic<Int>(0)
    private let awaiting = Atomic<Int>(0)
    /// What to do when the engine becomes idle while someone awaits an outcome (set by the scheduler).
    private let idleHandler = Mutex<(@Sendable () -> Void)?>(nil)

    package init(skipping: Bool = false) {
        self.skipping = skipping
    }

    /// The current time on this clock, as recorded in history.
    package func now() -> Date {
        let ahead = aheadNanos.load(ordering: .relaxed)
        return ahead == 0 ? Date() : Date(timeIntervalSinceNow: Double(ahead) / 1e9)
    }

    /// Monotonic nanoseconds on this clock: the scheduler's deadlines.
    func uptimeNanos() -> UInt64 {
        DispatchTime.now().uptimeNanoseconds &+ aheadNanos.load(ordering: .relaxed)
    }

    /// The system uptime at which this clock reads `nanos`.
    func systemUptime(at nanos: UInt64) -> UInt64 {
        let ahead = aheadNanos.load(ordering: .relaxed)
        return nanos > ahead ? nanos - ahead : 0
    }

    /// How far the clock has run ahead of the system clock.
    package var skipped: Duration { .nanoseconds(Int64(aheadNanos.load(ordering: .relaxed))) }

    func moveAhead(by nanos: UInt64) {
        precondition(skipping, "only a test engine's clock skips ahead")
        aheadNanos.add(nanos, ordering: .relaxed)
    }

    // MARK: - Work in progress

    func setIdleHandler(_ handler: @escaping @Sendable () -> Void) {
        idleHandler.withLock { $0 = handler }
    }

    /// Something started that time must not skip over.
    func beginWork() {
        guard skipping else { return }
        busy.add(1, ordering: .sequentiallyConsistent)
    }

    /// Something counted by ``beginWork()`` ended; when it was the last, a skip may follow.
    func endWork() {
        guard skipping else { return }
        let left = busy.subtract(1, ordering: .sequentiallyConsistent).newValue
        if left == 0 && awaiting.load(ordering: .sequentiallyConsistent) > 0 { idleHandler.withLock { $0 }?() }
    }

    /// Whether nothing counted by ``beginWork()`` is in progress.
    var isIdle: Bool { busy.load(ordering: .sequentiallyConsistent) == 0 }

    /// Runs `body` (which awaits a run's outcome) with skipping allowed while it waits.
    func awaitingOutcome<T>(_ body: () async throws -> T) async throws -> T {
        guard skipping else { return try await body() }
        awaiting.add(1, ordering: .sequentiallyConsistent)
        defer { awaiting.subtract(1, ordering: .sequentiallyConsistent) }
        if isIdle { idleHandler.withLock { $0 }?() }
        return try await body()
    }
}

extension DurableWorker {
    /// Moves a skipping clock ahead by `duration`: skips to each deadline on the way once the work
    /// before it has settled, then to the end. See DurableTesting's `TestEnvironment.advanceTime(by:)`.
    package func advanceClock(by duration: Duration) async {
        precondition(clock.skipping, "advanceClock(by:) needs an engine whose clock skips")
        let (seconds, attoseconds) = duration.components
        let target = clock.uptimeNanos() &+ UInt64(max(0, seconds)) * 1_000_000_000 &+ UInt64(max(0, attoseconds / 1_000_000_000))
        while true {
            switch timeouts.skipToNextDeadline(notAfter: target) {
            case .moved, .busy:
                try? await Task.sleep(for: .milliseconds(1))  // let the fired callback and what follows run
            case .nothingDue:
                let now = clock.uptimeNanos()
                if target > now { clock.moveAhead(by: target - now) }
                return
            }
        }
    }
}
