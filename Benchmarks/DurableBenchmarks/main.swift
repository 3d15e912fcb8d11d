// durable-bench: the DBOS peer's workloads (../shared/peers/dbos/bench_dbos.py and crash_dbos.py)
// run on Durable. One JSON object per line on stdout, a human summary on stderr.
//
//   swift build -c release --product durable-bench
//   .build/release/durable-bench [--workloads long,seq,conc,conc_group,crash] [--durability full,fast] [--rounds N]
//   .build/release/durable-bench --workloads pools      (pool_warm_cold, pool_overhead, process_pool,
//                                                        process_warm_cold)
//   .build/release/durable-bench --workloads submit_latency   (another process's submission to its first activity)
//   .build/release/durable-bench --workloads http --durability full   (the HTTP API under wrk; see HTTP.swift)
//   .build/release/durable-bench --workloads open_runs --open-runs N --cache C   (runs waiting on signals; OpenRuns.swift)
//
// See Docs/benchmarks.md for what each workload measures.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import Foundation

let processStart = wallSeconds()

let usage = """
    usage: durable-bench [--workloads long,seq,conc,conc_group,crash] [--durability full,fast] [--rounds N]
                         [--long-steps 1000] [--seq-workflows 200] [--seq-steps 10] [--warmup 5]
                         [--conc-workflows 500] [--conc-steps 5] [--crash-steps 1000] [--kill-after 500]
                         [--payload-bytes 100] [--run-id ID] [--journal postgres://USER@HOST:PORT/DB]
           durable-bench --workloads pools  (or pool_warm_cold,pool_overhead,process_pool,process_warm_cold)
                         [--pool-calls 200] [--pool-slots 4] [--pool-warm-up-ms 500] [--pool-call-ms 5]
           durable-bench --workloads long --step-pause-us 60   (each step's thread sleeps 60 µs, as in an fsync)
           durable-bench --workloads long_steps [--long-steps 1000]   (the long workflow alone, for callgrind)
           durable-bench --workloads submit_latency [--latency-submissions 100]
           durable-bench --workloads workers [--worker-counts 1,2,4] [--scaling-runs 400] [--scaling-steps 5]
           durable-bench --workloads http [--http-seconds 10] [--http-clients 1,16,64] [--http-sync-clients 1,16]
                         [--http-skip-worker-phase] [--wrk PATH] [--wrk-script Benchmarks/http/submit.lua]
           durable-bench --workloads replay [--replay-steps 1000,10000,100000]
           durable-bench --workloads open_runs [--open-runs 10000] [--cache 1000|default] [--signal-concurrency 8]
    The pool and replay workloads run once per round, whatever --durability says (they choose their own).
    Journals go to a fresh folder under $TMPDIR (default /tmp) and are removed afterwards; with
    --journal, to a fresh schema each on that PostgreSQL server (left there).
    """

let peerWorkloads = ["long", "seq", "conc", "conc_group", "crash"]
/// `long`'s workflow alone, for `Scripts/callgrind-step.sh` (see StepCount.swift).
let countWorkloads = ["long_steps"]
let poolWorkloads = ["pool_warm_cold", "pool_overhead", "process_pool", "process_warm_cold"]
/// Workloads that run once per round, whatever --durability says.
let onceWorkloads = ["replay"]
/// Durable's own figures across processes, per durability (the peer scripts have no such workload).
let processWorkloads = ["submit_latency", "workers", "http", "open_runs"]

struct Options {
    var workloads = ["long", "seq", "conc", "conc_group", "crash"]
    var durabilities: [Durability] = [.full, .fast]
    var rounds = 1
    /// Copied into every result line, like the DBOS scripts' `--run-id`.
    var runID: String?
    var settings = WorkloadSettings()
    var pools = PoolSettings()
    var http = HTTPSettings()
    var openRuns = OpenRunsSettings()
    var child: CrashChildOptions?
    var latencyWorker = false
    var benchWorker = false
    /// `--journal postgres://…`: run the peer workloads on PostgreSQL.
    var journal: String?
}

