#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import DurableSQLite
import DurableServer
import Foundation
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

// The HTTP API under load (`--workloads http`): `wrk` on loopback against, in one process run,
//
//   bare           a bare Hummingbird route (`POST /bare`: read the body, answer a small JSON 202),
//                  the floor of the HTTP stack on this machine;
//   submit         `POST /v1/workflows/ThreeSteps/runs` on a `DurableServer` (fresh journal) whose
//                  worker does not run: only the intake is measured (decode, check, record the run,
//                  answer 202, audit entry), as with an application's `serve` without `--worker`;
//   submit_worker  the same with the worker running in the process, driving the runs meanwhile;
//   sync3          `POST …/runs?wait=10s` with the worker running: submit and complete a run of three
//                  activities, answered 200 with the result.
//
// Every point is `wrk -c N -d S --latency` with `Benchmarks/http/submit.lua` (a unique input per
// request, the bearer token, and a count of every status other than the expected one). After each
// durable point the journal is checked: the runs recorded during the point must equal the requests the
// audit log says were answered with a 2xx, and lie between wrk's successes and those plus the
// connections (a request wrk abandons when its time is up may still be answered and recorded).
// Before the HTTP points, in-process probes give the floors: sequential and concurrent audit appends,
// and `DurableClient.submit` without HTTP.

/// Settings of the `http` workload.
struct HTTPSettings {
    /// Seconds of each measured wrk point.
    var seconds = 10
    /// Seconds of unmeasured load before each server's first point.
    var warmupSeconds = 2
    var clients = [1, 16, 64]
    var syncClients = [1, 16]
    /// `wrk` (searched in `PATH` when `nil`).
    var wrk: String?
    /// The Lua script (`Benchmarks/http/submit.lua` by default, found from the working directory or
    /// the executable's).
    var script: String?
    /// Skip the phase with the worker running during async submits.
    var workerPhase = true
}

// MARK: - The workflow: three trivial activities

struct ThreeSteps: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        let checked = try await ctx.execute(StepOne.self, input)
        let scored = try await ctx.execute(StepTwo.self, checked)
        return try await ctx.execute(StepThree.self, scored)
    }
}

struct StepOne: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int { input + 1 }
}

struct StepTwo: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int { input * 2 }
}

struct StepThree: Activity {
    func run(_ ctx: ActivityContext, input: Int) async throws -> Int { input - 2 }
}

// MARK: - The workload

