import HTTPTypes
import Synchronization

/// Runs `body`, throwing a 503 problem when it takes longer than `limit` (noticed within
/// ``Deadlines/resolution``). The body runs on in an unstructured task after that (a journal write
/// blocked on a lock cannot be called back): its effect, if any, lands in the journal later, which the
/// problem says.
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = FirstResult<T>()
    let work = Task {
        do {
            race.finish(.success(try await body()))
        } catch {
            race.finish(.failure(error))
        }
    }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation) {
                Deadlines.shared.add(ContinuousClock.now + limit) {
                    race.finish(.failure(Problem(
                        .serviceUnavailable, "timeout",
                        "the request took longer than \(limit); what it did, if anything, is written to the journal when the journal takes it: look before you retry (a start retried with the same Idempotency-Key finds its run)",
                        headers: [.retryAfter: "1"])))
                }
            }
        }
    } onCancel: {
        work.cancel()
    }
}

/// Resumes a continuation with whichever result comes first, once, and drops the deadline. The body
/// may finish before the continuation is there: its result waits for it.
private final class FirstResult<T: Sendable>: Sendable {
    private enum State {
        case waiting(Result<T, any Error>?)
        case started(CheckedContinuation<T, any Error>, deadline: Deadlines.ID)
        case finished
    }

    private let state = Mutex(State.waiting(nil))

    /// Hands over the continuation; `deadline` registers the timeout, unless the result is there.
    func start(_ continuation: CheckedContinuation<T, any Error>, deadline: () -> Deadlines.ID) {
        let early: Result<T, any Error>? = state.withLock { state in
            guard case .waiting(let result) = state else { return nil }
            if let result {
                state = .finished
                return result
            }
            state = .started(continuation, deadline: deadline())
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func finish(_ result: Result<T, any Error>) {
        let started: (CheckedContinuation<T, any Error>, Deadlines.ID)? = state.withLock { state in
            switch state {
            case .waiting(.none):
                state = .waiting(result)
                return nil
            case .started(let continuation, let deadline):
                state = .finished
                return (continuation, deadline)
            case .waiting, .finished:
                return nil
            }
        }
        guard let (continuation, deadline) = started else { return }
        Deadlines.shared.remove(deadline)
        continuation.resume(with: result)
    }
}

/// The deadlines of the requests in flight, checked by one task every ``resolution`` while there are
/// any: a request costs an entry in a table, not a timer of its own (which, per request, cost several
/// percent of the server's CPU under load).
final class Deadlines: Sendable {
    typealias ID = UInt64

    static let shared = Deadlines()
    /// How late a deadline may be noticed.
    static let resolution = Duration.milliseconds(100)

    private struct State {
        var entries: [ID: (due: ContinuousClock.Instant, expire: @Sendable () -> Void)] = [:]
        var nextID: ID = 0
        var checking = false
    }

    private let state = Mutex(State())

    /// Calls `expire` once `due` has passed, unless the entry is removed before.
    func add(_ due: ContinuousClock.Instant, expire: @escaping @Sendable () -> Void) -> ID {
        let (id, startChecking) = state.withLock { state in
            state.nextID += 1
            state.entries[state.nextID] = (due, expire)
            defer { state.checking = true }
            return (state.nextID, !state.checking)
        }
        if startChecking { Task.detached { await self.check() } }
        return id
    }

    func remove(_ id: ID) {
        _ = state.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// Expires what is due, every ``resolution``, until no entry is left.
    private func check() async {
        while true {
            try? await Task.sleep(for: Self.resolution)
            let now = ContinuousClock.now
            let expired: [@Sendable () -> Void]? = state.withLock { state in
                if state.entries.isEmpty {
                    state.checking = false
                    return nil
                }
                let due = state.entries.filter { $0.value.due <= now }
                for id in due.keys { state.entries.removeValue(forKey: id) }
                return due.values.map(\.expire)
            }
            guard let expired else { return }
            for expire in expired { expire() }
        }
    }
}
