import Durable
import Foundation
import Synchronization

// MARK: - open_runs: many runs waiting for days, a bounded instance cache, a restart
//
// N runs start and each waits for a signal (`go`); RSS is read after the starts (bytes per waiting run
// against the RSS before them). Then a random 1 % are signalled, a few at a time, each timed from
// the signal to its completion, apart for runs evicted from memory and runs still cached. Then the
// worker stops and a new one starts on the same journal: the time from its start to the completion
// of a new run, and from its start to ready.

/// Waits for one `go` signal and returns its value.
struct AwaitGo: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        try await ctx.waitForSignal(Int.self, named: "go") + input
    }
}

/// Settings of the open_runs workload.
struct OpenRunsSettings {
    var runs = 10_000
    /// The worker's instance cache capacity (`nil`: the default, sized from memory).
    var cache: Int? = 1_000
    /// Runs started at once.
    var startConcurrency = 256
    /// Signalled runs in flight at once.
    var signalConcurrency = 8
}

/// The resident set size of this process, in bytes (`VmRSS` in /proc/self/status).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let digits = line.split(separator: " ").compactMap { Int($0) }
        return (digits.first ?? 0) * 1024
    }
    return 0
}

/// Completion times of runs, told by the worker's close observer.
private final class Completions: Sendable {
    private let state = Mutex<(done: [String: Double], waiting: [String: CheckedContinuation<Double, Never>])>(([:], [:]))

    func closed(_ runID: String) {
        let now = monoSeconds()
        let waiter = state.withLock { state -> CheckedContinuation<Double, Never>? in
            if let waiter = state.waiting.removeValue(forKey: runID) { return waiter }
            state.done[runID] = now
            return nil
        }
        waiter?.resume(returning: now)
    }

