// The worker runtime's workloads (no DBOS counterpart: DBOS has no activity pools):
//
//   pool_warm_cold  a model-like activity (warm-up ~500 ms, call ~5 ms, both simulated with sleeps):
//                   `pool-calls` calls through a warm pool against the same calls when every call
//                   cold-starts its slot (maximumUses 1), `pool-slots` slots in both cases
//   pool_overhead   the pool's own cost per call: a warm slot acquired and released in a loop, and
//                   the end-to-end cost per step of a pooled no-op activity against an unpooled one
//   process_warm_cold  pool_warm_cold with real processes: the Python fixture sleeps `pool-warm-up-ms`
//                   before its ready line and `pool-call-ms` per call; warm pool against a new
//                   process per call (process start and Python's own start-up included)
import Dispatch
import Durable
import Foundation
import Synchronization

struct PoolSettings {
    var calls = 200
    var slots = 4
    var warmUpMs = 500
    var callMs = 5
    var overheadIterations = 1_000_000
    var overheadSteps = 3_000
}

/// A model: loading it takes `warmUpMs`; a call takes `callMs`.
struct ModelCall: Activity {
    let callMs: Int
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(callMs))
        return input
    }
}

/// `input.calls` calls of ``ModelCall`` in `input.lanes` parallel lanes.
struct Inference: Workflow {
    struct Input: Codable, Sendable {
        var calls: Int
        var lanes: Int
    }

    func run(_ ctx: WorkflowContext, input: Input) async throws -> Int {
        try await Self.inLanes(input) { call in try await ctx.execute(ModelCall.self, call) }
    }

    /// Calls `call` for 0..<`input.calls` in `input.lanes` parallel lanes (each lane's calls one after
    /// another); the sum of the results.
    static func inLanes(_ input: Input, _ call: @escaping @Sendable (Int) async throws -> Int) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for lane in 0..<input.lanes {
                group.addTask {
                    var sum = 0
                    for index in stride(from: lane, to: input.calls, by: input.lanes) { sum += try await call(index) }
                    return sum
                }
            }
            return try await group.reduce(0, +)
        }
    }
}

/// A no-op step, pooled or not.
struct Noop: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int { input }
}

struct NoopSteps: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        var sum = 0
        for i in 0..<input { sum += try await ctx.execute(Noop.self, i) }
        return sum
    }
}

private final class Count: Sendable {
    private let value = Mutex(0)
    func add() { value.withLock { $0 += 1 } }
    var total: Int { value.withLock { $0 } }
}

func runPoolWarmCold(_ s: PoolSettings, folder: String, round: Int) async throws -> Record {
    func measure(cold: Bool) async throws -> WarmColdRun {
        let loads = Count()
        let path = (folder as NSString).appendingPathComponent("pool-\(cold ? "cold" : "warm")-\(round).sqlite")
        var run = try await measureWarmCold(Inference.self, "pool_warm_cold", s, path: path) { engine in
            engine.register(ModelCall.self, pool: s.pool(cold: cold)) { [callMs = s.callMs, warmUpMs = s.warmUpMs] in
                loads.add()
                try await Task.sleep(for: .milliseconds(warmUpMs))
                return ModelCall(callMs: callMs)
            }
        }
        run.made = loads.total
        return run
    }
    return warmColdRecord("pool_warm_cold", s, round: round, warm: try await measure(cold: false),
                          cold: try await measure(cold: true), made: "loads")
}

/// One side of a warm-against-cold comparison.
struct WarmColdRun {
    var seconds: Double
    var warmUpSeconds: Double
    /// Slots the factory made (models loaded, processes started).
    var made = 0
}

extension PoolSettings {
    /// Warm: every slot warmed before the run. Cold: every call warms a slot of its own.
    func pool(cold: Bool) -> PoolOptions {
        cold ? .warm(min: 0, max: slots, maxUses: 1) : .warm(min: slots, max: slots)
    }
}

/// Runs `W` (an ``Inference``-shaped workflow) once on a fresh journal at `path`, after warming the
/// pools that `register` adds: the run's time and the warm-up's.
func measureWarmCold<W: Workflow>(
    _ workflow: W.Type, _ phase: String, _ s: PoolSettings, path: String, register: (Engine) -> Void
) async throws -> WarmColdRun where W.Input == Inference.Input, W.Output == Int {
    defer { removeJournalFiles(path) }
    let engine = try await Engine(journal: .sqlite(path: path, durability: .full))
    engine.register(W.self)
    register(engine)
    let warmStart = monoSeconds()
    await engine.warmUp()
    let warmUpSeconds = monoSeconds() - warmStart
    let start = monoSeconds()
    let sum = try await engine.start(W.self, input: .init(calls: s.calls, lanes: s.slots)).result()
    let seconds = monoSeconds() - start
    await engine.shutdown()
    guard sum == s.calls * (s.calls - 1) / 2 else { throw BenchError("\(phase): wrong result \(sum)") }
    return WarmColdRun(seconds: seconds, warmUpSeconds: warmUpSeconds)
}

