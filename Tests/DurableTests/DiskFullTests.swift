import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A small tmpfs of its own for a test: a real file system that fills up.
struct SmallFileSystem {
    let path: String

    /// Mounting needs root (or CAP_SYS_ADMIN): true when this process may.
    static let available: Bool = {
        guard let probe = try? SmallFileSystem(kilobytes: 64) else { return false }
        probe.unmount()
        return true
    }()

    init(kilobytes: Int) throws {
        path = temporaryPath("fs").replacingOccurrences(of: ".sqlite", with: "")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", path]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw TestProcessError("cannot mount a tmpfs at \(path)") }
    }

    /// Writes a file until the file system has no space left. - Returns: its path.
    func fill() throws -> String {
        let filler = path + "/filler"
        let fd = open(filler, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard fd >= 0 else { throw TestProcessError("cannot create \(filler)") }
        defer { close(fd) }
        let block = [UInt8](repeating: 0, count: 1024)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        guard errno == ENOSPC else { throw TestProcessError("filling \(filler) stopped with errno \(errno), not ENOSPC") }
        return filler
    }

    func unmount() {
        let umount = Process()
        umount.executableURL = URL(fileURLWithPath: "/bin/umount")
        umount.arguments = ["-l", path]
        try? umount.run()
        umount.waitUntilExit()
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A journal on a file system that fills up while a worker (a real process) drives runs.
@Suite(.timeLimit(.minutes(2)), .enabled(if: TestBackend.isSQLite && SmallFileSystem.available,
                                         "needs SQLite and permission to mount a tmpfs"))
struct DiskFullTests {
    /// The runs' commits fail with "database or disk is full" while the disk is full: the worker says
    /// so on its standard error, and once space comes back it drives the runs on (no restart), each
    /// event recorded once.
    @Test func aWorkerReportsAFullDiskAndDrivesItsRunsOnWhenSpaceComesBack() async throws {
        let disk = try SmallFileSystem(kilobytes: 1024)
        defer { disk.unmount() }
        let journal = disk.path + "/journal.sqlite"
        let client = try await DurableClient(journal: JournalConfiguration(journal))
        let worker = try Child(try productPath("durable-test-worker"), ["worker", "--journal", journal])
        defer { worker.kill(SIGKILL) }
        var runs: [String] = []
        for index in 0..<3 {
            runs.append(try await client.submit(workflowType: "Nap", input: Data("1500".utf8), id: "nap-\(index)").runID)
        }
        for run in runs {
            try await eventually("run \(run) driven") { try await client.describe(run).run.leaseOwner != nil }
        }
        let filler = try disk.fill()
        // The timers fire 1.5 s after the starts; recording them cannot be committed.
        try await eventually("the worker's report of the full disk", timeout: .seconds(15)) {
            worker.output.contains("database or disk is full")
        }
        for run in runs { #expect(try await client.describe(run).run.status == .running) }
        try FileManager.default.removeItem(atPath: filler)
        for run in runs {
            try await eventually("run \(run) completed after space came back", timeout: .seconds(30)) {
                try await client.describe(run).run.status == .completed
            }
            let events = try await client.history(run).1
            let kinds = events.map(\.kind)
            #expect(kinds.first == .workflowStarted && kinds.last == .workflowCompleted, "\(kinds)")
            for kind in [EventKind.timerStarted, .timerFired, .activityScheduled, .activityCompleted] {
                #expect(kinds.filter { $0 == kind }.count == 1, "\(kind) in \(kinds)")
            }
        }
        #expect(worker.output.contains("works again"), "\(worker.output)")
        worker.kill(SIGTERM)
        _ = try await worker.wait()
        await client.close()
    }
}