func runHTTP(_ h: HTTPSettings, folder: String, durability: Durability, round: Int) async throws -> Record {
    guard journalServer == nil else { throw BenchError("the http workload runs on SQLite only (no --journal)") }
    let wrk = try findWrk(h.wrk)
    let script = try findScript(h.script)
    // The handler `serve` logs with (its request loggers cost what they cost there).
    var logger = Logger(label: "durable.bench.http") { StandardErrorLogHandler(label: $0) }
    logger.logLevel = .error

    try await runHTTPProbes(folder: folder, durability: durability, round: round)

    var points: [String: Record] = [:]  // "target/clients"
    func record(_ point: Record, _ target: String, _ clients: Int) {
        points["\(target)/\(clients)"] = point
        say(describe(point))
    }

    // (a) The bare route.
    do {
        let server = try await Serving.start { onRunning in
            [bareApplication(logger: logger, onRunning: onRunning)]
        }
        let url = "http://\(server.address)"
        do {
            _ = try await runWrk(
                wrk, script, url, path: "/bare", token: "none", expected: 202, clients: 16, seconds: h.warmupSeconds)
            for clients in h.clients {
                let cpu0 = processCPU()
                let result = try await runWrk(
                    wrk, script, url, path: "/bare", token: "none", expected: 202, clients: clients, seconds: h.seconds)
                var point = httpHeader("bare", durability: durability, round: round, clients: clients, result: result)
                point.setServerCPU(processCPU() - cpu0, requests: result.requests, seconds: result.seconds)
                point.merge(machineLoad())
                emit(point)
                record(point, "bare", clients)
            }
        } catch {
            try? await server.stop()
            throw error
        }
        try await server.stop()
    }

    // (b) Async submits, the worker idle; (c) the same with the worker running; (d) submit + complete.
    var phases: [(target: String, worker: Bool, wait: Bool, clients: [Int])] = [("submit", false, false, h.clients)]
    if h.workerPhase { phases.append(("submit_worker", true, false, h.clients)) }
    phases.append(("sync3", true, true, h.syncClients))
    for phase in phases {
        let path = journalLocation("http-\(phase.target)-\(durability.rawValue)-\(round)", folder: folder)
        removeJournalFiles(path)
        defer { removeJournalFiles(path) }
        let bench = try await DurableUnderLoad(path: path, durability: durability, worker: phase.worker, logger: logger)
        let url = "http://\(bench.server.address)"
        let route = "/v1/workflows/\(ThreeSteps.name)/runs" + (phase.wait ? "?wait=10s" : "")
        let expected = phase.wait ? 200 : 202
        do {
            let warmupClients = min(16, phase.clients.max() ?? 16)
            _ = try await runWrk(
                wrk, script, url, path: route, token: bench.token, expected: expected, clients: warmupClients,
                seconds: h.warmupSeconds)
            var before = try await bench.waitUntilSettled()
            for clients in phase.clients {
                let cpu0 = processCPU()
                let result = try await runWrk(
                    wrk, script, url, path: route, token: bench.token, expected: expected, clients: clients, seconds: h.seconds)
                let cpu = processCPU() - cpu0
                let after = try await bench.waitUntilSettled()
                var point = httpHeader(phase.target, durability: durability, round: round, clients: clients, result: result)
                point.set("writer_durability", (try? await bench.engine.journal.effectiveDurability())?.rawValue ?? "unknown")
                point.set("worker_running", phase.worker)
                point.setServerCPU(cpu, requests: result.requests, seconds: result.seconds)
                let commits = after.commits - before.commits
                point.set("journal_commits", commits)
                point.set("requests_per_journal_commit", Double(result.requests) / Double(max(1, commits)), digits: 2)
                // A start answered 202 has its audit entry written with its run; the others (a wait,
                // the sync phase) in transactions of the audit log's own.
                point.set("audit_commits", after.auditCommits - before.auditCommits)
                point.merge(machineLoad())
                try await bench.check(&point, before: before, after: after, wrkOK: result.ok, clients: clients)
                emit(point)
                record(point, phase.target, clients)
                before = after
            }
        } catch {
            try? await bench.stop()
            throw error
        }
        try await bench.stop()
    }

    // (e) The summary: durable against bare per concurrency, and the target.
    var summary = header("http_summary", durability: durability, round: round)
    var rows: [JSONValue] = []
    var lines = ["http  [\(durability.rawValue)] summary (ok responses/s; latency ms; ratio durable/bare):",
                 "  clients  bare/s   bare p99  submit/s  p50     p99     throughput  p99 ratio  target"]
    var metAnywhere = false
    var clean = true
    for clients in h.clients {
        guard let bare = points["bare/\(clients)"], let submit = points["submit/\(clients)"] else { continue }
        let bareRate = bare.double("ok_per_s"), rate = submit.double("ok_per_s")
        let bareP99 = bare.double("p99_ms"), p50 = submit.double("p50_ms"), p99 = submit.double("p99_ms")
        let errors = bare.int("errors") + submit.int("errors")
        let met = errors == 0 && rate >= 5_000 && p99 <= 20
        metAnywhere = metAnywhere || met
        clean = clean && errors == 0
        var row = Record()
        row.set("clients", clients)
        row.set("bare_per_s", bareRate, digits: 1)
        row.set("bare_p99_ms", bareP99, digits: 3)
        row.set("submit_per_s", rate, digits: 1)
        row.set("submit_p50_ms", p50, digits: 3)
        row.set("submit_p99_ms", p99, digits: 3)
        row.set("throughput_ratio", rate / bareRate, digits: 3)
        row.set("p99_ratio", p99 / bareP99, digits: 2)
        row.set("errors", errors)
        row.set("target_met", met)
        rows.append(.object(row.fields))
        lines.append(String(
            format: "  %7d  %7.0f  %8.2f  %8.0f  %6.2f  %6.2f  %10.3f  %9.1f  ", clients, bareRate, bareP99, rate, p50, p99,
            rate / bareRate, p99 / bareP99) + (met ? "met" : "not met") + (errors > 0 ? " (ERRORS: \(errors))" : ""))
    }
    for clients in h.syncClients {
        guard let sync = points["sync3/\(clients)"] else { continue }
        clean = clean && sync.int("errors") == 0
        lines.append(String(
            format: "  sync 3-step, %d client(s): %.0f runs/s, p50 %.2f ms, p99 %.2f ms", clients, sync.double("ok_per_s"),
            sync.double("p50_ms"), sync.double("p99_ms")) + (sync.int("errors") > 0 ? " (ERRORS: \(sync.int("errors")))" : ""))
    }
    summary["points"] = .array(rows)
    summary.set("target", "async submits >= 5000/s with p99 <= 20 ms")
    summary.set("target_met", metAnywhere)
    let checked = points.values.allSatisfy { $0["check_passed"] == nil || $0.bool("check_passed") }
    summary.set("all_checks_passed", checked)
    summary.set("errors_free", clean)
    summary.merge(machineLoad())
    emit(summary)
    say(lines.joined(separator: "\n"))
    // A target not met is a measurement; a check that fails (runs missing or extra) is a failure.
    summary.set("pass", checked)
    return summary
}

