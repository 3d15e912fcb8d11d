#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DurableJournal
import Foundation
import Synchronization

// MARK: - Output

/// A JSON value for the result lines, kept in insertion order so that lines read well.
enum JSONValue {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    var text: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return v.isFinite ? String(v) : "null"
        case .string(let v): return jsonQuoted(v)
        case .bool(let v): return v ? "true" : "false"
        case .null: return "null"
        case .array(let values): return "[" + values.map(\.text).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.map { jsonQuoted($0.0) + ": " + $0.1.text }.joined(separator: ", ") + "}"
        }
    }
}

/// Builds one result line.
struct Record {
    private(set) var fields: [(String, JSONValue)] = []

    subscript(key: String) -> JSONValue? {
        get { fields.first { $0.0 == key }?.1 }
        set {
            fields.removeAll { $0.0 == key }
            if let newValue { fields.append((key, newValue)) }
        }
    }

    mutating func set(_ key: String, _ value: Int) { self[key] = .int(value) }
    mutating func set(_ key: String, _ value: String) { self[key] = .string(value) }
    mutating func set(_ key: String, _ value: Bool) { self[key] = .bool(value) }
    mutating func set(_ key: String, _ value: [Int]) { self[key] = .array(value.map { .int($0) }) }
    /// Rounded to `digits` decimals, like the DBOS script does.
    mutating func set(_ key: String, _ value: Double?, digits: Int = 4) {
        guard let value else { self[key] = .null; return }
        let scale = pow(10, Double(digits))
        self[key] = .double((value * scale).rounded() / scale)
    }

    mutating func merge(_ other: Record) {
        for (key, value) in other.fields { self[key] = value }
    }

    var json: String { JSONValue.object(fields).text }
}

/// `--run-id`, copied into every line; set at start-up.
private let outputRunID = Mutex<String?>(nil)

func setOutputRunID(_ runID: String?) { outputRunID.withLock { $0 = runID } }

/// One JSON object per line on stdout, flushed at once.
func emit(_ record: Record) {
    var record = record
    if let runID = outputRunID.withLock({ $0 }), record["run_id"] == nil { record.set("run_id", runID) }
    let line = record.json + "\n"
    FileHandle.standardOutput.write(Data(line.utf8))
}

/// The human summary goes to stderr.
func say(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

// MARK: - Clocks

/// Seconds since 1970 (wall clock): comparable across processes on one machine.
func wallSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Monotonic seconds, for durations inside one process.
func monoSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Process CPU time (user + system, all threads), in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Nearest-rank percentile of an already sorted array (the DBOS script's definition).
func percentile(_ sorted: [Double], _ q: Double) -> Double? {
    guard !sorted.isEmpty else { return nil }
    let k = max(1, Int((q * Double(sorted.count)).rounded(.up)))
    return sorted[k - 1]
}

/// Load average and pressure-stall figures: the machine is shared, so record how busy it was.
func machineLoad() -> Record {
    var record = Record()
    if let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
        let first = text.split(separator: " ").first, let value = Double(first)
    {
        record.set("loadavg_1m", value, digits: 2)
    }
    for resource in ["cpu", "io"] {
        guard let text = try? String(contentsOfFile: "/proc/pressure/\(resource)", encoding: .utf8),
            let line = text.split(separator: "\n").first
        else { continue }
        // "some avg10=0.12 avg60=... avg300=... total=..."
        let parts = line.split(separator: " ")
        if parts.count > 1, let eq = parts[1].firstIndex(of: "="), let value = Double(parts[1][parts[1].index(after: eq)...]) {
            record.set("psi_\(resource)_some_avg10", value, digits: 2)
        }
    }
    return record
}

// MARK: - Files

/// A fresh scratch folder under `$TMPDIR` (default /tmp) for this process's journals.
func makeScratchFolder() throws -> String {
    let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    let folder = (base as NSString).appendingPathComponent("durable-bench-\(getpid())")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}

/// `--journal`: a postgres:// URL to run the workloads on PostgreSQL (each journal in a schema of
/// its own there); `nil`: SQLite files in the scratch folder.
nonisolated(unsafe) var journalServer: String?  // set once by main() before any workload runs

/// The journal of one workload run: a file in `folder`, or a fresh schema on the `--journal` server.
func journalLocation(_ name: String, folder: String) -> String {
    guard let server = journalServer else { return (folder as NSString).appendingPathComponent(name + ".sqlite") }
    let schema = "bench_" + name.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
        + "_" + UUID().uuidString.prefix(8).lowercased()
    return server + (server.contains("?") ? "&" : "?") + "schema=" + schema
}

/// Removes a SQLite journal and the files SQLite keeps beside it (nothing for a URL: the schema stays
/// on the benchmark's server).
func removeJournalFiles(_ path: String) {
    guard JournalConfiguration(path).backend == .sqlite else { return }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        try? FileManager.default.removeItem(atPath: path + suffix)
    }
}

func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : 0
}

/// The absolute path of this executable, to re-invoke it for the crash test's child processes.
func executablePath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    if n > 0 {
        return buffer.withUnsafeBufferPointer { String(decoding: $0[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }
    return CommandLine.arguments[0]
}

/// Spawns `path` with `arguments` (stdin, stdout and stderr inherited) and returns its pid.
func spawn(_ path: String, _ arguments: [String]) throws -> pid_t {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for arg in argv { free(arg) } }
    let rc = posix_spawn(&pid, path, nil, nil, argv, environ)
    guard rc == 0 else { throw BenchError("posix_spawn \(path) failed: \(String(cString: strerror(rc)))") }
    return pid
}

/// How a child process ended.
struct ExitStatus {
    var code: Int32?
    var signal: Int32?

    /// Python's `returncode` convention: the exit code, or minus the signal number.
    var returnCode: Int { signal.map { -Int($0) } ?? Int(code ?? 0) }
}

/// Blocks until the child ends.
func waitFor(_ pid: pid_t) -> ExitStatus {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return ExitStatus(code: -1, signal: nil) }
    }
    // WIFEXITED / WTERMSIG are macros; decode the status word by hand.
    let termSignal = status & 0x7F
    if termSignal == 0 { return ExitStatus(code: (status >> 8) & 0xFF, signal: nil) }
    return ExitStatus(code: nil, signal: termSignal)
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
