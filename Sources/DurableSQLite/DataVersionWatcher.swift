import DurableJournal
import GRDB
import Synchronization

/// Notices commits to a journal file by any connection of any process: `PRAGMA data_version`, read
/// on a connection of its own, changes whenever another connection has committed. While the change
/// feed has subscribers, a task reads it every `interval` (a read of the file's header, no disk
/// I/O when nothing changed) and wakes them when it moves.
final class DataVersionWatcher: Sendable {
    private let path: String
    private let interval: Duration
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(path: String, interval: Duration) {
        self.path = path
        self.interval = interval
    }

    func setActive(_ active: Bool, notifying broadcaster: ChangeBroadcaster) {
        let new: Task<Void, Never>? = active ? Task.detached { [path, interval] in
            await Self.watch(path: path, interval: interval, broadcaster: broadcaster)
        } : nil
        let old = task.withLock { task in
            defer { task = new }
            return task
        }
        old?.cancel()
    }

    private static func watch(path: String, interval: Duration, broadcaster: ChangeBroadcaster) async {
        var connection: DatabaseQueue?
        var last: Int?
        while !Task.isCancelled {
            // A read that fails (the file busy past the timeout) is tried again next round; the
            // subscribers are woken then, so that they look for themselves.
            do {
                let queue = try connection ?? DatabaseQueue(path: path)
                connection = queue
                let version = try Self.dataVersion(queue)
                if let last, version != last { broadcaster.notify() }
                last = version
            } catch {
                last = nil
                broadcaster.notify()
            }
            try? await Task.sleep(for: interval)
        }
        try? connection?.close()
    }

    private static func dataVersion(_ queue: DatabaseQueue) throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "PRAGMA data_version") ?? 0 }
    }

    func stop() {
        task.withLock { task in
            task?.cancel()
            task = nil
        }
    }
}
