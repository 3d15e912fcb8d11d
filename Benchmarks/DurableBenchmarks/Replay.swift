#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import Foundation

// Replay cost against history length (`--workloads replay`, issue 16: "replay cost and memory stay
// linear"). For each count in `--replay-steps` (default 1000,10000,100000), a fresh journal at `fast`
// durability and one `Steps` run of that many steps, run by a worker in another process (so that
// this process never held the history); then this process replays the run three times
// (`Engine.replay`: read the history, decode it, run the workflow code against it) and reports the
// best time per event and the peak memory one replay added (VmHWM after a reset of the peak through
// /proc/self/clear_refs, less VmRSS before). Linear means both per-event figures stay flat as the
// history grows.

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`), or nil where there is none.
private func statusBytes(_ field: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// Makes VmHWM start again from the current RSS (Linux 4.0 and later).
private func resetPeakMemory() -> Bool {
    guard let file = fopen("/proc/self/clear_refs", "w") else { return false }
    defer { fclose(file) }
    return fputs("5", file) >= 0
}

func runReplayScaling(_ s: WorkloadSettings, folder: String, round: Int) async throws -> [Record] {
    var records: [Record] = []
    for steps in s.replaySteps {
        records.append(try await withWorkerJournal("replay-\(steps)-\(round)", folder: folder) { journal, side in
            try await replayRecord(steps: steps, journal: journal, side: side, round: round)
        })
    }
    return records
}

/// One size: the run made by a worker process, then replayed here.
private func replayRecord(steps: Int, journal: String, side: String, round: Int) async throws -> Record {
    let engine = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
    engine.register(Steps.self)
    engine.register(SmallStep(payloadBytes: 100))
    // The history, made by a worker in another process.
    let worker = try spawnBenchWorker(journal: journal, side: side, durability: .fast)
    let built = monoSeconds()
    let runID: String
    do {
        defer {
            kill(worker, SIGTERM)
            _ = waitFor(worker)
        }
        runID = try await engine.submit(workflowType: Steps.name, input: Data("\(steps)".utf8), id: "replay-\(steps)").runID
        let deadline = ContinuousClock.now + .seconds(900)
        while try await engine.describe(runID).run.status.isOpen {
            guard ContinuousClock.now < deadline else { throw BenchError("the \(steps)-step run did not end within 900 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
    let buildSeconds = monoSeconds() - built
    var best = Double.infinity
    var events = 0
    var peakGrowth: Int?
    for attempt in 0..<3 {
        let rssBefore = statusBytes("VmRSS")
        let reset = attempt == 0 && resetPeakMemory()
        let start = monoSeconds()
        let report = try await engine.replay(runID)
        best = min(best, monoSeconds() - start)
        guard report.mismatch == nil else { throw BenchError("the \(steps)-step run did not replay: \(report.mismatch!)") }
        events = report.eventCount
        if reset, let rssBefore, let peak = statusBytes("VmHWM") { peakGrowth = max(0, peak - rssBefore) }
    }
    var record = header("replay", durability: .fast, round: round)
    record.set("steps", steps)
    record.set("events", events)
    record.set("build_s", buildSeconds, digits: 2)
    record.set("replay_ms", best * 1000, digits: 2)
    record.set("replay_us_per_event", best * 1e6 / Double(max(1, events)), digits: 3)
    if let peakGrowth {
        record.set("peak_rss_growth_mb", Double(peakGrowth) / 1_048_576, digits: 1)
        record.set("peak_bytes_per_event", Double(peakGrowth) / Double(max(1, events)), digits: 0)
    }
    emit(record)
    await engine.shutdown()
    return record
}
