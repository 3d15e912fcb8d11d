import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A new file (a backup, an export) that appears whole or not at all: it is written to a temporary
/// file beside its destination (readable by its owner only), synced, then linked into place, so a
/// process killed on the way leaves no file at the destination, only a hidden `.NAME.partial-…` file.
package enum NewFile {
    /// Writes `destination` through `fill`, which gets the temporary file's path (an empty file that
    /// exists, mode 0600) and writes it whole.
    /// - Throws: ``JournalError`` `storage` when `destination` is not a plain file path, exists, or
    ///   cannot be written; what `fill` throws (the temporary file removed).
    package static func create(_ destination: String, what: String, fill: (String) throws -> Void) throws {
        try checkDestination(destination, what: what)
        let url = URL(fileURLWithPath: destination)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/." + url.lastPathComponent + ".partial-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure(what, destination, "cannot create a file in \(folder): \(errnoText())") }
        close(fd)
        defer {
            for suffix in ["", "-journal", "-wal", "-shm"] { unlink(temporary + suffix) }
        }
        try fill(temporary)
        try sync(temporary, what: what, destination: destination)
        // link() refuses an existing destination atomically, where rename() would replace it.
        if link(temporary, destination) != 0 {
            let code = errno
            guard code != EEXIST else { throw failure(what, destination, "it exists; a \(what) goes to a new file") }
            guard code == EPERM || code == ENOTSUP || code == EOPNOTSUPP || code == EMLINK,
                  !FileManager.default.fileExists(atPath: destination), rename(temporary, destination) == 0
            else { throw failure(what, destination, String(cString: strerror(code))) }
        }
        try sync(folder, what: what, destination: destination)
    }

    /// Refuses what is not a path to a new ordinary file: an empty path, an SQLite in-memory or URI
    /// name, an existing file or folder.
    package static func checkDestination(_ destination: String, what: String) throws {
        guard !destination.isEmpty else { throw failure(what, "''", "the path is empty") }
        if destination == ":memory:" || destination.hasPrefix("file:") {
            throw failure(what, destination, "not a file path (in-memory databases and URIs are not backups)")
        }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: destination, isDirectory: &isFolder) {
            throw failure(what, destination, isFolder.boolValue ? "it is a folder" : "it exists; a \(what) goes to a new file")
        }
        let folder = URL(fileURLWithPath: destination).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw failure(what, destination, "folder \(folder) does not exist")
        }
    }

    private static func sync(_ path: String, what: String, destination: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, fsync(fd) == 0 else {
            let text = errnoText()
            if fd >= 0 { close(fd) }
            throw failure(what, destination, "cannot sync \(path): \(text)")
        }
        close(fd)
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    private static func failure(_ what: String, _ destination: String, _ reason: String) -> JournalError {
        JournalError(.storage(reason: "\(what) to \(destination) failed: \(reason)"))
    }
}