/// The common fields of one wrk point.
private func httpHeader(_ target: String, durability: Durability, round: Int, clients: Int, result: WrkResult) -> Record {
    var point = header("http", durability: durability, round: round)
    point.set("target", target)
    point.set("clients", clients)
    point.set("threads", result.threads)
    point.set("seconds", result.seconds, digits: 3)
    point.set("requests", result.requests)
    point.set("ok", result.ok)
    point.set("ok_per_s", Double(result.ok) / result.seconds, digits: 1)
    point.set("req_per_s", Double(result.requests) / result.seconds, digits: 1)
    point.set("unexpected_status", result.unexpected)
    if result.unexpected > 0 { point.set("last_unexpected_status", result.lastUnexpected) }
    point.set("socket_errors", result.socketErrors)
    point.set("timeouts", result.timeouts)
    point.set("errors", result.errors)
    for (key, value) in [("p50", result.p50), ("p75", result.p75), ("p90", result.p90), ("p99", result.p99), ("max", result.max)] {
        point.set("\(key)_ms", value / 1e3, digits: 3)
    }
    point.set("mean_ms", result.mean / 1e3, digits: 3)
    point.set("wrk_cpu_ms_per_req", result.cpuSeconds * 1e3 / Double(max(1, result.requests)), digits: 4)
    return point
}

// MARK: - In-process floors

/// The floors under the HTTP figures, without HTTP: synced audit appends one at a time and from 16
/// tasks at once (each request's audit entry is one), and `DurableClient.submit` from 1 and 64 tasks.
func runHTTPProbes(folder: String, durability: Durability, round: Int) async throws {
    let path = journalLocation("http-probe-\(durability.rawValue)-\(round)", folder: folder)
    removeJournalFiles(path)
    defer { removeJournalFiles(path) }
    let engine = try await Engine(journal: JournalConfiguration(path, durability: durability))
    let client = engine.client
    func probe(_ kind: String, tasks: Int, count: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        let commits0 = engine.journal.commitCount
        let auditCommits0 = auditCommits(engine)
        let cpu0 = processCPU()
        let t0 = monoSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    for i in stride(from: task, to: count, by: tasks) { try await body(i) }
                }
            }
            try await group.waitForAll()
        }
        let seconds = monoSeconds() - t0
        let cpu = processCPU() - cpu0
        var record = header("http_probe", durability: durability, round: round)
        record.set("kind", kind)
        record.set("tasks", tasks)
        record.set("count", count)
        record.set("per_s", Double(count) / seconds, digits: 1)
        record.set("ms_each", seconds * 1e3 / Double(count) * Double(tasks), digits: 4)
        record.set("cpu_ms_each", (cpu.user + cpu.system) * 1e3 / Double(count), digits: 4)
        record.set("journal_commits", engine.journal.commitCount - commits0)
        record.set("audit_commits", auditCommits(engine) - auditCommits0)
        emit(record)
        say(describe(record))
    }
    let draft: @Sendable (Int) -> AuditDraft = { i in
        AuditDraft(actor: "token:bench", source: "http 127.0.0.1:1", action: "POST /v1/workflows/{type}/runs",
                   target: ThreeSteps.name, outcome: "202", detail: "probe \(i)")
    }
    try await probe("audit_append", tasks: 1, count: 1_000) { i in _ = try await client.recordAudit(draft(i)) }
    try await probe("audit_append", tasks: 16, count: 2_000) { i in _ = try await client.recordAudit(draft(i)) }
    try await probe("client_submit", tasks: 1, count: 1_000) { i in
        _ = try await client.submit(workflowType: ThreeSteps.name, input: Data("\(i)".utf8))
    }
    try await probe("client_submit", tasks: 64, count: 10_000) { i in
        _ = try await client.submit(workflowType: ThreeSteps.name, input: Data("\(i)".utf8))
    }
    await engine.shutdown()
}

