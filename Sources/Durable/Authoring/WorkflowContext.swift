public import Foundation
import DurableJournal

/// What workflow code uses to act durably: run activities, read the time, draw random numbers.
///
/// Every operation is recorded in or derived from the run's history, so it returns the same on
/// replay. Use the context only from the workflow's own task tree (the `run` function, its
/// `async let` children and task-group children); the engine refuses calls from elsewhere.
public final class WorkflowContext: @unchecked Sendable {
    // @unchecked Sendable: the context is shared with `async let` and task-group children of the
    // workflow, which all run on the run's serial WorkflowExecutor; every operation checks that.
    let instance: WorkflowInstance
    private let decoder = JSONDecoder.payload()
    private let encoder = JSONEncoder.payload()

    init(instance: WorkflowInstance) {
        self.instance = instance
    }

    public var runID: String { instance.runID }
    public var workflowID: String { instance.workflowID }
    public var workflowType: String { instance.workflowType }

    /// The time of the event that started the current activation, as recorded in history.
    public var now: Date { instance.currentTime() }

    /// `true` while the engine re-runs recorded history (after a restart); use it to silence logs.
    public var isReplaying: Bool { instance.isReplaying }

    /// A random number generator seeded from a value recorded when the run started.
    ///
    /// ```swift
    /// var rng = ctx.random
    /// let pick = Int.random(in: 0..<3, using: &rng)
    /// ```
    public var random: WorkflowRandom { WorkflowRandom(instance: instance) }

    /// A version-4 UUID drawn from ``random``.
    public func uuid() -> UUID {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in stride(from: 0, to: 16, by: 8) {
            let value = instance.nextRandom("uuid()")
            for j in 0..<8 { bytes[i + j] = UInt8(truncatingIfNeeded: value >> (8 * j)) }
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// Starts a child run of `workflow` and returns its result. The child is a run of its own (its
    /// own history, `runs show`, signals and queries), driven by a worker like any other; its start
    /// is journaled with the parent's decision and its outcome comes back as a `ChildClosed` event,
    /// both surviving crashes of either.
    ///
    /// ```swift
    /// let score = try await ctx.executeChild(AssessDamage.self, claim.photos, id: "damage-\(claim.id)")
    /// ```
    /// - Parameters:
    ///   - id: the child's workflow ID (unused by any open run); `"<parent workflow ID>/<seq>"` by default.
    ///   - cancellation: what cancelling the awaiting task does to the child (``ChildCancellation``).
    /// - Throws: ``ChildWorkflowFailure`` when the child failed, was cancelled or terminated;
    ///   `CancellationError` when the awaiting task was cancelled.
    public func executeChild<W: Workflow>(
        _ workflow: W.Type, _ input: W.Input, id: String? = nil, cancellation: ChildCancellation = .cancel
    ) async throws -> W.Output {
        let inputData = try DurableError.encode(input, with: encoder, as: String(describing: W.Input.self))
        try DurableError.checkPayload(inputData, "the input of child workflow \(W.name)")
        if let id { try DurableClient.checkIdentifier(id, "child workflow ID") }
        let data = try await instance.executeChild(
            workflowType: W.name, workflowID: id, input: inputData, abandonOnCancel: cancellation == .abandon)
        let outcome: ChildOutcome
        do {
            outcome = try decoder.decode(ChildOutcome.self, from: data)
        } catch {
            throw DurableError(.badOutput(type: "child outcome", reason: describeDecoding(error)))
        }
        guard outcome.status == "completed", let result = outcome.result else {
            if outcome.status == "cancelled" && Task.isCancelled { throw CancellationError() }
            throw ChildWorkflowFailure(
                workflowType: W.name, childRunID: outcome.childRunID, status: outcome.status,
                cause: outcome.failure ?? FailureInfo(type: "Unknown", message: outcome.status))
        }
        do {
            return try decoder.decode(W.Output.self, from: Data(result.utf8))
        } catch {
            throw DurableError(.badOutput(type: String(describing: W.Output.self), reason: describeDecoding(error)))
        }
    }

    /// Waits, durably: the timer is journaled, survives restarts and fires on time after one (a timer
    /// that came due while no worker ran fires as soon as the run is recovered, in due order with
    /// the others). Waiting days costs nothing while it waits.
    ///
    /// ```swift
    /// try await ctx.sleep(for: .seconds(48 * 3600))     // then chase the reviewer
    /// ```
    /// - Throws: `CancellationError` when the awaiting task is cancelled (the cancellation is
    ///   journaled).
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now.addingTimeInterval(Double(duration.milliseconds) / 1000))
    }

    /// Waits until `date` (returns at once if it has passed), durably; see ``sleep(for:)``.
    public func sleep(until date: Date) async throws {
        try await instance.sleep(until: date)
    }

