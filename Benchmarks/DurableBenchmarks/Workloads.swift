import Durable
import Foundation
import Synchronization

// MARK: - The workload's workflow and activity (the DBOS peer's `wf_steps` and `small_step`)

/// What every step returns: `{"i": i, "payload": "x" * 100}`.
struct StepResult: Codable, Sendable {
    var i: Int
    var payload: String
}

/// One step: returns its index and a payload, 100 bytes of "x" as in the DBOS peer.
struct SmallStep: Activity {
    static let payload = String(repeating: "x", count: 100)
    var payload = Self.payload
    /// With `--step-pause-us N`: each step blocks its thread for N µs (`usleep`), as an fsync does,
    /// so that the rest of the step runs after its thread slept; ``paused`` adds up the time it took.
    var pauseMicros: UInt32 = 0
    static let paused = Atomic<Int>(0)

    /// With `--payload-bytes N` (other than 100): N letters and digits from a fixed pseudo-random
    /// sequence, which LZ4 cannot shrink the way it shrinks a run of "x".
    init(payloadBytes: Int = 100) {
        guard payloadBytes != 100 else { return }
        var state: UInt64 = 42
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        payload = String(decoding: (0..<payloadBytes).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return letters[Int(state >> 33) % letters.count]
        }, as: UTF8.self)
    }

    func run(_ ctx: ActivityContext, input: Int) async throws -> StepResult {
        if pauseMicros > 0 {
            let start = DispatchTime.now().uptimeNanoseconds
            usleep(pauseMicros)
            Self.paused.add(Int(DispatchTime.now().uptimeNanoseconds - start), ordering: .relaxed)
        }
        return StepResult(i: input, payload: payload)
    }
}

/// `input` sequential steps 0..<input; returns the sum of the step indexes.
struct Steps: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        var acc = 0
        for i in 0..<input {
            acc += try await ctx.execute(SmallStep.self, i).i
        }
        return acc
    }
}

/// Settings shared by the in-process workloads.
struct WorkloadSettings {
    var longSteps = 1000
    var seqWorkflows = 200
    var seqSteps = 10
    var warmup = 5
    var concWorkflows = 500
    var concSteps = 5
    var crashSteps = 1000
    var crashKillAfter = 500
    var latencySubmissions = 100
    var payloadBytes = 100
    var stepPauseMicros: UInt32 = 0
    var workerCounts = [1, 2, 4]
    var scalingRuns = 400
    var scalingSteps = 5
    var replaySteps = [1_000, 10_000, 100_000]
}

/// A fresh engine on a fresh journal file, with the workload's types registered.
func makeEngine(path: String, durability: Durability, payloadBytes: Int, stepPauseMicros: UInt32 = 0) async throws -> Engine {
    removeJournalFiles(path)
    let engine = try await Engine(journal: JournalConfiguration(path, durability: durability))
    engine.register(Steps.self)
    var step = SmallStep(payloadBytes: payloadBytes)
    step.pauseMicros = stepPauseMicros
    engine.register(step)
    return engine
}

/// The common fields of every result line.
func header(_ phase: String, durability: Durability, round: Int) -> Record {
    var record = Record()
    record.set("phase", phase)
    record.set("engine", "durable")
    record.set("backend", journalServer == nil ? "sqlite" : "postgres")
    record.set("durability", durability.rawValue)
    record.set("round", round)
    return record
}

/// The common fields and the durability the journal's writer really commits with, read back from
/// the storage.
func header(_ phase: String, durability: Durability, round: Int, engine: Engine) async -> Record {
    var record = header(phase, durability: durability, round: round)
    record.set("writer_durability", (try? await engine.journal.effectiveDurability())?.rawValue ?? "unknown")
    return record
}

private func expectedSum(_ n: Int) -> Int { n * (n - 1) / 2 }

// MARK: - long: one workflow of 1000 steps

