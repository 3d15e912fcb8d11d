import Dispatch
import DurableJournal
import Foundation
import Synchronization

/// Where an attempt's partial output goes (``ActivityContext/publish(_:)``).
protocol OutputSink: Sendable {
    /// Takes one chunk (JSON); throws `CancellationError` once the attempt has ended or was cancelled.
    func publish(_ chunk: Data) throws
}

/// One attempt's partial output on its way to the journal: chunks are collected and journaled as one
/// `ActivityOutput` event at most every ``interval`` (a chunk after a quiet spell goes at once; later
/// ones wait for one timer). When the attempt ends, what is left is journaled before the event that
/// ends it.
final class PartialOutput: Sendable {
    private struct State {
        var chunks: [Data] = []
        var bytes = 0
        var lastJournaled: UInt64 = 0
        var flushArmed = false
        var closed = false
    }

    /// The largest chunk ``ActivityContext/publish(_:)`` takes, encoded.
    static let maximumChunkBytes = 1024 * 1024

    private let state = Mutex(State())
    private let interval: UInt64
    private let journal: @Sendable (Data) -> Void
    private let schedule: @Sendable (Duration, @escaping @Sendable () -> Void) -> Void
    private let clock: @Sendable () -> UInt64

    /// - Parameters:
    ///   - journal: records one event's data (a JSON array of chunks); called under a lock, so it
    ///     must only hand the event on (the run's mailbox, without processing it).
    ///   - schedule: calls its closure after the duration (the engine's timeouts).
    ///   - clock: nanoseconds of uptime.
    init(
        interval: Duration, journal: @escaping @Sendable (Data) -> Void,
        schedule: @escaping @Sendable (Duration, @escaping @Sendable () -> Void) -> Void,
        clock: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }
    ) {
        self.interval = UInt64(max(0, interval.milliseconds)) * 1_000_000
        self.journal = journal
        self.schedule = schedule
        self.clock = clock
    }

    /// Adds a chunk. - Throws: `CancellationError` once the attempt has ended.
    func publish(_ chunk: Data) throws {
        let now = clock()
        let delay = try state.withLock { state throws -> UInt64? in
            guard !state.closed else { throw CancellationError() }
            state.chunks.append(chunk)
            state.bytes += chunk.count
            // Half a payload limit's worth waits no longer: one event stays within the limit.
            if now &- state.lastJournaled >= interval || state.bytes >= DurableLimits.maximumPayloadBytes / 2 {
                // Under the lock, so that events keep the order of the chunks whatever thread publishes.
                journal(Self.take(&state, now: now))
                return nil
            }
            guard !state.flushArmed else { return nil }
            state.flushArmed = true
            return state.lastJournaled &+ interval &- now
        }
        if let delay { schedule(.nanoseconds(Int64(clamping: delay))) { [self] in flush() } }
    }

    /// The timer fired: journals what was published meanwhile, unless the attempt ended.
    private func flush() {
        state.withLock { state in
            state.flushArmed = false
            guard !state.closed, !state.chunks.isEmpty else { return }
            journal(Self.take(&state, now: clock()))
        }
    }

    /// The attempt ended: later chunks are refused. - Returns: the chunks not journaled yet, as one
    /// event's data, for the caller to journal before the attempt's end.
    func close() -> Data? {
        state.withLock { state in
            state.closed = true
            return state.chunks.isEmpty ? nil : Self.take(&state, now: 0)
        }
    }

    /// The chunks as one JSON array, emptied.
    private static func take(_ state: inout State, now: UInt64) -> Data {
        var array = Data("[".utf8)
        array.reserveCapacity(state.bytes + state.chunks.count + 1)
        for (i, chunk) in state.chunks.enumerated() {
            if i > 0 { array.append(UInt8(ascii: ",")) }
            array.append(chunk)
        }
        array.append(UInt8(ascii: "]"))
        state.chunks = []
        state.bytes = 0
        state.lastJournaled = now
        return array
    }
}

extension AttemptRun: OutputSink {
    func publish(_ chunk: Data) throws {
        try outputSink().publish(chunk)
    }
}

extension ActivityContext {
    /// Publishes a piece of partial output while the attempt runs: a token of a model's answer, a
    /// page read, a progress note. Clients follow it live (`durable history --follow`, the HTTP
    /// API's event stream, the console): chunks are journaled in `ActivityOutput` events, at most
    /// every ``WorkerOptions/partialOutputInterval`` per attempt, the chunks published meanwhile in
    /// one event; what is left when the attempt ends is journaled just before its end. It is not the
    /// result: only what `run` returns is. If the attempt fails or is cancelled, its partial output
    /// is marked discarded where it is shown, and the next attempt starts over.
    ///
    /// ```swift
    /// for try await token in model.generate(prompt) {
    ///     try ctx.publish(token)        // throws CancellationError once cancelled
    ///     answer += token
    /// }
    /// return answer
    /// ```
    /// - Throws: `CancellationError` when the attempt was cancelled, timed out, or ended;
    ///   ``DurableError`` `badInput` when the chunk does not encode, `payloadTooLarge` above 1 MiB.
    public func publish<Chunk: Encodable>(_ chunk: Chunk) throws {
        let data = try DurableError.encode(chunk, as: "partial output (\(Chunk.self))")
        if data.count > PartialOutput.maximumChunkBytes {
            throw DurableError(.payloadTooLarge(what: "a chunk of partial output", bytes: data.count, limit: PartialOutput.maximumChunkBytes))
        }
        try (heartbeats as? any OutputSink)?.publish(data)
        try Task.checkCancellation()
    }
}