    /// Runs `operation` (activities, sleeps, other context operations) against a durable timer: the
    /// first to finish wins, and the other is cancelled (an activity gets the cancellation described
    /// in ``execute(_:_:options:)`` and is awaited until it has stopped).
    ///
    /// ```swift
    /// let score = try await ctx.withTimeout(.seconds(300)) {
    ///     try await ctx.execute(ScoreFraud.self, claim)
    /// }
    /// ```
    /// - Throws: ``WorkflowTimeout`` when the timer fires first; otherwise what `operation` throws.
    public func withTimeout<T: Sendable>(
        _ limit: Duration, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await self.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard case let value?? = try await group.next() else { throw WorkflowTimeout(limit: limit) }
            return value
        }
    }

    /// The request to end this run and continue as a new run of the same workflow ID with `input`
    /// and an empty history: `throw` it. For workflows that run for ever (a monitor, a mailbox) or
    /// for very long, so that no history grows without bound; see ``isContinueAsNewSuggested``.
    ///
    /// ```swift
    /// if ctx.isContinueAsNewSuggested { throw ctx.continueAsNew(with: state) }
    /// ```
    /// The end of this run and the start of the next are one journal transaction. The input must be
    /// the workflow's own input type (the new run fails at once otherwise).
    public func continueAsNew<Input: Encodable>(with input: Input) -> any Error {
        do throws(DurableError) {
            let data = try DurableError.encode(input, with: encoder, as: "continue-as-new input (\(Input.self))")
            try DurableError.checkPayload(data, "the continue-as-new input")
            return ContinueAsNew(input: data)
        } catch {
            return error
        }
    }

    /// Events in this run's history so far, this activation's decisions included.
    public var historyLength: Int { instance.historyLength }

    /// Bytes of the payloads (inputs, results, signals) in this run's history so far, roughly.
    public var historySize: Int { instance.historySize }

    /// `true` once the history passes 10,000 events or 10 MB of payloads
    /// (``DurableLimits/continueAsNewSuggestedEvents``, ``DurableLimits/continueAsNewSuggestedPayloadBytes``):
    /// time to ``continueAsNew(with:)``. Replaying a long history costs a worker time after every restart.
    public var isContinueAsNewSuggested: Bool {
        DurableLimits.isContinueAsNewSuggested(events: historyLength, payloadBytes: historySize)
    }

    /// Runs `body` where a cancellation of the workflow (`durable cancel`) does not reach it: cleanup
    /// that must run activities after the workflow was asked to stop.
    ///
    /// ```swift
    /// do {
    ///     try await ctx.execute(ProcessClaim.self, claim)
    /// } catch is CancellationError {
    ///     try await ctx.withoutCancellation { _ = try await ctx.execute(ReleaseHold.self, claim.id) }
    ///     throw CancellationError()              // the run ends as cancelled
    /// }
    /// ```
    public func withoutCancellation<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await instance.withoutCancellation(body)
    }

    /// Registers a read-only query: `durable query <id> <name>` (or ``Engine/query(_:name:)``) calls
    /// `handler` and prints what it returns, computed from the workflow's state. A query is answered
    /// between activations from the live run, or from a replay of its history (in another process, or
    /// after the run ended), and is never recorded. The handler must not change anything.
    ///
    /// ```swift
    /// var stage = "received"
    /// ctx.setQueryHandler("stage") { stage }
    /// stage = "scoring"
    /// ```
    public func setQueryHandler<Value: Encodable>(_ name: String, _ handler: @escaping () -> Value) {
        let encoder = self.encoder
        instance.setQueryHandler(name) { try encoder.encode(handler()) }
    }

    /// Whether this run takes the new branch of a code change, so that workflow code can change while
    /// runs are open. New runs (and every decision made after this point in a running run) take the
    /// new branch and record a `PatchMarker`; a run whose history reached this point before the change
    /// replays down the old branch.
    ///
    /// ```swift
    /// if ctx.patched("fraud-check-v2") {
    ///     try await ctx.execute(ScoreFraudV2.self, claim)
    /// } else {
    ///     try await ctx.execute(ScoreFraud.self, claim)
    /// }
    /// ```
    ///
    /// Removing the old branch later: once no open run started before the change (`runs list`),
    /// delete the `if` and keep the new branch. Recorded markers that the code no longer asks about
    /// are skipped on replay. Use a new ID for every change; the answer for one ID is the same for
    /// the whole run.
    public func patched(_ changeID: String) -> Bool { instance.patched(changeID) }

    /// Waits for a signal sent to this run (`engine.signal(...)`, `durable signal <id> <name>`), or
    /// takes the oldest one that came before and was not taken yet. Signals are journaled when they
    /// are delivered, so none is lost or taken twice, across crashes.
    ///
    /// A signal whose input does not decode as `Value` is rejected: recorded as `SignalRejected` (with
    /// the reason) in the run's history, and the workflow goes on waiting, within the same timeout.
    ///
    /// ```swift
    /// let review = try await ctx.waitForSignal(Review.self, named: "review", timeout: .seconds(48 * 3600))
    /// ```
    /// - Parameter timeout: a durable timer (see ``withTimeout(_:_:)``); `nil` waits for ever.
    /// - Throws: ``WorkflowTimeout`` when the timeout fires first; `CancellationError` when the
    ///   waiting task is cancelled.
    public func waitForSignal<Value: Decodable & Sendable>(
        _ type: Value.Type, named name: String, timeout: Duration? = nil
    ) async throws -> Value {
        try await waitForSignal(
            Value.self, named: name, until: timeout.map { now.addingTimeInterval(Double($0.milliseconds) / 1000) },
            limit: timeout)
    }

    /// Waits for a signal until a point in time: ``waitForSignal(_:named:timeout:)`` with a deadline.
    ///
    /// ```swift
    /// let review = try await ctx.waitForSignal(Review.self, named: "review", until: claim.reviewDeadline)
    /// ```
    /// - Throws: ``WorkflowTimeout`` when the deadline passes first (at once, when it has passed and no
    ///   signal is waiting); `CancellationError` when the waiting task is cancelled.
    public func waitForSignal<Value: Decodable & Sendable>(
        _ type: Value.Type, named name: String, until deadline: Date
    ) async throws -> Value {
        try await waitForSignal(Value.self, named: name, until: deadline, limit: nil)
    }

    /// - Parameter limit: the timeout as given, for the first wait (so that its timer is recorded as
    ///   before); later waits, after a rejected signal, use what is left until `deadline`.
    private func waitForSignal<Value: Decodable & Sendable>(
        _ type: Value.Type, named name: String, until deadline: Date?, limit: Duration?
    ) async throws -> Value {
        var limit = limit
        while true {
            let data: Data
            if let buffered = try instance.takeBufferedSignal(named: name) {
                data = buffered  // one is waiting: no timer
            } else if let deadline {
                let left = limit ?? .milliseconds(max(0, deadline.journalMillis - now.journalMillis))
                data = try await withTimeout(left) { try await self.instance.waitForSignal(named: name) }
            } else {
                data = try await instance.waitForSignal(named: name)
            }
            do {
                return try decoder.decode(Value.self, from: data)
            } catch {
                try instance.rejectSignal(
                    named: name, reason: "input is not a valid \(Value.self): \(describeDecoding(error))")
                limit = nil
            }
        }
    }

    /// The signals of one name, as they come: `for try await review in ctx.signals(Review.self, named: "review")`.
    /// The sequence does not end by itself; break out of the loop when the workflow has what it needs.
    public func signals<Value: Decodable & Sendable>(_ type: Value.Type, named name: String) -> WorkflowSignals<Value> {
        WorkflowSignals(context: self, name: name)
    }

    /// Runs an activity and returns its result; the call is journaled, retried by `options.retry`
    /// and bounded by the timeouts in `options`.
    ///
    /// Cancelling the task that awaits this call (`group.cancelAll()`, an `async let` left unawaited)
    /// cancels the activity: the request is journaled, the running attempt sees task cancellation
    /// (a process-pool slot gets SIGTERM, then SIGKILL), and once it has stopped this call throws
    /// `CancellationError`, or returns the result if the attempt finished anyway.
    ///
    /// - Throws: ``ActivityFailure`` when the activity failed for good; the timeout's own type
    ///   (``StartToCloseTimeout``, ``HeartbeatTimeout``, ``ScheduleToStartTimeout``,
    ///   ``ScheduleToCloseTimeout``) when a timeout ended it; `CancellationError` when it was cancelled.
    public func execute<A: ActivityDeclaration>(
        _ activity: A.Type, _ input: A.Input, options: ActivityOptions = .default
    ) async throws -> A.Output {
        let inputData = try DurableError.encode(input, with: encoder, as: String(describing: A.Input.self))
        try DurableError.checkPayload(inputData, "the input of activity \(A.name)")
        let output = try await instance.scheduleActivity(type: A.name, input: inputData, options: options)
        do {
            return try decoder.decode(A.Output.self, from: output)
        } catch {
            throw DurableError(.badOutput(type: String(describing: A.Output.self), reason: describeDecoding(error)))
        }
    }
}