/// The audit transactions the engine's SQLite journal has committed.
private func auditCommits(_ engine: Engine) -> Int { (engine.journal as? SQLiteJournal)?.auditCommitCount ?? 0 }

// MARK: - Servers

/// A `DurableServer` on a fresh journal, with a submitter token, the worker running or not, and what
/// its journal says it did: runs recorded, requests audited (read as they come, from a cursor).
private final class DurableUnderLoad {
    let engine: Engine
    let server: Serving
    let token: String
    let worker: Bool
    private var auditCursor: Int64 = 0
    private var audited = 0
    private var answered2xx = 0

    init(path: String, durability: Durability, worker: Bool, logger: Logger) async throws {
        let engine = try await Engine(journal: JournalConfiguration(path, durability: durability))
        engine.register(ThreeSteps.self)
        engine.register(StepOne())
        engine.register(StepTwo())
        engine.register(StepThree())
        var options = ServerOptions()
        options.port = 0
        let (token, tokens) = try TokenFile().adding(name: "bench", role: .submitter)
        options.tokens = tokens
        let durable = DurableServer(
            worker: engine.worker, hasCode: true, options: options, registry: PrometheusCollectorRegistry(), logger: logger)
        self.server = try await Serving.start { onRunning in
            let application = durable.application(onRunning: onRunning)
            // Shut down in reverse, as `serve` does: the server stops taking requests, then the worker.
            return worker ? [engine.worker, application] : [application]
        }
        self.engine = engine
        self.token = token
        self.worker = worker
    }

    /// Counts since the server started.
    struct Snapshot {
        var runs: [RunStatus: Int]
        var auditSeq: Int64
        /// Requests audited, and those answered with a 2xx (each of which recorded a run).
        var audited: Int
        var answered2xx: Int
        var commits: Int
        var auditCommits: Int
        var total: Int { runs.values.reduce(0, +) }
        /// Every run recorded has its request answered and audited (none is in flight).
        var settled: Bool { total == answered2xx }
    }

    func snapshot() async throws -> Snapshot {
        let runs = try await engine.countRuns(RunFilter())
        while true {
            let page = try await engine.client.auditLog(after: auditCursor, limit: 10_000)
            guard let last = page.last else { break }
            audited += page.count
            answered2xx += page.filter { $0.outcome.hasPrefix("2") }.count
            auditCursor = last.seq
        }
        return Snapshot(
            runs: runs, auditSeq: auditCursor, audited: audited, answered2xx: answered2xx,
            commits: engine.journal.commitCount, auditCommits: auditCommits(engine))
    }

    /// Waits until every run recorded has its request answered and audited, and nothing new was
    /// audited for 100 ms (wrk abandons the requests in flight when its time is up; the server
    /// finishes them). A `?wait=` request may take 10 s, so this gives up after 15 s.
    /// - Returns: the counts then.
    func waitUntilSettled() async throws -> Snapshot {
        var previous = try await snapshot()
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            let now = try await snapshot()
            if now.settled && now.auditSeq == previous.auditSeq { return now }
            previous = now
        }
        return previous
    }

    /// Checks that the runs recorded during the point are the requests answered with a 2xx, by the
    /// audit log and by wrk's count.
    func check(_ point: inout Record, before: Snapshot, after: Snapshot, wrkOK: Int, clients: Int) async throws {
        let answered2xx = after.answered2xx - before.answered2xx
        let recorded = after.total - before.total
        point.set("audit_entries", after.audited - before.audited)
        point.set("audited_2xx", answered2xx)
        point.set("runs_recorded", recorded)
        if worker {
            point.set("runs_completed", (after.runs[.completed] ?? 0) - (before.runs[.completed] ?? 0))
            point.set("runs_open_after", after.runs.filter { $0.key.isOpen }.map(\.value).reduce(0, +))
        }
        var problems: [String] = []
        if !before.settled || !after.settled {
            problems.append("\(after.total - after.answered2xx) runs recorded without an audited 2xx answer 15 s after wrk ended")
        }
        if recorded != answered2xx { problems.append("\(recorded) runs recorded but \(answered2xx) requests audited with a 2xx") }
        if recorded < wrkOK || recorded > wrkOK + clients {
            problems.append("\(recorded) runs recorded for \(wrkOK) successes counted by wrk (at most \(clients) more expected)")
        }
        if after.audited - before.audited < wrkOK { problems.append("\(after.audited - before.audited) audit entries for \(wrkOK) successes") }
        point.set("check_passed", problems.isEmpty)
        if !problems.isEmpty {
            point.set("check_problems", problems.joined(separator: "; "))
            say("http check FAILED: \(problems.joined(separator: "; "))")
        }
    }

    func stop() async throws {
        try await server.stop()
        if !worker { await engine.shutdown() }
    }
}