/// The result line of a warm-against-cold comparison; `made` names what the factory made (`warm_<made>`,
/// `cold_<made>`).
func warmColdRecord(
    _ phase: String, _ s: PoolSettings, round: Int, warm: WarmColdRun, cold: WarmColdRun, made: String
) -> Record {
    var r = header(phase, durability: .full, round: round)
    r.set("calls", s.calls)
    r.set("slots", s.slots)
    r.set("warm_up_ms", s.warmUpMs)
    r.set("call_ms", s.callMs)
    r.set("warm_pool_warm_up_s", warm.warmUpSeconds)
    r.set("warm_total_s", warm.seconds)
    r.set("warm_per_call_ms", warm.seconds * 1000 / Double(s.calls))
    r.set("warm_\(made)", warm.made)
    r.set("cold_total_s", cold.seconds)
    r.set("cold_per_call_ms", cold.seconds * 1000 / Double(s.calls))
    r.set("cold_\(made)", cold.made)
    r.set("cold_to_warm_ratio", cold.seconds / warm.seconds)
    // The floor for the warm run: each lane's calls back to back with no engine at all.
    r.set("warm_floor_s", Double(s.calls / s.slots * s.callMs) / 1000)
    emit(r)
    return r
}

func runPoolOverhead(_ s: PoolSettings, folder: String, round: Int) async throws -> Record {
    // 1. The pool alone: a warm slot acquired and released, on one thread.
    let pool = SlotPool(name: "bench", options: .warm(min: 1, max: 1)) { Noop() }
    await pool.start()
    let granted = Mutex<Lease?>(nil)
    let t0 = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<s.overheadIterations {
        pool.acquire(ticket: pool.newTicket()) { grant in
            if case .warm(let lease) = grant { granted.withLock { $0 = lease } }
        }
        guard let lease = granted.withLock({ $0.take() }) else {
            throw BenchError("pool_overhead: the warm slot was not granted at once")
        }
        pool.release(lease, retire: false)
    }
    let microNanos = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(s.overheadIterations)

    // 2. End to end: per-step time of a pooled no-op activity against an unpooled one, interleaved
    //    three times each (durability fast, so the disk's fsync does not drown the difference).
    func perStep(pooled: Bool, _ index: Int) async throws -> Double {
        let path = (folder as NSString).appendingPathComponent("overhead-\(pooled)-\(index)-\(round).sqlite")
        defer { removeJournalFiles(path) }
        let engine = try await Engine(journal: .sqlite(path: path, durability: .fast))
        engine.register(NoopSteps.self)
        if pooled {
            engine.register(Noop.self, pool: .warm(min: 1, max: 1)) { Noop() }
        } else {
            engine.register(Noop())
        }
        await engine.warmUp()
        _ = try await engine.start(NoopSteps.self, input: 50).result()  // warm the process up
        let start = monoSeconds()
        let sum = try await engine.start(NoopSteps.self, input: s.overheadSteps).result()
        let seconds = monoSeconds() - start
        await engine.shutdown()
        guard sum == s.overheadSteps * (s.overheadSteps - 1) / 2 else { throw BenchError("pool_overhead: wrong sum") }
        return seconds * 1e6 / Double(s.overheadSteps)
    }
    var pooled: [Double] = []
    var unpooled: [Double] = []
    for i in 0..<3 {
        unpooled.append(try await perStep(pooled: false, i))
        pooled.append(try await perStep(pooled: true, i))
    }
    let pooledMedian = pooled.sorted()[1]
    let unpooledMedian = unpooled.sorted()[1]
    var r = header("pool_overhead", durability: .fast, round: round)
    r.set("acquire_release_iterations", s.overheadIterations)
    r.set("acquire_release_us", microNanos / 1000, digits: 3)
    r.set("steps", s.overheadSteps)
    r.set("pooled_us_per_step", pooledMedian, digits: 1)
    r.set("unpooled_us_per_step", unpooledMedian, digits: 1)
    r.set("pool_cost_us_per_step", pooledMedian - unpooledMedian, digits: 1)
    r.set("pooled_runs_us", pooled.map { Int($0.rounded()) })
    r.set("unpooled_runs_us", unpooled.map { Int($0.rounded()) })
    emit(r)
    return r
}

/// The stdlib Python worker checked in with the tests (found from this file's path at build time).
let modelWorkerScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/model_worker.py").path

