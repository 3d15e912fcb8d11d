import Foundation
import Synchronization

/// A diagnostic for stalls of the test process: with `DURABLE_TEST_STALL_DUMP=<folder>` set, a thread
/// outside Swift's cooperative pool hands the pool a task every 100 ms; when one has waited over two
/// seconds to run, it writes every thread's stack (`gdb -batch`, attached to this process) to
/// `<folder>/stall-<pid>-<n>.txt`, at most five times. Without the variable it does nothing.
///
/// Started by ``temporaryPath(_:)``, which nearly every test calls first.
enum StallWatchdog {
    static let started: Void = {
        guard let folder = ProcessInfo.processInfo.environment["DURABLE_TEST_STALL_DUMP"], !folder.isEmpty else { return }
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let thread = Thread { watch(folder) }
        thread.name = "stall-watchdog"
        thread.start()
    }()

    private static func watch(_ folder: String) {
        var dumps = 0
        while dumps < 5 {
            let ran = Arc()
            let sent = ContinuousClock.now
            Task.detached { ran.flag.store(true, ordering: .releasing) }
            var dumped = false
            while !ran.flag.load(ordering: .acquiring) {
                Thread.sleep(forTimeInterval: 0.01)
                if !dumped, ContinuousClock.now - sent > .seconds(2) {
                    dumps += 1
                    dumped = true
                    dump(to: "\(folder)/stall-\(getpid())-\(dumps).txt")
                }
            }
            let waited = ContinuousClock.now - sent
            if dumped {
                let line = "\(Date()): a task waited \(waited) to run\n"
                if let handle = FileHandle(forWritingAtPath: "\(folder)/stall-\(getpid())-\(dumps).txt") {
                    handle.seekToEndOfFile()
                    handle.write(Data(line.utf8))
                    try? handle.close()
                }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    private final class Arc: Sendable { let flag = Atomic<Bool>(false) }

    private static func dump(to path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data("\(Date()): stalled over 2 s\n".utf8))
        let gdb = try? SpawnedProcess(
            "/usr/bin/gdb", ["-p", "\(getpid())", "-batch", "-ex", "thread apply all bt 25"], stdout: path)
        gdb?.waitUntilExit()
    }
}