func parse(_ arguments: [String]) throws -> Options {
    var options = Options()
    var child = CrashChildOptions()
    var isChild = false
    var rest = arguments[...]
    func value(_ flag: String) throws -> String {
        guard let next = rest.popFirst() else { throw BenchError("\(flag) needs a value") }
        return next
    }
    func int(_ flag: String) throws -> Int {
        let text = try value(flag)
        guard let n = Int(text), n >= 0 else { throw BenchError("\(flag): '\(text)' is not a count") }
        return n
    }
    func durability(_ text: String) throws -> Durability {
        guard let d = Durability(rawValue: text) else { throw BenchError("unknown durability '\(text)' (full, fast)") }
        return d
    }
    while let flag = rest.popFirst() {
        switch flag {
        case "--workloads":
            options.workloads = try value(flag).split(separator: ",").flatMap {
                $0 == "pools" ? poolWorkloads : [String($0)]
            }
            let known = peerWorkloads + poolWorkloads + processWorkloads + onceWorkloads + countWorkloads
            for w in options.workloads where !known.contains(w) {
                throw BenchError("unknown workload '\(w)' (\(known.joined(separator: ", ")), pools)")
            }
        case "--durability":
            options.durabilities = try value(flag).split(separator: ",").map { try durability(String($0)) }
        case "--rounds": options.rounds = max(1, try int(flag))
        case "--run-id": options.runID = try value(flag)
        case "--long-steps": options.settings.longSteps = try int(flag)
        case "--seq-workflows": options.settings.seqWorkflows = try int(flag)
        case "--seq-steps": options.settings.seqSteps = try int(flag)
        case "--warmup": options.settings.warmup = try int(flag)
        case "--conc-workflows": options.settings.concWorkflows = try int(flag)
        case "--conc-steps": options.settings.concSteps = try int(flag)
        case "--crash-steps": options.settings.crashSteps = try int(flag)
        case "--kill-after": options.settings.crashKillAfter = try int(flag)
        case "--latency-submissions": options.settings.latencySubmissions = max(1, try int(flag))
        case "--payload-bytes": options.settings.payloadBytes = try int(flag)
        case "--step-pause-us":
            let micros = try int(flag)
            guard micros <= 100_000 else { throw BenchError("--step-pause-us: \(micros) is more than 100000 (0.1 s)") }
            options.settings.stepPauseMicros = UInt32(micros)
        case "--worker-counts":
            options.settings.workerCounts = try value(flag).split(separator: ",").map {
                guard let n = Int($0), (1...64).contains(n) else { throw BenchError("--worker-counts: '\($0)' is not 1 to 64") }
                return n
            }
        case "--scaling-runs": options.settings.scalingRuns = max(1, try int(flag))
        case "--scaling-steps": options.settings.scalingSteps = max(1, try int(flag))
        case "--replay-steps":
            options.settings.replaySteps = try value(flag).split(separator: ",").map {
                guard let n = Int($0), n > 0 else { throw BenchError("--replay-steps: '\($0)' is not a positive count") }
                return n
            }
        case "--open-runs": options.openRuns.runs = max(1, try int(flag))
        case "--signal-concurrency": options.openRuns.signalConcurrency = max(1, try int(flag))
        case "--cache":
            let text = try value(flag)
            options.openRuns.cache = text == "default" ? nil : try {
                guard let n = Int(text), n >= 0 else { throw BenchError("--cache: '\(text)' is not a count or 'default'") }
                return n
            }()
        case "--http-seconds": options.http.seconds = max(1, try int(flag))
        case "--http-clients", "--http-sync-clients":
            let counts = try value(flag).split(separator: ",").map {
                guard let n = Int($0), (1...1_000).contains(n) else { throw BenchError("\(flag): '\($0)' is not 1 to 1000") }
                return n
            }
            if flag == "--http-clients" { options.http.clients = counts } else { options.http.syncClients = counts }
        case "--http-skip-worker-phase": options.http.workerPhase = false
        case "--wrk": options.http.wrk = try value(flag)
        case "--wrk-script": options.http.script = try value(flag)
        case "--pool-calls": options.pools.calls = max(1, try int(flag))
        case "--pool-slots": options.pools.slots = max(1, try int(flag))
        case "--pool-warm-up-ms": options.pools.warmUpMs = try int(flag)
        case "--pool-call-ms": options.pools.callMs = try int(flag)
        // The crash test's child processes (hidden).
        case "--crash-child": isChild = true; child.phase = try value(flag)
        case "--latency-worker": isChild = true; options.latencyWorker = true
        case "--bench-worker": isChild = true; options.benchWorker = true
        case "--journal":  // the crash and latency children's journal; at the top, the server to use
            child.journal = try value(flag)
            options.journal = child.journal
        case "--side": child.side = try value(flag)
        case "--result": child.result = try value(flag)
        case "--steps": child.steps = try int(flag)
        case "--durability-child": child.durability = try durability(try value(flag))
        case "-h", "--help":
            say(usage)
            exit(0)
        default:
            throw BenchError("unknown argument '\(flag)'\n\(usage)")
        }
    }
    if isChild {
        child.killAfter = options.settings.crashKillAfter
        options.child = child
    }
    return options
}

