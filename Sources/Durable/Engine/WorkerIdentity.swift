#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// Names the engine that holds a run's lease: `host/pid/start/engine`, where `start` is the
/// process's start time in clock ticks since boot (so a reused pid is not mistaken for the holder)
/// and `engine` tells apart engines in one process.
///
/// A worker on the same host can tell whether a holder's process is still there, and take its runs
/// over at once instead of waiting for its leases to expire.
package enum WorkerIdentity {
    /// The host's name, or `DURABLE_WORKER_HOST` when set: workers on several machines (or containers
    /// that share a host name) sharing a PostgreSQL journal must present different hosts, since a
    /// lease holder on the same host is checked through `/proc` and one elsewhere only by its expiry.
    private static let host: String = {
        if let name = ProcessInfo.processInfo.environment["DURABLE_WORKER_HOST"], !name.isEmpty {
            return name.replacingOccurrences(of: "/", with: "_")
        }
        return systemHostName.replacingOccurrences(of: "/", with: "_")
    }()

    /// The host's name as the system has it (`gethostname`), `localhost` when it cannot be read.
    package static let systemHostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    private static let process = "\(host)/\(getpid())/\(startTime(of: getpid()) ?? 0)"
    private static let engines = Atomic<Int>(0)

    /// A new identity for an engine of this process.
    static func next() -> String {
        "\(process)/\(engines.add(1, ordering: .relaxed).newValue)"
    }

    /// Whether the process behind `owner` is running: `nil` when that cannot be told from here
    /// (another host, no `/proc`), so only the lease's expiry counts.
    static func isAlive(_ owner: String) -> Bool? {
        let parts = owner.split(separator: "/")
        guard parts.count == 4, parts[0] == host, let pid = pid_t(parts[1]), let start = UInt64(parts[2]),
            FileManager.default.fileExists(atPath: "/proc/self/stat")
        else { return nil }
        guard FileManager.default.fileExists(atPath: "/proc/\(pid)") else { return false }
        // A process of that pid whose start time cannot be read (hidden /proc) might be the holder.
        return startTime(of: pid).map { $0 == start }
    }

    /// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
    private static func startTime(of pid: pid_t) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After the command name (which may hold spaces), fields start at 3 (the state).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}