/// A `POST /bare` route: reads the body, answers a small JSON 202.
private func bareApplication(logger: Logger, onRunning: @escaping @Sendable (String) async -> Void) -> some ApplicationProtocol {
    let router = Router()
    router.post("/bare") { request, context -> Response in
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        return Response(
            status: .accepted, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"pending\",\"bytes\":\(body.readableBytes)}")))
    }
    return Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "bare"),
        onServerRunning: { channel in
            await onRunning("127.0.0.1:\(channel.localAddress?.port ?? 0)")
        },
        logger: logger)
}

/// Services run in a `ServiceGroup` until ``stop()``, with the address the HTTP server bound.
private struct Serving {
    let address: String
    let group: ServiceGroup
    let task: Task<Void, any Error>

    /// Builds the services (given the callback that receives the bound address) and runs them.
    static func start(_ make: (@escaping @Sendable (String) async -> Void) -> [any Service]) async throws -> Serving {
        let (addresses, continuation) = AsyncStream.makeStream(of: String.self)
        var logger = Logger(label: "durable.bench.services")
        logger.logLevel = .error
        let group = ServiceGroup(configuration: .init(
            services: make { continuation.yield($0) }.map { .init(service: $0) }, logger: logger))
        let task = Task { try await group.run() }
        let address = try await withThrowingTaskGroup(of: String?.self) { waiting in
            waiting.addTask { await addresses.first { _ in true } }
            waiting.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            defer { waiting.cancelAll() }
            return try await waiting.next() ?? nil
        }
        guard let address else {
            task.cancel()
            throw BenchError("the HTTP server did not start within 30 s")
        }
        return Serving(address: address, group: group, task: task)
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

// MARK: - wrk

/// What one wrk run reported (through the script's `done`), and the CPU it used.
struct WrkResult {
    var threads: Int
    var seconds: Double
    var requests: Int
    var unexpected: Int
    var lastUnexpected: Int
    var socketErrors: Int
    var timeouts: Int
    var p50, p75, p90, p99, max, mean: Double  // µs
    var cpuSeconds: Double

    var ok: Int { requests - unexpected }
    /// Responses other than the expected status, failed connections, reads and writes, and timeouts.
    var errors: Int { unexpected + socketErrors + timeouts }
}

/// Runs `wrk -t T -c N -d S --latency --timeout 15s -s script URL -- PATH TOKEN EXPECTED`, waiting
/// for it on a thread of its own (not one of the cooperative threads that serve the requests).
func runWrk(
    _ wrk: String, _ script: String, _ url: String, path: String, token: String, expected: Int, clients: Int, seconds: Int
) async throws -> WrkResult {
    let threads = clients == 1 ? 1 : 2
    let arguments = [
        "-t", "\(threads)", "-c", "\(clients)", "-d", "\(seconds)s", "--latency", "--timeout", "15s", "-s", script, url,
        "--", path, token, "\(expected)",
    ]
    let (status, output, cpu) = try await withCheckedThrowingContinuation {
        (continuation: CheckedContinuation<(Int32, String, Double), any Error>) in
        Thread.detachNewThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: wrk)
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            let cpu0 = childrenCPUSeconds()
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: BenchError("cannot run \(wrk): \(error)"))
                return
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let cpu = childrenCPUSeconds() - cpu0
            continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self), cpu))
        }
    }
    guard status == 0,
        let line = output.split(separator: "\n").first(where: { $0.hasPrefix("wrk-result ") }),
        let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst("wrk-result ".count).utf8)) as? [String: Any]
    else {
        throw BenchError("wrk \(arguments.joined(separator: " ")) failed (status \(status)):\n\(output)")
    }
    func number(_ key: String) -> Double { (object[key] as? NSNumber)?.doubleValue ?? 0 }
    func count(_ key: String) -> Int { (object[key] as? NSNumber)?.intValue ?? 0 }
    return WrkResult(
        threads: threads, seconds: number("duration_us") / 1e6, requests: count("requests"), unexpected: count("unexpected_status"),
        lastUnexpected: count("last_unexpected_status"),
        socketErrors: count("connect_errors") + count("read_errors") + count("write_errors"), timeouts: count("timeouts"),
        p50: number("p50_us"), p75: number("p75_us"), p90: number("p90_us"), p99: number("p99_us"), max: number("max_us"),
        mean: number("mean_us"), cpuSeconds: cpu)
}

