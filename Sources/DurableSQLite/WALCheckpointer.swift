import Dispatch
import GRDB
import GRDBSQLite
import Synchronization

/// Checkpoints the journal's write-ahead log from a thread and a connection of its own, so that the
/// group-commit writer does not copy pages into the database file (and sync it) inside its commits.
///
/// SQLite's own automatic checkpoint runs in the commit that takes the log past 1,000 pages: the
/// writer copies every page the log holds into the file and syncs it before the commit returns, and
/// every batch queued behind it waits. This one replaces it on the writer connection
/// (`sqlite3_wal_hook`, which turns SQLite's off): past ``backgroundFrames`` a commit only wakes the
/// checkpoint thread, which runs a `PASSIVE` checkpoint on its own connection while the writer goes
/// on committing. The log stays bounded: a commit that finds it past ``inlineFrames`` (the
/// checkpoint thread fell behind, or commits kept coming while it ran, so the log never restarted)
/// checkpoints itself, as SQLite's would, and so does a commit that follows a finished background
/// checkpoint while the log is still past ``backgroundFrames`` (what it copies is what was committed
/// while that checkpoint ran, little), so that the next write restarts the log from its start.
///
/// Checkpoints do not change what a commit guarantees: a commit is durable once its log frames are
/// synced (at `full` durability, before it returns), with or without a checkpoint.
final class WALCheckpointer: Sendable {
    /// Log pages past which a commit wakes the checkpoint thread: SQLite's default automatic
    /// checkpoint threshold.
    static let backgroundFrames: CInt = 1_000
    /// Log pages past which a commit checkpoints itself.
    static let inlineFrames: CInt = 8_000

    private let path: String
    private let queue = DispatchQueue(label: "durable.journal.checkpoint", qos: .utility)
    private struct State {
        /// A background checkpoint is queued or running.
        var scheduled = false
        /// The pages the log held when the last background checkpoint finished, until a commit
        /// past ``backgroundFrames`` looks: a log at least that long has not restarted since.
        var finishedAt: CInt?
    }
    private let state = Mutex(State())
    /// The checkpoint thread's connection, opened on first use (used on ``queue`` alone).
    private let connection = Mutex<DatabaseQueue?>(nil)

    /// The checkpointers of the writer connections that have one, by connection handle: the hook
    /// (a C function) finds its checkpointer here. An entry goes when its checkpointer does; a
    /// commit that finds none checkpoints itself.
    private static let registry = Mutex<[UInt: Weak]>([:])
    private struct Weak: @unchecked Sendable {
        // @unchecked: a weak reference to a Sendable class, read and written under the registry's lock.
        weak var checkpointer: WALCheckpointer?
    }
    private let handle: UInt

    /// Installs a checkpointer on `db`, the journal's writer connection (call on that connection's
    /// queue, before it commits anything the checkpointer should see).
    init(installingOn db: Database, path: String) {
        self.path = path
        let connection = db.sqliteConnection
        handle = UInt(bitPattern: connection)
        Self.registry.withLock { $0[handle] = Weak(checkpointer: self) }
        sqlite3_wal_hook(connection, { _, connection, name, frames in
            WALCheckpointer.committed(connection, name, frames)
            return SQLITE_OK
        }, nil)
    }

    deinit {
        Self.registry.withLock { registry in
            if registry[handle]?.checkpointer == nil { registry.removeValue(forKey: handle) }
        }
    }

    /// The writer connection's hook, called after each commit with the pages the log holds.
    private static func committed(_ connection: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ frames: CInt) {
        guard frames >= backgroundFrames else { return }
        let checkpointer = registry.withLock { $0[UInt(bitPattern: connection)]?.checkpointer }
        guard let checkpointer, frames < inlineFrames, !checkpointer.schedule(frames) else {
            sqlite3_wal_checkpoint(connection, name)
            return
        }
    }

    /// Wakes the checkpoint thread, unless it is at work already; `true` when the commit should
    /// checkpoint itself instead: a background checkpoint has finished since the last commit past
    /// ``backgroundFrames`` and the log has not restarted since (it did not get to the end of a log
    /// the writer kept appending to), so that what is left is copied and the log can restart.
    private func schedule(_ frames: CInt) -> Bool {
        let (start, inline) = state.withLock { state -> (Bool, Bool) in
            defer { state.finishedAt = nil }
            if state.scheduled { return (false, false) }
            if let finished = state.finishedAt, frames >= finished { return (false, true) }
            state.scheduled = true
            return (true, false)
        }
        if start { queue.async { self.checkpoint() } }
        return inline
    }

    private func checkpoint() {
        var log: CInt = 0
        do {
            let db = try connection.withLock { connection in
                if let connection { return connection }
                // Synced (SQLite's default, set here all the same): the database file is synced
                // before the log may restart over the frames copied into it.
                var configuration = Configuration()
                configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
                let opened = try DatabaseQueue(path: path, configuration: configuration)
                connection = opened
                return opened
            }
            try db.writeWithoutTransaction { db in log = CInt(try db.checkpoint(.passive).walFrameCount) }
        } catch {
            // Left to the next one, or to the writer past `inlineFrames`.
        }
        state.withLock { state in
            state.scheduled = false
            state.finishedAt = log
        }
    }
}
