public import Durable
public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The folder holding the package's built executables (beside the test bundle).
public func productPath(_ name: String) throws -> String {
    var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if folder.lastPathComponent.hasSuffix(".xctest") { folder = folder.deletingLastPathComponent() }
    let path = folder.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestProcessError("\(path) is missing: build all products first (swift build), as Scripts/test.sh does")
    }
    return path
}

public struct TestProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A child process with its output (standard output and error) captured in a file.
public final class Child: Sendable {
    public let process: SpawnedProcess
    public let outputPath: String

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        outputPath = temporaryPath("child") + ".log"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        process = try SpawnedProcess(executable, arguments, environment: environment, stdout: outputPath)
    }

    public var pid: Int32 { process.pid }
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    public func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

    /// Waits for the process to exit (at most `timeout`), killing it if it does not.
    public func wait(timeout: Duration = .seconds(30)) async throws -> (status: Int32, reason: Process.TerminationReason) {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill(SIGKILL)
                throw TestProcessError("process \(pid) did not exit within \(timeout); output:\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        return (process.terminationStatus, process.terminationReason)
    }
}

/// One line of a side file: an activity attempt as the activity saw it.
public struct SideRecord: Sendable, Equatable {
    public var label: String
    public var pid: Int32
    public var attempt: Int
    public var key: String
}

/// Lines "<label> <pid> <attempt> <key>" of a side file.
public func sideRecords(_ path: String) -> [SideRecord] {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ")
        guard parts.count == 4, let pid = Int32(parts[1]), let attempt = Int(parts[2]) else { return nil }
        return SideRecord(label: String(parts[0]), pid: pid, attempt: attempt, key: String(parts[3]))
    }
}

/// Activity labels (the Step input) whose completion is recorded in the run's history.
public func completedLabels(_ events: [HistoryEvent]) -> Set<String> {
    var labels: [Int: String] = [:]
    var done: Set<String> = []
    for event in events {
        if event.kind == .activityScheduled, let data = event.data,
            let label = try? JSONDecoder().decode(String.self, from: data)
        {
            labels[event.seq] = label
        }
        if event.kind == .activityCompleted, let label = labels[event.seq] { done.insert(label) }
    }
    return done
}

/// A fresh file path in a per-process temporary folder, on `/dev/shm` when it is writable.
///
/// These suites check the engine's logic and what survives a killed process (the page cache does
/// either way), not what survives a power cut. With every suite running at once on two cores, the
/// fsyncs of dozens of journals on the real disk stalled commits for hundreds of milliseconds and
/// made timing-bounded tests fail. `DurableJournalTests` keep their journals on the real disk and
/// check that `full` durability syncs; the benchmark counts the fsyncs.
public func temporaryPath(_ name: String = #function) -> String {
    StallWatchdog.started
    let base = access("/dev/shm", W_OK) == 0
        ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
    let folder = base.appendingPathComponent("durable-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let safe = name.filter { $0.isLetter || $0.isNumber }
    return folder.appendingPathComponent("\(safe)-\(UUID().uuidString.prefix(8)).sqlite").path
}

/// The journal backend the engine and command-line suites run against: PostgreSQL when
/// `DURABLE_TEST_BACKEND=postgres` (with `DURABLE_TEST_POSTGRES_URL`), else SQLite. `Scripts/test.sh`
/// runs those suites once with each.
public enum TestBackend: String, Sendable {
    case sqlite
    case postgres

    public static let current: TestBackend =
        ProcessInfo.processInfo.environment["DURABLE_TEST_BACKEND"] == "postgres" ? .postgres : .sqlite

    /// For `.enabled(if: TestBackend.isSQLite, "…")` on tests about the SQLite file itself.
    public static var isSQLite: Bool { current == .sqlite }
}

/// A fresh, empty journal for one test on the backend in use: a file path from ``temporaryPath(_:)``,
/// or `DURABLE_TEST_POSTGRES_URL` with a schema of its own. Without that URL on PostgreSQL, a location
/// whose opening fails with a message naming the missing variable (never a silent SQLite journal).
public func temporaryJournal(_ name: String = #function) -> String {
    switch TestBackend.current {
    case .sqlite:
        return temporaryPath(name)
    case .postgres:
        guard let url = ProcessInfo.processInfo.environment["DURABLE_TEST_POSTGRES_URL"], !url.isEmpty else {
            return "postgres://DURABLE_TEST_POSTGRES_URL-is-not-set@/"
        }
        let tag = name.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(40)
        return url + (url.contains("?") ? "&" : "?") + "schema=t_\(tag)_\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// Another journal beside `journal` on the same backend (`suffix` names it): a file next to a SQLite
/// journal, another schema on the same PostgreSQL server.
public func siblingJournal(of journal: String, _ suffix: String) -> String {
    guard let schema = journal.range(of: "schema=") else { return journal + "." + suffix }
    return String(journal[..<schema.upperBound]) + suffix.lowercased().filter { $0.isLetter || $0.isNumber } + "_"
        + journal[schema.upperBound...]
}

/// Runs a command to its end (at most `timeout`) and returns its exit status and outputs.
public func runCommand(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)
) async throws -> (status: Int32, stdout: String, stderr: String) {
    let out = temporaryPath("stdout")
    let err = temporaryPath("stderr")
    let process = try SpawnedProcess(executable, arguments, environment: environment, stdout: out, stderr: err)
    let deadline = ContinuousClock.now + timeout
    while process.isRunning {
        if ContinuousClock.now > deadline {
            process.terminate()
            throw TestProcessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    return (process.terminationStatus,
            (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

/// Runs SQL with `psql` (stopping at the first error) against the database of a PostgreSQL journal
/// URL, its `?schema=` left out. - Returns: the exit status, what it printed (tuples only, unaligned,
/// trimmed) and its errors.
public func runPsql(_ location: String, _ sql: String) throws -> (status: Int32, stdout: String, stderr: String) {
    let out = temporaryPath("psql-out")
    let err = temporaryPath("psql-err")
    let process = try SpawnedProcess(
        "/usr/bin/env", ["psql", String(location.prefix { $0 != "?" }), "-v", "ON_ERROR_STOP=1", "-qtAc", sql],
        stdout: out, stderr: err)
    let status = process.terminationStatus
    return (status,
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines),
            (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

/// Waits until `condition` holds, asking every 10 ms for at most `timeout`: a test waits for what it
/// needs to see, not for a guess of how long that takes.
/// - Throws: ``TestProcessError`` naming `what` when the time runs out; what `condition` throws.
public func eventually(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestProcessError("\(what()) did not happen within \(timeout)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}
