import HTTPTypes
import Synchronization

/// Runs `body`, throwing a 503 problem when it takes longer than `limit`. The body runs on in an
/// unstructured task after that (a journal write blocked on a lock cannot be called back): its effect,
/// if any, lands in the journal later, which the problem says.
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let work = Task { try await body() }
    let race = FirstResult<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation, timer: Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                race.finish(.failure(Problem(
                    .serviceUnavailable, "timeout",
                    "the request took longer than \(limit); what it did, if anything, is written to the journal when the journal takes it: look before you retry (a start retried with the same Idempotency-Key finds its run)",
                    headers: [.retryAfter: "1"])))
            })
            Task { race.finish(await work.result) }
        }
    } onCancel: {
        work.cancel()
    }
}

/// Resumes a continuation with whichever result comes first, once, and stops the timer.
private final class FirstResult<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, any Error>?, timer: Task<Void, Never>?)>((nil, nil))

    func start(_ continuation: CheckedContinuation<T, any Error>, timer: Task<Void, Never>) {
        state.withLock { $0 = (continuation, timer) }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, timer) = state.withLock { state in
            defer { state = (nil, nil) }
            return state
        }
        timer?.cancel()
        continuation?.resume(with: result)
    }
}