func runLong(_ s: WorkloadSettings, path: String, durability: Durability, round: Int) async throws -> Record {
    let engine = try await makeEngine(
        path: path, durability: durability, payloadBytes: s.payloadBytes, stepPauseMicros: s.stepPauseMicros)
    let paused0 = SmallStep.paused.load(ordering: .relaxed)
    let commits0 = engine.journal.commitCount
    let cpu0 = cpuSeconds()
    let t0 = monoSeconds()
    let handle = try await engine.start(Steps.self, input: s.longSteps)
    let result = try await handle.result()
    let total = monoSeconds() - t0
    let cpu = cpuSeconds() - cpu0
    let commits = engine.journal.commitCount - commits0
    guard result == expectedSum(s.longSteps) else { throw BenchError("long: wrong result \(result)") }
    var record = await header("long", durability: durability, round: round, engine: engine)
    record.set("payload_bytes", s.payloadBytes)
    record.set("steps", s.longSteps)
    record.set("total_s", total)
    record.set("per_step_ms", total / Double(s.longSteps) * 1e3)
    record.set("steps_per_s", Double(s.longSteps) / total, digits: 2)
    record.set("cpu_s", cpu)
    record.set("cpu_ms_per_step", cpu / Double(s.longSteps) * 1e3)
    record.set("commits", commits)
    record.set("commits_per_step", Double(commits) / Double(s.longSteps), digits: 3)
    if s.stepPauseMicros > 0 {
        let paused = Double(SmallStep.paused.load(ordering: .relaxed) - paused0) / 1e9
        record.set("step_pause_us", Int(s.stepPauseMicros))
        record.set("pause_ms_per_step", paused / Double(s.longSteps) * 1e3)
        record.set("work_ms_per_step", (total - paused) / Double(s.longSteps) * 1e3)
    }
    record.merge(machineLoad())
    emit(record)
    try await emitJournalStats(engine, workload: "long", durability: durability, round: round)
    await engine.shutdown()
    removeJournalFiles(path)
    return record
}

// MARK: - seq: 200 workflows of 10 steps, one after another

func runSeq(_ s: WorkloadSettings, path: String, durability: Durability, round: Int) async throws -> Record {
    let engine = try await makeEngine(path: path, durability: durability, payloadBytes: s.payloadBytes)
    let k = s.seqSteps
    for _ in 0..<s.warmup {
        _ = try await engine.start(Steps.self, input: k).result()
    }
    var latencies: [Double] = []
    latencies.reserveCapacity(s.seqWorkflows)
    let commits0 = engine.journal.commitCount
    let cpu0 = cpuSeconds()
    let tStart = monoSeconds()
    for _ in 0..<s.seqWorkflows {
        let t = monoSeconds()
        let result = try await engine.start(Steps.self, input: k).result()
        latencies.append(monoSeconds() - t)
        guard result == expectedSum(k) else { throw BenchError("seq: wrong result \(result)") }
    }
    let total = monoSeconds() - tStart
    let cpu = cpuSeconds() - cpu0
    let commits = engine.journal.commitCount - commits0
    latencies.sort()
    let steps = Double(s.seqWorkflows * k)
    var record = await header("seq", durability: durability, round: round, engine: engine)
    record.set("payload_bytes", s.payloadBytes)
    record.set("workflows", s.seqWorkflows)
    record.set("steps_per_wf", k)
    record.set("warmup_workflows", s.warmup)
    record.set("total_s", total)
    record.set("workflows_per_s", Double(s.seqWorkflows) / total, digits: 2)
    record.set("steps_per_s", steps / total, digits: 2)
    record.set("lat_p50_ms", percentile(latencies, 0.50).map { $0 * 1e3 }, digits: 3)
    record.set("lat_p99_ms", percentile(latencies, 0.99).map { $0 * 1e3 }, digits: 3)
    record.set("lat_mean_ms", latencies.reduce(0, +) / Double(latencies.count) * 1e3, digits: 3)
    record.set("lat_max_ms", (latencies.last ?? 0) * 1e3, digits: 3)
    record.set("cpu_s", cpu)
    record.set("cpu_ms_per_step", cpu / steps * 1e3)
    record.set("commits", commits)
    record.set("commits_per_step", Double(commits) / steps, digits: 3)
    record.merge(machineLoad())
    emit(record)
    try await emitJournalStats(engine, workload: "seq", durability: durability, round: round)
    await engine.shutdown()
    removeJournalFiles(path)
    return record
}

// MARK: - conc: 500 workflows of 5 steps started at once