/// The Python worker's echo input.
struct EchoRequest: Codable, Sendable {
    var op = "echo"
    var value: Int
}

struct EchoReply: Codable, Sendable {
    var value: Int
}

struct PyEcho: ActivityDeclaration {
    typealias Input = EchoRequest
    typealias Output = EchoReply
}

/// `input.calls` echo calls of ``PyEcho`` in `input.lanes` parallel lanes.
struct ProcessInference: Workflow {
    func run(_ ctx: WorkflowContext, input: Inference.Input) async throws -> Int {
        try await Inference.inLanes(input) { call in try await ctx.execute(PyEcho.self, EchoRequest(value: call)).value }
    }
}

func runProcessWarmCold(_ s: PoolSettings, folder: String, round: Int) async throws -> Record {
    func measure(cold: Bool) async throws -> WarmColdRun {
        let path = (folder as NSString).appendingPathComponent("process-\(cold ? "cold" : "warm")-\(round).sqlite")
        let pids = path + ".pids"
        defer { try? FileManager.default.removeItem(atPath: pids) }
        var run = try await measureWarmCold(ProcessInference.self, "process_warm_cold", s, path: path) { engine in
            engine.register(PyEcho.self, processPool: ProcessPoolOptions(
                command: ["python3", modelWorkerScript],
                environment: ["WARMUP_MS": "\(s.warmUpMs)", "CALL_MS": "\(s.callMs)", "PID_FILE": pids],
                pool: s.pool(cold: cold)))
        }
        run.made = ((try? String(contentsOfFile: pids, encoding: .utf8)) ?? "").split(separator: "\n").count
        return run
    }
    return warmColdRecord("process_warm_cold", s, round: round, warm: try await measure(cold: false),
                          cold: try await measure(cold: true), made: "processes")
}

struct EchoSteps: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        var sum = 0
        for i in 0..<input { sum += try await ctx.execute(PyEcho.self, EchoRequest(value: i)).value }
        return sum
    }
}

///   process_pool    a process-pool round trip to a Python echo worker (no model time): the
///                   WorkerProcess call alone, then per step through the engine against an in-process
///                   no-op step
func runProcessPool(_ s: PoolSettings, folder: String, round: Int) async throws -> Record {
    // 1. The round trip alone: request line out, response line in, on one warm process.
    let process = try await WorkerProcess.launch(WorkerProcessConfiguration(command: ["python3", modelWorkerScript]))
    let input = Data(#"{"op":"echo","value":1}"#.utf8)
    var samples: [Double] = []
    let calls = 2_000
    for i in 0..<(calls + 100) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try await process.call(
            WorkerRequest(id: i, activity: "PyEcho", input: input, idempotencyKey: "bench/\(i)"), onHeartbeat: { _ in })
        if i >= 100 { samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000) }
    }
    await process.terminate()
    samples.sort()

    // 2. Through the engine: per-step time with the Python worker against an in-process no-op.
    func perStep(python: Bool) async throws -> Double {
        let path = (folder as NSString).appendingPathComponent("process-\(python)-\(round).sqlite")
        defer { removeJournalFiles(path) }
        let engine = try await Engine(journal: .sqlite(path: path, durability: .fast))
        engine.register(EchoSteps.self)
        engine.register(NoopSteps.self)
        engine.register(Noop())
        engine.register(PyEcho.self, processPool: ProcessPoolOptions(
            command: ["python3", modelWorkerScript], pool: .warm(min: 1, max: 1)))
        await engine.warmUp()
        let steps = 1_000
        let start = monoSeconds()
        let sum = python
            ? try await engine.start(EchoSteps.self, input: steps).result()
            : try await engine.start(NoopSteps.self, input: steps).result()
        let seconds = monoSeconds() - start
        await engine.shutdown()
        guard sum == steps * (steps - 1) / 2 else { throw BenchError("process_pool: wrong sum \(sum)") }
        return seconds * 1e6 / Double(steps)
    }
    let inProcess = try await perStep(python: false)
    let viaProcess = try await perStep(python: true)
    var r = header("process_pool", durability: .fast, round: round)
    r.set("round_trips", calls)
    r.set("round_trip_mean_us", samples.reduce(0, +) / Double(samples.count), digits: 1)
    r.set("round_trip_p50_us", percentile(samples, 0.5), digits: 1)
    r.set("round_trip_p99_us", percentile(samples, 0.99), digits: 1)
    r.set("in_process_us_per_step", inProcess, digits: 1)
    r.set("process_pool_us_per_step", viaProcess, digits: 1)
    r.set("process_cost_us_per_step", viaProcess - inProcess, digits: 1)
    emit(r)
    return r
}
