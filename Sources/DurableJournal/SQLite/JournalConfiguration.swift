import Foundation

/// How much a commit must survive before it is acknowledged.
public enum Durability: String, Sendable, CaseIterable, Codable {
    /// Every commit is fsynced before its callers resume (SQLite WAL with `synchronous=FULL`).
    /// Survives process crashes and power loss. The default.
    case full
    /// Commits reach the operating system but are fsynced only at checkpoints (SQLite WAL with
    /// `synchronous=NORMAL`). Survives a crash or SIGKILL of the process; a power loss or kernel
    /// crash can lose the last commits (never corrupts the journal).
    case fast
}

/// Where the journal lives and how it is written.
public struct JournalConfiguration: Sendable {
    public var path: String
    public var durability: Durability
    /// Create the file when it does not exist. Inspection commands set this to `false` so that a
    /// mistyped path is reported instead of silently creating an empty journal.
    public var createIfMissing: Bool

    public init(path: String, durability: Durability = .full, createIfMissing: Bool = true) {
        self.path = path
        self.durability = durability
        self.createIfMissing = createIfMissing
    }

    /// A SQLite journal at `path`.
    public static func sqlite(path: String, durability: Durability = .full) -> JournalConfiguration {
        JournalConfiguration(path: path, durability: durability)
    }

    /// A new journal file of its own in a temporary directory, `fast` durability: for tests, and for
    /// replaying history files. The directory is `/dev/shm` (memory-backed) when it is writable.
    /// Delete it with ``removeFiles()``.
    public static func temporary() -> JournalConfiguration {
        let shm = "/dev/shm"
        let directory = FileManager.default.isWritableFile(atPath: shm) ? shm : NSTemporaryDirectory()
        let name = "durable-\(UUID().uuidString.lowercased()).sqlite"
        return JournalConfiguration(path: (directory as NSString).appendingPathComponent(name), durability: .fast)
    }

    /// Deletes the journal file with its write-ahead log and shared-memory files.
    public func removeFiles() {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }
}
