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
        let mount = try SpawnedProcess(
            "/bin/mount", ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", path], stdout: "/dev/null")
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
        (try? SpawnedProcess("/bin/umount", ["-l", path], stdout: "/dev/null"))?.waitUntilExit()
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
    ///
    /// No timing: each run has had one signal delivered (it is driven, waiting for a second); the
    /// worker is stopped (SIGSTOP) while the second signals are queued and the disk is filled, so
    /// that delivering them is the first thing it tries to commit when it goes on (SIGCONT).
    @Test func aWorkerReportsAFullDiskAndDrivesItsRunsOnWhenSpaceComesBack() async throws {
        let disk = try SmallFileSystem(kilobytes: 1024)
        defer { disk.unmount() }
        let journal = disk.path + "/journal.sqlite"
        let client = try await DurableClient(journal: JournalConfiguration(journal))
        let worker = try Child(try productPath("durable-test-worker"), ["worker", "--lease", "60", "--journal", journal])
        defer { worker.kill(SIGKILL) }
        var runs: [String] = []
        for index in 0..<3 {
            let run = try await client.submit(workflowType: "Gather", input: Data("2".utf8), id: "gather-\(index)").runID
            _ = try await client.signal(run, name: "item", "a")
            runs.append(run)
        }
        do {
            for run in runs {
                try await eventually("the first signal delivered to \(run)", timeout: .seconds(30)) {
                    try await client.history(run).1.contains { $0.kind == .signalReceived }
                }
            }
        } catch {
            Issue.record("\(error); the worker said: \(worker.output)")
            throw error
        }
        worker.kill(SIGSTOP)
        for run in runs { _ = try await client.signal(run, name: "item", "b") }
        let filler = try disk.fill()
        worker.kill(SIGCONT)
        try await eventually("the worker's report of the full disk", timeout: .seconds(30)) {
            worker.output.contains("database or disk is full")
        }
        // Not held or failed for want of space. (Most are still running, but not always all: a commit
        // that fits in WAL space SQLite already wrote and checkpointed, reused in place, needs no new
        // block, so a run may complete while the disk is full.)
        for run in runs {
            let status = try await client.describe(run).run.status
            #expect(status == .running || status == .completed, "\(run) is \(status)")
        }
        try FileManager.default.removeItem(atPath: filler)
        for run in runs {
            try await eventually("run \(run) completed after space came back", timeout: .seconds(30)) {
                try await client.describe(run).run.status == .completed
            }
            let kinds = try await client.history(run).1.map(\.kind)
            #expect(kinds == [.workflowStarted, .signalReceived, .signalReceived, .workflowCompleted], "\(kinds)")
            #expect(try await client.outcome(of: run) == .completed(Data(#""a,b""#.utf8)))
        }
        #expect(worker.output.contains("works again"), "\(worker.output)")
        worker.kill(SIGTERM)
        _ = try await worker.wait()
        await client.close()
    }
}
