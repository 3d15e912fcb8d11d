import Durable
import DurableJournal
import Foundation
import HTTPTypes
import ServiceLifecycle
import Synchronization

/// Bounds how many requests wait at once (`?wait=` and history streams): past the limit a request is
/// answered 503 instead of holding a connection and a task.
final class WaiterGate: Sendable {
    private let limit: Int
    private let count = Mutex(0)

    init(limit: Int) { self.limit = limit }

    /// Runs `body` as one waiter.
    /// - Throws: a 503 problem when `limit` requests wait already.
    func wait<T>(_ body: () async throws -> T) async throws -> T {
        let ticket = try enter()
        defer { withExtendedLifetime(ticket) {} }
        return try await body()
    }

    /// Admits one waiter until the ticket is released.
    /// - Throws: a 503 problem when `limit` requests wait already.
    func enter() throws -> Ticket {
        let admitted = count.withLock { count in
            guard count < limit else { return false }
            count += 1
            return true
        }
        guard admitted else {
            throw Problem(.serviceUnavailable, "tooManyWaiters", "\(limit) request\(limit == 1 ? " is" : "s are") waiting already; try again shortly or without ?wait=", headers: [.retryAfter: "1"])
        }
        return Ticket(gate: self)
    }

    /// One admitted waiter; its place is freed when the ticket goes away.
    final class Ticket: Sendable {
        let gate: WaiterGate
        init(gate: WaiterGate) { self.gate = gate }
        deinit { gate.count.withLock { $0 -= 1 } }
    }
}

/// `?wait=30s`: how long a request may wait for a run to end. Accepts `500ms`, `30s`, `2m` or a
/// number of seconds; at most `maximum`.
func parseWait(_ text: String?, maximum: Duration) throws -> Duration? {
    guard let text, !text.isEmpty else { return nil }
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
    var number = Substring(text)
    var scale = 1.0
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        number = text.dropLast(suffix.count)
        scale = factor
        break
    }
    let limit = Double(maximum.components.seconds) + Double(maximum.components.attoseconds) / 1e18
    guard let value = Double(number), value.isFinite, value >= 0, value * scale <= limit + 0.000_5 else {
        throw Problem.badRequest("wait must be a duration such as 500ms, 30s or 1m, at most \(maximum), not '\(text)'")
    }
    return .milliseconds(Int64((value * scale * 1000).rounded()))
}

extension DurableServer {
    /// The run's outcome if it ends within `limit`, else `nil`. Ends early (with `nil`) when the
    /// server shuts down, so that a graceful shutdown does not wait for waiters.
    func outcome(of runID: String, within limit: Duration) async throws -> RunOutcome? {
        try await waiters.wait {
            try await withThrowingTaskGroup(of: RunOutcome?.self) { group in
                let client = self.client
                group.addTask {
                    do {
                        return try await cancelWhenGracefulShutdown { try await client.outcome(of: runID) }
                    } catch is CancellationError {
                        return nil
                    } catch let error as DurableError where error.code == .runHeld {
                        return nil  // answered with its status, held
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: limit)
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
        }
    }
}
