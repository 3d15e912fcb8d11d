#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// An exclusive `flock` on `<journal>.worker.lock`, held by the one process that drives the runs of
/// a journal. The kernel releases it when the process dies, SIGKILL included.
final class WorkerLock: Sendable {
    let path: String
    private let descriptor: Int32

    init(journalPath: String) throws {
        path = journalPath + ".worker.lock"
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw DurableError(.workerRunning(journal: journalPath, holder: "cannot open \(path): errno \(errno)"))
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown process"
            close(descriptor)
            throw DurableError(.workerRunning(journal: journalPath, holder: holder.isEmpty ? "unknown process" : holder))
        }
        let text = "pid \(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = text.withCString { pwrite(descriptor, $0, strlen($0), 0) }
    }

    deinit {
        _ = ftruncate(descriptor, 0)
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