/// `conc` starts the runs one after another, like DBOS.start_workflow in a loop: every start returns
/// once the run is recorded, and the runs already started keep going meanwhile. `conc_group` starts
/// them all from a task group, so that their start commits are shared too.
func runConc(
    _ s: WorkloadSettings, path: String, durability: Durability, round: Int, concurrentStart: Bool = false
) async throws -> Record {
    let engine = try await makeEngine(path: path, durability: durability, payloadBytes: s.payloadBytes)
    let k = s.concSteps
    let commits0 = engine.journal.commitCount
    let cpu0 = cpuSeconds()
    let t0 = monoSeconds()
    var handles: [WorkflowHandle<Steps>] = []
    handles.reserveCapacity(s.concWorkflows)
    if concurrentStart {
        handles = try await withThrowingTaskGroup(of: WorkflowHandle<Steps>.self) { group in
            for _ in 0..<s.concWorkflows {
                group.addTask { try await engine.start(Steps.self, input: k) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    } else {
        for _ in 0..<s.concWorkflows {
            handles.append(try await engine.start(Steps.self, input: k))
        }
    }
    let started = monoSeconds() - t0
    var errors = 0
    for handle in handles {
        do {
            if try await handle.result() != expectedSum(k) { errors += 1 }
        } catch {
            errors += 1
            say("conc error: \(error)")
        }
    }
    let total = monoSeconds() - t0
    let cpu = cpuSeconds() - cpu0
    let commits = engine.journal.commitCount - commits0
    var record = await header(concurrentStart ? "conc_group" : "conc", durability: durability, round: round, engine: engine)
    record.set("payload_bytes", s.payloadBytes)
    record.set("workflows", s.concWorkflows)
    record.set("steps_per_wf", k)
    record.set("api", concurrentStart
        ? "Engine.start from a task group, then WorkflowHandle.result() for each"
        : "Engine.start in a loop, then WorkflowHandle.result() for each")
    record.set("start_all_s", started)
    record.set("total_s", total)
    record.set("workflows_per_s", Double(s.concWorkflows) / total, digits: 2)
    record.set("steps_per_s", Double(s.concWorkflows * k) / total, digits: 2)
    record.set("cpu_s", cpu)
    record.set("cpu_ms_per_step", cpu / Double(s.concWorkflows * k) * 1e3)
    // One activation per start and per step: activations / commits = how well group commit shares.
    record.set("commits", commits)
    record.set("activations_per_commit", Double(s.concWorkflows * (k + 1)) / Double(max(1, commits)), digits: 2)
    record.set("errors", errors)
    record.merge(machineLoad())
    emit(record)
    await engine.shutdown()
    removeJournalFiles(path)
    return record
}

// MARK: - Journal bytes per event

/// After a checkpoint: the journal file's size per event, the stored (framed, compressed) payload
/// bytes per event, and the same history written as plain JSON, one object per event.
func emitJournalStats(_ engine: Engine, workload: String, durability: Durability, round: Int) async throws {
    try await engine.journal.checkpoint()
    let stats = try await engine.journal.stats()
    let fileBytes = Int(stats.fileBytes)  // SQLite: the file; PostgreSQL: the journal's tables and indexes
    let walBytes = Int(stats.walBytes)
    var jsonBytes = 0
    var rawPayloadBytes = 0
    var events = 0
    for run in try await engine.runs() {
        let (_, history) = try await engine.history(run.runID)
        for event in history {
            events += 1
            rawPayloadBytes += (event.data?.count ?? 0) + (event.meta?.count ?? 0)
            jsonBytes += plainJSON(event).utf8.count
        }
    }
    let n = Double(max(1, stats.events))
    var record = header("journal_bytes", durability: durability, round: round)
    record.set("workload", workload)
    record.set("runs", try await engine.runs().count)
    record.set("events", stats.events)
    record.set("file_bytes", fileBytes)
    record.set("wal_bytes_after_checkpoint", walBytes)
    record.set("file_bytes_per_event", Double(fileBytes) / n, digits: 1)
    record.set("stored_payload_bytes", stats.storedPayloadBytes)
    record.set("stored_payload_bytes_per_event", Double(stats.storedPayloadBytes) / n, digits: 1)
    record.set("raw_payload_bytes_per_event", Double(rawPayloadBytes) / Double(max(1, events)), digits: 1)
    record.set("plain_json_bytes", jsonBytes)
    record.set("plain_json_bytes_per_event", Double(jsonBytes) / Double(max(1, events)), digits: 1)
    record.set("file_to_json_ratio", Double(fileBytes) / Double(max(1, jsonBytes)), digits: 3)
    record.set("payload_to_json_ratio", Double(stats.storedPayloadBytes) / Double(max(1, jsonBytes)), digits: 3)
    emit(record)
    say(describe(record))
}

/// One event as a plain JSON object: every field of `HistoryEvent`, payloads inline as the JSON
/// they are (not escaped into strings), nil fields left out.
///
/// `{"index":3,"kind":"ActivityCompleted","time":1732870000000,"seq":2,"attempt":1,
///   "name":"SmallStep","data":{"i":1,"payload":"xx…"},"meta":{…}}`
func plainJSON(_ event: HistoryEvent) -> String {
    var out = "{\"index\":\(event.index),\"kind\":\"\(event.kind.name)\",\"time\":\(event.time.journalMillis)"
    out += ",\"seq\":\(event.seq),\"attempt\":\(event.attempt)"
    if let name = event.name { out += ",\"name\":" + jsonQuoted(name) }
    if let data = event.data { out += ",\"data\":" + String(decoding: data, as: UTF8.self) }
    if let meta = event.meta { out += ",\"meta\":" + String(decoding: meta, as: UTF8.self) }
    return out + "}"
}