/// CPU time (user + system) of the children waited for so far.
private func childrenCPUSeconds() -> Double {
    #if canImport(Glibc)
    let times = CPUTimes(RUSAGE_CHILDREN.rawValue)
    #else
    let times = CPUTimes(RUSAGE_CHILDREN)
    #endif
    return times.user + times.system
}

/// This process's CPU time (all threads: the servers, the engine, its writer).
private func processCPU() -> CPUTimes {
    #if canImport(Glibc)
    CPUTimes(RUSAGE_SELF.rawValue)
    #else
    CPUTimes(RUSAGE_SELF)
    #endif
}

/// User and system CPU seconds from `getrusage`.
struct CPUTimes {
    var user: Double
    var system: Double

    init(user: Double, system: Double) {
        self.user = user
        self.system = system
    }

    init(_ who: Int32) {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(__rusage_who_t(who), &usage)
        #else
        getrusage(who, &usage)
        #endif
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        self.init(user: seconds(usage.ru_utime), system: seconds(usage.ru_stime))
    }

    static func - (lhs: CPUTimes, rhs: CPUTimes) -> CPUTimes {
        CPUTimes(user: lhs.user - rhs.user, system: lhs.system - rhs.system)
    }
}

private func findWrk(_ given: String?) throws -> String {
    if let given { return given }
    for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(folder)/wrk"
        if access(path, X_OK) == 0 { return path }
    }
    throw BenchError("wrk not found in PATH: install the Debian package wrk (Scripts/bench.sh does), or pass --wrk PATH")
}

private func findScript(_ given: String?) throws -> String {
    if let given {
        guard FileManager.default.fileExists(atPath: given) else { throw BenchError("--wrk-script \(given) does not exist") }
        return given
    }
    // From the repository root, or from .build/<config>/durable-bench (two or three levels up).
    let executableFolder = (executablePath() as NSString).deletingLastPathComponent
    let candidates = ["Benchmarks/http/submit.lua"] + ["../..", "../../..", "../../../.."].map {
        URL(fileURLWithPath: executableFolder).appendingPathComponent($0).appendingPathComponent("Benchmarks/http/submit.lua").path
    }
    guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
        throw BenchError("Benchmarks/http/submit.lua not found (run from the repository root or pass --wrk-script PATH)")
    }
    return (found as NSString).standardizingPath
}

extension Record {
    /// The server process's CPU per request (user + system, and each) and the cores it kept busy.
    mutating func setServerCPU(_ cpu: CPUTimes, requests: Int, seconds: Double) {
        let n = Double(max(1, requests))
        set("server_cpu_ms_per_req", (cpu.user + cpu.system) * 1e3 / n, digits: 4)
        set("server_user_ms_per_req", cpu.user * 1e3 / n, digits: 4)
        set("server_sys_ms_per_req", cpu.system * 1e3 / n, digits: 4)
        set("server_cores_busy", (cpu.user + cpu.system) / seconds, digits: 3)
    }

    func double(_ key: String) -> Double {
        switch self[key] {
        case .double(let v)?: return v
        case .int(let v)?: return Double(v)
        default: return .nan
        }
    }

    func bool(_ key: String) -> Bool {
        if case .bool(let v)? = self[key] { return v }
        return false
    }

    func int(_ key: String) -> Int {
        if case .int(let v)? = self[key] { return v }
        return 0
    }
}