func describe(_ r: Record) -> String {
    func n(_ key: String) -> String {
        switch r[key] {
        case .double(let v)?: return String(format: v >= 100 ? "%.0f" : "%.3g", v)
        case .int(let v)?: return "\(v)"
        case .bool(let v)?: return v ? "yes" : "no"
        case .string(let v)?: return v
        default: return "?"
        }
    }
    let d = n("durability")
    switch n("phase") {
    case "long_steps":
        return "long_steps [\(d)] \(n("steps")) steps: \(n("per_step_ms")) ms/step, CPU \(n("cpu_ms_per_step")) ms/step"
    case "long":
        return "long  [\(d)] \(n("steps")) steps: \(n("per_step_ms")) ms/step, CPU \(n("cpu_ms_per_step")) ms/step, \(n("commits_per_step")) commits/step"
    case "seq":
        return "seq   [\(d)] \(n("workflows")) × \(n("steps_per_wf")) steps: \(n("workflows_per_s")) workflows/s, "
            + "\(n("steps_per_s")) steps/s, p50 \(n("lat_p50_ms")) ms, p99 \(n("lat_p99_ms")) ms, CPU \(n("cpu_ms_per_step")) ms/step"
    case "conc", "conc_group":
        return "\(n("phase")) [\(d)] \(n("workflows")) × \(n("steps_per_wf")) steps at once: all done in \(n("total_s")) s "
            + "(starts took \(n("start_all_s")) s), \(n("activations_per_commit")) activations/commit, errors \(n("errors"))"
    case "crash_recovery":
        return "crash [\(d)] spawn of recovery process to result \(n("b_spawn_to_result_s")) s, "
            + "re-run in B \(n("exec_in_b")) steps, completed steps re-run \(n("completed_steps_reexecuted")), "
            + "result ok \(n("result_ok")), pass \(n("pass"))"
    case "pool_warm_cold":
        return "pool  \(n("calls")) calls, \(n("slots")) slots, model warm-up \(n("warm_up_ms")) ms, call \(n("call_ms")) ms: "
            + "warm pool \(n("warm_total_s")) s (\(n("warm_per_call_ms")) ms/call, \(n("warm_loads")) loads, floor "
            + "\(n("warm_floor_s")) s), cold starts \(n("cold_total_s")) s (\(n("cold_loads")) loads): cold/warm \(n("cold_to_warm_ratio"))×"
    case "process_warm_cold":
        return "proc  \(n("calls")) calls, \(n("slots")) Python processes, warm-up \(n("warm_up_ms")) ms, call \(n("call_ms")) ms: "
            + "warm pool \(n("warm_total_s")) s (\(n("warm_per_call_ms")) ms/call, \(n("warm_processes")) processes, floor "
            + "\(n("warm_floor_s")) s), a process per call \(n("cold_total_s")) s (\(n("cold_processes")) processes): "
            + "cold/warm \(n("cold_to_warm_ratio"))×"
    case "pool_overhead":
        return "pool  overhead: acquire+release \(n("acquire_release_us")) µs; per step pooled \(n("pooled_us_per_step")) µs, "
            + "unpooled \(n("unpooled_us_per_step")) µs, difference \(n("pool_cost_us_per_step")) µs"
    case "process_pool":
        return "proc  round trip to a Python echo worker: mean \(n("round_trip_mean_us")) µs, p50 \(n("round_trip_p50_us")) µs, "
            + "p99 \(n("round_trip_p99_us")) µs; per step via process \(n("process_pool_us_per_step")) µs, in-process "
            + "\(n("in_process_us_per_step")) µs, difference \(n("process_cost_us_per_step")) µs"
    case "workers":
        return "workers [\(d)] \(n("workers")) worker process(es), \(n("runs")) × \(n("steps_per_run")) steps: "
            + "\(n("total_s")) s, \(n("steps_per_s")) steps/s"
    case "submit_latency":
        return "pick-up [\(d)] submit → first activity in an idle worker (another process), \(n("submissions")) runs: "
            + "p50 \(n("p50_ms")) ms, p90 \(n("p90_ms")) ms, p99 \(n("p99_ms")) ms, max \(n("max_ms")) ms (target p50 < 50 ms)"
    case "http":
        let errors = r["errors"].map { if case .int(let v) = $0 { v } else { 0 } } ?? 0
        return "http  [\(d)] \(n("target")) \(n("clients")) client(s): \(n("ok_per_s")) ok/s, p50 \(n("p50_ms")) ms, "
            + "p99 \(n("p99_ms")) ms, max \(n("max_ms")) ms; server CPU \(n("server_cpu_ms_per_req")) ms/req, wrk CPU "
            + "\(n("wrk_cpu_ms_per_req")) ms/req" + (r["runs_recorded"] == nil ? "" : "; runs recorded \(n("runs_recorded")), "
            + "audited 2xx \(n("audited_2xx")), check \(n("check_passed")); \(n("requests_per_journal_commit")) requests per "
            + "journal commit, \(n("audit_commits")) audit commits of their own")
            + (errors > 0 ? "; ERRORS \(errors) (unexpected status \(n("unexpected_status")), socket \(n("socket_errors")), "
                + "timeouts \(n("timeouts")))" : "")
    case "open_runs":
        return "open  [\(d)] \(n("runs")) runs waiting, cache \(n("cache")): starts \(n("starts_per_s"))/s, RSS \(n("rss_after_starts_mb")) MB "
            + "(\(n("bytes_per_waiting_run")) B/run, \(n("live_runs")) live); signal → done evicted p50 \(n("wake_evicted_p50_ms")) ms "
            + "p99 \(n("wake_evicted_p99_ms")) ms (\(n("signalled_evicted")) runs), cached p50 \(n("wake_cached_p50_ms")) ms p99 "
            + "\(n("wake_cached_p99_ms")) ms (\(n("signalled_cached")) runs); all \(n("signalled")) signalled done in "
            + "\(n("all_signalled_done_s")) s; restart: ready \(n("restart_ready_s")) s, first new run done "
            + "\(n("restart_first_run_done_s")) s, an evicted run woken \(n("restart_wake_ms")) ms; pass \(n("pass"))"
    case "http_probe":
        return "probe [\(d)] \(n("kind")) from \(n("tasks")) task(s): \(n("per_s"))/s (\(n("ms_each")) ms each, CPU "
            + "\(n("cpu_ms_each")) ms each), \(n("journal_commits")) journal commits, \(n("audit_commits")) audit commits"
    case "http_summary":
        return "http  [\(d)] target (>= 5000 async submits/s with p99 <= 20 ms) met: \(n("target_met")); "
            + "recorded runs checks passed: \(n("all_checks_passed")); free of errors: \(n("errors_free"))"
    case "replay":
        return "replay \(n("steps")) steps (\(n("events")) events): \(n("replay_ms")) ms, \(n("replay_us_per_event")) µs/event, "
            + "peak memory +\(n("peak_rss_growth_mb")) MB (\(n("peak_bytes_per_event")) B/event)"
    case "journal_bytes":
        return "bytes [\(d)] \(n("workload")): \(n("events")) events, file \(n("file_bytes_per_event")) B/event, "
            + "stored payload \(n("stored_payload_bytes_per_event")) B/event, plain JSON \(n("plain_json_bytes_per_event")) B/event "
            + "(file/JSON \(n("file_to_json_ratio")))"
    default:
        return r.json
    }
}