    func completion(of runID: String) async -> Double {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Double? in
                if let time = state.done.removeValue(forKey: runID) { return time }
                state.waiting[runID] = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}

func runOpenRuns(_ settings: OpenRunsSettings, path: String, durability: Durability, round: Int) async throws -> Record {
    removeJournalFiles(path)
    var record = header("open_runs", durability: durability, round: round)
    record.set("runs", settings.runs)
    let rssBefore = residentBytes()
    let engine = try await Engine(journal: JournalConfiguration(path, durability: durability))
    if let cache = settings.cache { engine.worker.instanceCacheCapacity = cache }
    record.set("cache", engine.worker.instanceCacheCapacity)
    engine.register(AwaitGo.self)
    let completions = Completions()
    engine.worker.onRunClosed { runID, _ in completions.closed(runID) }
    try await engine.recover()

    // 1. N runs, each waiting for its signal.
    say("open_runs: starting \(settings.runs) runs (cache \(engine.worker.instanceCacheCapacity)) …")
    let startBegan = monoSeconds()
    var runIDs = [String](repeating: "", count: settings.runs)
    try await withThrowingTaskGroup(of: (Int, String).self) { group in
        var next = 0
        func add() {
            let i = next
            next += 1
            group.addTask { (i, try await engine.worker.start(AwaitGo.self, input: i, id: "open-\(i)").runID) }
        }
        while next < min(settings.startConcurrency, settings.runs) { add() }
        while let (i, runID) = try await group.next() {
            runIDs[i] = runID
            if next < settings.runs { add() }
            if (i + 1) % 100_000 == 0 { say("open_runs: \(i + 1) started") }
        }
    }
    let startSeconds = monoSeconds() - startBegan
    // Evictions finish in the background: wait until at most the cache's worth is live.
    let settleBegan = monoSeconds()
    while engine.worker.liveRunCount > engine.worker.instanceCacheCapacity, monoSeconds() - settleBegan < 60 {
        try await Task.sleep(for: .milliseconds(20))
    }
    let rssAfter = residentBytes()
    record.set("start_s", startSeconds)
    record.set("starts_per_s", Double(settings.runs) / startSeconds)
    record.set("rss_before_mb", Double(rssBefore) / 1_048_576)
    record.set("rss_after_starts_mb", Double(rssAfter) / 1_048_576)
    record.set("bytes_per_waiting_run", Double(rssAfter - rssBefore) / Double(max(1, settings.runs)))
    record.set("live_runs", engine.worker.liveRunCount)
    record.set("evicted_runs", engine.worker.evictedRunCount)

    // 2. A random 1 % signalled, a few at a time; each timed from the signal to its completion.
    var generator = SystemRandomNumberGenerator()
    let chosen = Array(runIDs.indices.shuffled(using: &generator).prefix(max(1, settings.runs / 100)))
    say("open_runs: signalling \(chosen.count) runs …")
    let signalBegan = monoSeconds()
    var evicted: [Double] = []
    var cached: [Double] = []
    try await withThrowingTaskGroup(of: (Bool, Double).self) { group in
        var next = 0
        func add() {
            let runID = runIDs[chosen[next]]
            next += 1
            group.addTask {
                let wasCached = engine.worker.drives(runID)
                let sent = monoSeconds()
                try await engine.client.signal(runID, name: "go", 1)
                let done = await completions.completion(of: runID)
                return (wasCached, (done - sent) * 1000)
            }
        }
        while next < min(settings.signalConcurrency, chosen.count) { add() }
        while let (wasCached, ms) = try await group.next() {
            if wasCached { cached.append(ms) } else { evicted.append(ms) }
            if next < chosen.count { add() }
        }
    }
    let allSignalledSeconds = monoSeconds() - signalBegan
    evicted.sort()
    cached.sort()
    record.set("signalled", chosen.count)
    record.set("signal_concurrency", settings.signalConcurrency)
    record.set("signalled_evicted", evicted.count)
    record.set("signalled_cached", cached.count)
    record.set("wake_evicted_p50_ms", percentile(evicted, 0.5))
    record.set("wake_evicted_p99_ms", percentile(evicted, 0.99))
    record.set("wake_cached_p50_ms", percentile(cached, 0.5))
    record.set("wake_cached_p99_ms", percentile(cached, 0.99))
    record.set("all_signalled_done_s", allSignalledSeconds)
    let memory = residentBytes()
    record.set("rss_after_signals_mb", Double(memory) / 1_048_576)
    await engine.shutdown()

    // 3. A new worker on the same journal: ready, and a new run through to its end.
    say("open_runs: restarting the worker …")
    let restartBegan = monoSeconds()
    let restarted = try await Engine(journal: JournalConfiguration(path, durability: durability))
    if let cache = settings.cache { restarted.worker.instanceCacheCapacity = cache }
    restarted.register(AwaitGo.self)
    let report = try await restarted.recover()
    let readySeconds = monoSeconds() - restartBegan
    let fresh = try await restarted.worker.start(AwaitGo.self, input: 0, id: "open-after-restart")
    try await restarted.client.signal(fresh.runID, name: "go", 1)
    _ = try await fresh.result()
    let firstRunSeconds = monoSeconds() - restartBegan
    record.set("restart_ready_s", readySeconds)
    record.set("restart_first_run_done_s", firstRunSeconds)
    record.set("restart_resumed", report.resumed.count)
    // An evicted run woken after the restart (its history replayed here).
    if let survivor = runIDs.indices.first(where: { !chosen.contains($0) }).map({ runIDs[$0] }) {
        let sent = monoSeconds()
        try await restarted.client.signal(survivor, name: "go", 1)
        _ = try await restarted.client.outcome(of: survivor)
        record.set("restart_wake_ms", (monoSeconds() - sent) * 1000)
    }
    let open = try await restarted.journal.countRuns(RunFilter(statuses: [.running]))[.running] ?? 0
    record.set("open_after", open)
    record.set("pass", open == settings.runs - chosen.count - 1 && evicted.count + cached.count == chosen.count)
    await restarted.shutdown()
    emit(record)
    return record
}
