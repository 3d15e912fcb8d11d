import DurableJournal
import Foundation
import GRDB
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The files of a journal as this process opened them: the database file and its WAL and shared
/// memory files, by device and inode.
///
/// SQLite finds a database's WAL by its path name. If the `-wal` or `-shm` file is deleted or
/// replaced while a process has the journal open, or the journal has a second name (a hard link),
/// two processes can write two different WALs for one database, and commits are lost without an
/// error. What can be seen from here is checked: a journal with more than one link is not opened, and
/// a worker that finds its files changed stops (``SQLiteJournal/checkFiles()``).
struct JournalFiles: Equatable {
    struct Identity: Equatable {
        var device: UInt64
        var inode: UInt64
        var links: UInt64
    }

    var database: Identity
    var wal: Identity?
    var shm: Identity?

    static func identity(_ path: String) -> Identity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), links: UInt64(info.st_nlink))
    }

    static func read(_ path: String) -> JournalFiles? {
        identity(path).map { JournalFiles(database: $0, wal: identity(path + "-wal"), shm: identity(path + "-shm")) }
    }

    /// What changed since `self` was read, in words; `nil` when nothing did.
    func change(to now: JournalFiles?, path: String) -> String? {
        guard let now else { return "\(path) was deleted or moved" }
        if now.database.inode != database.inode || now.database.device != database.device {
            return "\(path) was replaced by another file"
        }
        if now.database.links > 1 { return Self.linkProblem(path, now.database.links) }
        for (name, before, after) in [("-wal", wal, now.wal), ("-shm", shm, now.shm)] {
            guard let before else { continue }
            guard let after else { return "\(path)\(name) was deleted while the journal was open" }
            if after.inode != before.inode || after.device != before.device {
                return "\(path)\(name) was replaced while the journal was open"
            }
        }
        return nil
    }

    static func linkProblem(_ path: String, _ links: UInt64) -> String {
        "\(path) has \(links) hard links: SQLite finds the write-ahead log by the file's name, so two names "
            + "mean two logs and lost commits; remove the other names (or copy the journal with `journal backup`)"
    }
}

extension SQLiteJournal {
    /// Creates a new journal file readable and writable by its owner only (SQLite gives the `-wal`
    /// and `-shm` files the database file's permissions). Payloads are stored in clear unless
    /// encrypted: keep journals and backups away from other users.
    static func createPrivateFile(_ path: String) throws {
        let fd = Glibc.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if fd >= 0 {
            Glibc.close(fd)
        } else if errno != EEXIST {
            throw JournalError(.storage(reason: "cannot create \(path): \(String(cString: strerror(errno)))"))
        }
    }

    /// Refuses a journal file with more than one name (see ``JournalFiles``).
    static func checkLinks(_ path: String) throws {
        if let identity = JournalFiles.identity(path), identity.links > 1 {
            throw JournalError(.filesChanged(path: path, reason: JournalFiles.linkProblem(path, identity.links)))
        }
    }

    /// Checks that the journal's files are the ones this process opened: the database file not
    /// replaced and with one name, its `-wal` and `-shm` files not deleted or replaced. When the
    /// WAL is gone, what this process committed is first copied into the journal file.
    /// - Throws: ``JournalError`` `filesChanged`: go no further (a worker stops).
    package func checkFiles() throws {
        guard let opened = files.withLock({ $0 }) else { return }
        let now = JournalFiles.read(path)
        guard let change = opened.change(to: now, path: path) else { return }
        files.withLock { $0 = now }  // reported once
        // Commits in a deleted WAL exist only in that file, which this process still has open: copy
        // them into the journal file before stopping (unless another process has begun a new WAL,
        // nothing is lost then).
        var rescued = ""
        if now?.database.inode == opened.database.inode {
            do {
                try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.full) }
                rescued = " (what this process committed was copied into the journal file first)"
            } catch {
                rescued = " (copying what this process committed into the journal file failed: \(error))"
            }
        }
        throw JournalError(.filesChanged(path: path, reason: change + rescued))
    }

    /// Notes the files as they are now (after opening: the WAL exists once the first connection used it).
    func recordFiles() {
        files.withLock { $0 = JournalFiles.read(path) }
    }
}
