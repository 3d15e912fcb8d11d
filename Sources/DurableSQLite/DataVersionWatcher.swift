import DurableJournal
import Foundation
import GRDB
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Notices commits to a journal file by any connection of any process: `PRAGMA data_version`, read
/// on a connection of its own, changes whenever another connection has committed. While the change
/// feed has subscribers, a thread reads it whenever the kernel reports a write to the journal or its
/// write-ahead log (inotify on the folder, so the `-wal` file may come and go), and at least every
/// `fallbackInterval` (a file system that reports nothing, such as a network share), and wakes them
/// when it moves. An idle worker thus reads nothing and uses no CPU between commits.
///
/// Where inotify is not available, the thread reads `data_version` every `pollInterval` instead.
final class DataVersionWatcher: Sendable {
    private let path: String
    private let fallbackInterval: Duration
    private let pollInterval: Duration
    /// The running watch, if any: set `stopped` to end it.
    private let current = Mutex<Watch?>(nil)

    private final class Watch: Sendable {
        let stopped = Atomic<Bool>(false)
    }

    init(path: String, fallbackInterval: Duration = .seconds(1), pollInterval: Duration = .milliseconds(5)) {
        self.path = path
        self.fallbackInterval = fallbackInterval
        self.pollInterval = pollInterval
    }

    func setActive(_ active: Bool, notifying broadcaster: ChangeBroadcaster) {
        let new = active ? Watch() : nil
        let old = current.withLock { current in
            defer { current = new }
            return current
        }
        old?.stopped.store(true, ordering: .relaxed)
        guard let new else { return }
        // The kernel's watch first, then the version to compare with, both before the first subscriber
        // looks at the journal (it does once `subscribe()` returns): a commit after that look changes
        // the version, and the watch reports the write.
        let events = FileEvents(path: path)
        let connection = try? DatabaseQueue(path: path)
        let baseline = connection.flatMap { try? Self.dataVersion($0) }
        let start = Start(events: events, connection: connection, baseline: baseline)
        let thread = Thread { [path, fallbackInterval, pollInterval] in
            Self.watch(path: path, fallbackInterval: fallbackInterval, pollInterval: pollInterval,
                       start: start, watch: new, broadcaster: broadcaster)
        }
        thread.name = "durable journal watch"
        thread.stackSize = 1 << 18
        thread.start()
    }

    /// What a watch starts from: taken on the subscriber's thread, handed to the watch's thread.
    private struct Start: @unchecked Sendable {
        // @unchecked: created before the thread starts and used by that thread alone afterwards.
        var events: FileEvents?
        var connection: DatabaseQueue?
        var baseline: Int?
    }

    private static func watch(
        path: String, fallbackInterval: Duration, pollInterval: Duration, start: Start, watch: Watch,
        broadcaster: ChangeBroadcaster
    ) {
        let events = start.events
        let wait = events == nil ? pollInterval : fallbackInterval
        var connection = start.connection
        var last = start.baseline
        // Reads left after the last reported write, to see its commit once it is published.
        var rereads = 0
        if last != nil, events?.wait(upTo: wait, isStopped: { watch.stopped.load(ordering: .relaxed) }) == true {
            rereads = settleReads
        }
        while !watch.stopped.load(ordering: .relaxed) {
            // A read that fails (the file busy past the timeout) is tried again next round; the
            // subscribers are woken then, so that they look for themselves.
            do {
                let queue = try connection ?? DatabaseQueue(path: path)
                connection = queue
                let version = try dataVersion(queue)
                // Without a baseline (it could not be read at the start, or a read failed since) the
                // first read wakes the subscribers too: a commit meanwhile would go unnoticed.
                if version != last { broadcaster.notify() }
                last = version
                rereads = max(0, rereads - 1)
            } catch {
                last = nil
                broadcaster.notify()
            }
            if let events {
                // At most one read per `pollInterval`: a busy journal commits thousands of times a
                // second, and the subscribers need one wake per burst, not one per commit.
                Thread.sleep(forTimeInterval: pollInterval.seconds)
                // A commit writes its WAL frames (which the kernel reports) before it syncs them and
                // then publishes the commit (in the `-shm` index, which it writes through a mapping
                // the kernel does not report). A read between the two sees the version before it
                // (or that of an earlier commit reported with it), and no further write may come: so
                // read again for a while after every reported write rather than wait for the
                // fallback (which made about 1 % of sync HTTP starts take a second longer).
                if rereads > 0 { continue }
                if events.wait(upTo: wait, isStopped: { watch.stopped.load(ordering: .relaxed) }) { rereads = settleReads }
            } else {
                Thread.sleep(forTimeInterval: wait.seconds)
            }
        }
        try? connection?.close()
    }

    /// How many reads, `pollInterval` apart, look for the commit of a reported write (20 × 5 ms:
    /// longer than a synced commit takes on a sane disk; the fallback read catches a slower one).
    private static let settleReads = 20

    private static func dataVersion(_ queue: DatabaseQueue) throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "PRAGMA data_version") ?? 0 }
    }

    func stop() {
        current.withLock { current in
            current?.stopped.store(true, ordering: .relaxed)
            current = nil
        }
    }
}

/// Writes to a journal file and its companions (`-wal`, `-journal`), as inotify reports them on the
/// file's folder.
private final class FileEvents {
    #if os(Linux)
    private let fd: Int32
    private let names: Set<String>

    init?(path: String) {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        names = [name, name + "-wal", name + "-journal"]
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { return nil }
        let mask = UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO)
        guard inotify_add_watch(fd, folder, mask) >= 0 else {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    /// Returns when one of the files was written (`true`), after `limit`, or soon after `isStopped`
    /// turns true (it is asked every 250 ms).
    @discardableResult
    func wait(upTo limit: Duration, isStopped: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + limit
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            let (seconds, attoseconds) = left.components
            let millis = min(250, Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000))
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, max(1, millis))
            if ready > 0, drainMatches() { return true }
            if isStopped() { return false }
        }
    }

    /// Reads the queued events; whether one was about the journal's files.
    private func drainMatches() -> Bool {
        var matched = false
        let size = 4096
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer, size)
            guard count > 0 else { return matched }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                let nameStart = offset + MemoryLayout<inotify_event>.size
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { matched = true }  // events were lost: look
                if event.len > 0 {
                    let name = String(cString: buffer.advanced(by: nameStart).assumingMemoryBound(to: CChar.self))
                    if names.contains(name) { matched = true }
                }
                offset = nameStart + Int(event.len)
            }
        }
    }
    #else
    init?(path: String) { nil }
    func wait(upTo limit: Duration, isStopped: () -> Bool) -> Bool { false }
    #endif
}

extension Duration {
    fileprivate var seconds: TimeInterval { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
