#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import Foundation

// Pick-up latency across processes: how long after a submission is committed (what
// `durable submit` does before it returns) an idle worker in another process starts the run's
// first activity.
//
// The parent spawns this executable as a worker (`--latency-worker`), then submits `Ping` runs one
// at a time with `Engine.submit`, each after the previous run has ended and a pause (so the worker
// is idle and only polling). The worker's activity writes "<input> <wall-clock seconds>" to a side
// file as its first action. Latency = that time minus the time `submit` returned in the parent.

struct Ping: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        try await ctx.execute(Stamp.self, input)
    }
}

/// Writes when it started, with one write(2).
struct Stamp: Activity {
    let sideFile: Int32

    func run(_ ctx: ActivityContext, input: Int) async throws -> Int {
        let line = "\(input) \(wallSeconds())\n"
        _ = line.withCString { write(sideFile, $0, strlen($0)) }
        return input
    }
}

/// The worker process: runs until SIGTERM.
func latencyWorker(_ o: CrashChildOptions) async throws -> Int32 {
    let sideFile = open(o.side, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    guard sideFile >= 0 else { throw BenchError("cannot open \(o.side)") }
    let engine = try await Engine(journal: JournalConfiguration(o.journal, durability: o.durability))
    engine.register(Ping.self)
    engine.register(Stamp(sideFile: sideFile))
    signal(SIGTERM, SIG_IGN)
    let stop = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    stop.setEventHandler { Task { await engine.shutdown() } }
    stop.resume()
    _ = try await engine.recover()
    _ = "ready\n".withCString { write(sideFile, $0, strlen($0)) }
    try await engine.runWorker()
    await engine.shutdown()
    withExtendedLifetime(stop) {}
    return 0
}

/// The parent: one `submit_latency` line.
func runSubmitLatency(_ s: WorkloadSettings, folder: String, durability: Durability, round: Int) async throws -> Record {
    let base = (folder as NSString).appendingPathComponent("latency-\(durability.rawValue)-\(round)")
    let journal = journalLocation("latency-\(durability.rawValue)-\(round)", folder: folder)
    let side = base + ".starts.log"
    removeJournalFiles(journal)
    try? FileManager.default.removeItem(atPath: side)
    defer {
        removeJournalFiles(journal)
        try? FileManager.default.removeItem(atPath: side)
    }
    let submitter = try await Engine(journal: JournalConfiguration(journal, durability: durability))
    let worker = try spawn(executablePath(), [
        "--latency-worker", "--journal", journal, "--side", side, "--durability-child", durability.rawValue,
    ])
    defer {
        kill(worker, SIGTERM)
        _ = waitFor(worker)
    }
    func starts() -> [Int: Double] {
        let text = (try? String(contentsOfFile: side, encoding: .utf8)) ?? ""
        var result: [Int: Double] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let i = Int(parts[0]), let t = Double(parts[1]) { result[i] = t }
        }
        return result
    }
    let ready = ContinuousClock.now + .seconds(30)
    while !((try? String(contentsOfFile: side, encoding: .utf8)) ?? "").hasPrefix("ready") {
        guard ContinuousClock.now < ready else { throw BenchError("the latency worker did not start") }
        try await Task.sleep(for: .milliseconds(5))
    }
    var latencies: [Double] = []
    for i in 0..<s.latencySubmissions {
        try await Task.sleep(for: .milliseconds(50))  // the worker is idle: only its poll runs
        let (runID, _) = try await submitter.submit(workflowType: Ping.name, input: Data("\(i)".utf8), id: "ping-\(i)")
        let submitted = wallSeconds()
        let deadline = ContinuousClock.now + .seconds(10)
        while try starts()[i] == nil ? true : await submitter.describe(runID).run.status.isOpen {
            guard ContinuousClock.now < deadline else { throw BenchError("ping \(i) did not finish within 10 s") }
            try await Task.sleep(for: .milliseconds(1))
        }
        latencies.append((starts()[i]! - submitted) * 1000)
    }
    await submitter.shutdown()
    let sorted = latencies.sorted()
    var record = header("submit_latency", durability: durability, round: round)
    record.set("submissions", latencies.count)
    record.set("p50_ms", percentile(sorted, 0.5), digits: 3)
    record.set("p90_ms", percentile(sorted, 0.9), digits: 3)
    record.set("p99_ms", percentile(sorted, 0.99), digits: 3)
    record.set("max_ms", sorted.last, digits: 3)
    record.set("mean_ms", sorted.isEmpty ? nil : sorted.reduce(0, +) / Double(sorted.count), digits: 3)
    record.set("target_p50_ms", 50)
    record.set("pass", (percentile(sorted, 0.5) ?? .infinity) < 50)
    emit(record)
    return record
}
