#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import Foundation

// Throughput with several worker processes on one journal (`--workloads workers`): for each count in
// `--worker-counts` (default 1,2,4), a fresh journal, that many worker processes (this executable with
// `--bench-worker`, the `Steps` workflow registered), `--scaling-runs` runs of `--scaling-steps` steps
// submitted at once from this process, and the time from the first submission to the last run's end.
// Steps/s = runs × steps / that time. Most useful on PostgreSQL (`--journal postgres://…`), where the
// workers could be on several hosts; on SQLite they share one file's write lock.

/// A worker process: registers `Steps` and runs until SIGTERM; writes "ready" to the side file.
func benchWorker(_ o: CrashChildOptions) async throws -> Int32 {
    let engine = try await Engine(journal: JournalConfiguration(o.journal, durability: o.durability))
    engine.register(Steps.self)
    engine.register(SmallStep(payloadBytes: 100))
    signal(SIGTERM, SIG_IGN)
    let stop = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    stop.setEventHandler { Task { await engine.shutdown() } }
    stop.resume()
    _ = try await engine.recover()
    let side = open(o.side, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    _ = "ready\n".withCString { write(side, $0, strlen($0)) }
    close(side)
    try await engine.runWorker()
    await engine.shutdown()
    withExtendedLifetime(stop) {}
    return 0
}

/// A fresh journal `name` in `folder` and the side file its bench workers write "ready" to, both
/// removed before and after `body`.
func withWorkerJournal<T>(
    _ name: String, folder: String, _ body: (_ journal: String, _ side: String) async throws -> T
) async throws -> T {
    let journal = journalLocation(name, folder: folder)
    let side = (folder as NSString).appendingPathComponent("\(name).ready")
    func remove() {
        removeJournalFiles(journal)
        try? FileManager.default.removeItem(atPath: side)
    }
    remove()
    defer { remove() }
    return try await body(journal, side)
}

/// A worker process (``benchWorker(_:)``) on `journal`.
func spawnBenchWorker(journal: String, side: String, durability: Durability) throws -> pid_t {
    try spawn(executablePath(), [
        "--bench-worker", "--journal", journal, "--side", side, "--durability-child", durability.rawValue,
    ])
}

func runWorkerScaling(
    _ s: WorkloadSettings, workers count: Int, folder: String, durability: Durability, round: Int
) async throws -> Record {
    try await withWorkerJournal("workers-\(count)-\(durability.rawValue)-\(round)", folder: folder) { journal, side in
        try await runWorkerScaling(s, workers: count, journal: journal, side: side, durability: durability, round: round)
    }
}

private func runWorkerScaling(
    _ s: WorkloadSettings, workers count: Int, journal: String, side: String, durability: Durability, round: Int
) async throws -> Record {
    let submitter = try await Engine(journal: JournalConfiguration(journal, durability: durability))
    let pids = try (0..<count).map { _ in try spawnBenchWorker(journal: journal, side: side, durability: durability) }
    defer {
        for pid in pids { kill(pid, SIGTERM) }
        for pid in pids { _ = waitFor(pid) }
    }
    let ready = ContinuousClock.now + .seconds(60)
    while ((try? String(contentsOfFile: side, encoding: .utf8)) ?? "").split(separator: "\n").count < count {
        guard ContinuousClock.now < ready else { throw BenchError("the workers did not start within 60 s") }
        try await Task.sleep(for: .milliseconds(10))
    }
    let start = monoSeconds()
    for i in 0..<s.scalingRuns {
        _ = try await submitter.submit(workflowType: Steps.name, input: Data("\(s.scalingSteps)".utf8), id: "w\(i)")
    }
    let submitted = monoSeconds() - start
    let deadline = ContinuousClock.now + .seconds(600)
    while try await submitter.countRuns(RunFilter(statuses: [.completed])).values.reduce(0, +) < s.scalingRuns {
        guard ContinuousClock.now < deadline else { throw BenchError("the runs did not finish within 600 s") }
        try await Task.sleep(for: .milliseconds(20))
    }
    let total = monoSeconds() - start
    var record = await header("workers", durability: durability, round: round, engine: submitter)
    record.set("workers", count)
    record.set("runs", s.scalingRuns)
    record.set("steps_per_run", s.scalingSteps)
    record.set("submit_s", submitted, digits: 3)
    record.set("total_s", total, digits: 3)
    record.set("steps_per_s", Double(s.scalingRuns * s.scalingSteps) / total, digits: 1)
    emit(record)
    await submitter.shutdown()
    return record
}