/// The signals of one name, in the order they arrived; see ``WorkflowContext/signals(_:named:)``.
public struct WorkflowSignals<Value: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = Value
    let context: WorkflowContext
    let name: String

    public struct AsyncIterator: AsyncIteratorProtocol {
        let context: WorkflowContext
        let name: String

        public mutating func next() async throws -> Value? {
            try await context.waitForSignal(Value.self, named: name)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(context: context, name: name) }
}

/// The workflow's deterministic random number generator; see ``WorkflowContext/random``.
public struct WorkflowRandom: RandomNumberGenerator, Sendable {
    let instance: WorkflowInstance

    public mutating func next() -> UInt64 { instance.nextRandom("random") }
}

/// A short, readable account of a `DecodingError`.
package func describeDecoding(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return path.isEmpty ? "" : " at \(path)"
    }
    switch error {
    case .keyNotFound(let key, let context): return "missing key '\(key.stringValue)'\(path(context))"
    case .typeMismatch(let type, let context): return "expected \(type)\(path(context)): \(context.debugDescription)"
    case .valueNotFound(let type, let context): return "missing \(type) value\(path(context))"
    case .dataCorrupted(let context):
        let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return "\(underlying ?? context.debugDescription)\(path(context))"
    @unknown default: return "\(error)"
    }
}