func main() async -> Int32 {
    let options: Options
    do {
        options = try parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
        say("durable-bench: \(error)")
        return 2
    }
    if options.benchWorker, let child = options.child {
        do {
            return try await benchWorker(child)
        } catch {
            say("durable-bench worker: \(error)")
            return 1
        }
    }
    if options.latencyWorker, let child = options.child {
        do {
            return try await latencyWorker(child)
        } catch {
            say("durable-bench latency worker: \(error)")
            return 1
        }
    }
    if let child = options.child {
        do {
            return try await crashChild(child, processStart: processStart)
        } catch {
            say("durable-bench crash child (\(child.phase)): \(error)")
            return 1
        }
    }

    setOutputRunID(options.runID)
    if let journal = options.journal {
        guard JournalConfiguration(journal).backend == .postgres else {
            say("durable-bench: --journal takes a postgres:// URL (SQLite journals go to a scratch folder)")
            return 2
        }
        journalServer = journal
    }
    let folder: String
    do {
        folder = try makeScratchFolder()
    } catch {
        say("durable-bench: cannot create a scratch folder: \(error)")
        return 1
    }
    defer { try? FileManager.default.removeItem(atPath: folder) }

    var env = Record()
    env.set("phase", "env")
    env.set("engine", "durable")
    env.set("cpus", ProcessInfo.processInfo.activeProcessorCount)
    env.set("scratch_folder", folder)
    env.set("workloads", options.workloads.joined(separator: ","))
    env.set("durabilities", options.durabilities.map(\.rawValue).joined(separator: ","))
    env.set("rounds", options.rounds)
    env.set("backend", journalServer == nil ? "sqlite" : "postgres")
    env.merge(machineLoad())
    emit(env)

    var failures = 0
    for round in 1...options.rounds {
        if options.rounds > 1 { say("== durable-bench round \(round)/\(options.rounds)") }
        for workload in options.workloads where poolWorkloads.contains(workload) || onceWorkloads.contains(workload) {
            do {
                let records: [Record]
                switch workload {
                case "pool_warm_cold": records = [try await runPoolWarmCold(options.pools, folder: folder, round: round)]
                case "pool_overhead": records = [try await runPoolOverhead(options.pools, folder: folder, round: round)]
                case "process_warm_cold": records = [try await runProcessWarmCold(options.pools, folder: folder, round: round)]
                case "replay": records = try await runReplayScaling(options.settings, folder: folder, round: round)
                default: records = [try await runProcessPool(options.pools, folder: folder, round: round)]
                }
                for record in records { say(describe(record)) }
            } catch {
                failures += 1
                say("\(workload) FAILED: \(error)")
                var record = header(workload, durability: workload == "replay" ? .fast : .full, round: round)
                record.set("error", "\(error)")
                emit(record)
            }
        }
        for durability in options.durabilities {
            for workload in options.workloads where peerWorkloads.contains(workload) || processWorkloads.contains(workload)
                || countWorkloads.contains(workload) {
                let path = journalLocation("\(workload)-\(durability.rawValue)-\(round)", folder: folder)
                do {
                    let record: Record
                    switch workload {
                    case "long": record = try await runLong(options.settings, path: path, durability: durability, round: round)
                    case "long_steps":
                        record = try await runLongSteps(options.settings, path: path, durability: durability, round: round)
                    case "seq": record = try await runSeq(options.settings, path: path, durability: durability, round: round)
                    case "conc": record = try await runConc(options.settings, path: path, durability: durability, round: round)
                    case "conc_group":
                        record = try await runConc(
                            options.settings, path: path, durability: durability, round: round, concurrentStart: true)
                    case "submit_latency":
                        record = try await runSubmitLatency(options.settings, folder: folder, durability: durability, round: round)
                    case "open_runs":
                        record = try await runOpenRuns(options.openRuns, path: path, durability: durability, round: round)
                    case "http":
                        record = try await runHTTP(options.http, folder: folder, durability: durability, round: round)
                    case "workers":
                        var last = Record()
                        for count in options.settings.workerCounts {
                            last = try await runWorkerScaling(
                                options.settings, workers: count, folder: folder, durability: durability, round: round)
                            if count != options.settings.workerCounts.last { say(describe(last)) }
                        }
                        record = last
                    default: record = try runCrash(options.settings, folder: folder, durability: durability, round: round)
                    }
                    say(describe(record))
                    if case .bool(false)? = record["pass"] { failures += 1 }
                } catch {
                    failures += 1
                    say("\(workload) [\(durability.rawValue)] FAILED: \(error)")
                    var record = header(workload == "crash" ? "crash_recovery" : workload, durability: durability, round: round)
                    record.set("error", "\(error)")
                    emit(record)
                }
                removeJournalFiles(path)
            }
        }
    }
    return failures == 0 ? 0 : 1
}

exit(await main())
