import DurableJournal
import Logging
import PostgresNIO
import Synchronization

/// Wakes the change feed's subscribers when another process commits to the journal: `LISTEN` on a
/// connection of its own (every writer sends `NOTIFY` in the transaction that writes a submission,
/// a signal or a run's end), and a slow jittered poll behind it, so that nothing waits for ever on a
/// notification that was lost. After a lost connection it says so once, reconnects with backoff,
/// listens again and wakes everyone (something may have been missed meanwhile).
final class PostgresChangeWatcher: Sendable {
    private let place: PostgresLocation
    private let channel: String
    private let logger: Logger
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// How often the poll wakes the subscribers when no notification came: 1 to 2 s.
    static let pollInterval: ClosedRange<Double> = 1.0...2.0

    init(place: PostgresLocation, channel: String, logger: Logger) {
        self.place = place
        self.channel = channel
        self.logger = logger
    }

    func setActive(_ active: Bool, notifying broadcaster: ChangeBroadcaster) {
        let new: [Task<Void, Never>] = active ? [
            Task.detached { [self] in await self.listen(broadcaster) },
            Task.detached {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(Double.random(in: Self.pollInterval)))
                    broadcaster.notify()
                }
            },
        ] : []
        let old = tasks.withLock { tasks in
            defer { tasks = new }
            return tasks
        }
        for task in old { task.cancel() }
    }

    func stop() {
        for task in tasks.withLock({ tasks in defer { tasks = [] }; return tasks }) { task.cancel() }
    }

    private func listen(_ broadcaster: ChangeBroadcaster) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let configuration = try place.connectionConfiguration()
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                defer { Task { try? await connection.close() } }
                try await withTaskCancellationHandler {
                    try await connection.listen(on: channel) { notifications in
                        if failures > 0 {
                            logger.warning("PostgreSQL at \(place.display) is reachable again")
                        }
                        failures = 0
                        broadcaster.notify()  // what was committed while not listening
                        for try await _ in notifications { broadcaster.notify() }
                    }
                } onCancel: {
                    connection.close().whenComplete { _ in }
                }
            } catch {
                if Task.isCancelled { return }
                if failures == 0 {
                    logger.warning("lost the connection to PostgreSQL at \(place.display) (\(PostgresJournal.describe(error))); reconnecting")
                }
                failures += 1
            }
            // Back off: 0.1 s, doubling, at most 2 s between attempts.
            let delay = min(2.0, 0.1 * Double(1 << min(failures, 5)))
            try? await Task.sleep(for: .seconds(delay))
        }
    }
}
