#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import Foundation
import Synchronization

// The crash test, modelled on the DBOS peer's crash_dbos.py.
//
// Process A runs one 1000-step workflow (steps 1...1000) on a fresh journal. Every execution of a
// step appends "<step> <pid>\n" to a side file with one write(2), so the record survives SIGKILL.
// Workflow code must be deterministic, so it cannot kill the process itself; instead the activity
// of step `killAfter + 1` (501) kills the process with SIGKILL right after writing its side-file
// record. The engine dispatches an activity only after the transaction that scheduled it has
// committed, and that transaction also holds the previous step's completion, so at the kill the
// journal holds exactly what DBOS's "between" mode leaves: 500 committed step results (plus the
// scheduling of step 501). Step 501 then runs again in process B, as in DBOS's "in-step" mode;
// the work process B has to do (steps 501...1000) is the same as in DBOS's "between" mode.
//
// Process B opens the same journal, registers the same types, calls `engine.recover()` and waits
// for the result with `engine.outcome(of:)`. The parent reports wall time from spawning B until
// B has the result, and counts executions per step from the side file.

/// The crash workflow: steps 1...n, returns the sum of the step indexes.
struct CrashSteps: Workflow {
    func run(_ ctx: WorkflowContext, input: Int) async throws -> Int {
        var acc = 0
        for i in 1...input {
            acc += try await ctx.execute(CrashStep.self, i).i
        }
        return acc
    }
}

/// Wall-clock marks taken inside a child process.
let crashMarks = Mutex<(first: Double?, last: Double?)>((nil, nil))

/// A step that leaves a record in the side file and, in process A, kills the process at `killAt`.
struct CrashStep: Activity {
    let sideFile: Int32
    let pid: Int32
    let killAt: Int?

    func run(_ ctx: ActivityContext, input: Int) async throws -> StepResult {
        let now = wallSeconds()
        crashMarks.withLock { marks in
            if marks.first == nil { marks.first = now }
            marks.last = now
        }
        let line = "\(input) \(pid)\n"
        _ = line.withCString { write(sideFile, $0, strlen($0)) }
        if input == killAt {
            kill(getpid(), SIGKILL)
        }
        return StepResult(i: input, payload: SmallStep.payload)
    }
}

let crashWorkflowID = "crash-test-workflow"

struct CrashChildOptions {
    var phase = "first"
    var journal = ""
    var side = ""
    var result = ""
    var steps = 1000
    var killAfter = 500
    var durability = Durability.full
}

/// What process B reports to the parent (wall-clock seconds since 1970).
struct ChildReport: Codable {
    var resultOK: Bool
    var status: String
    var checkpoints: Int
    var events: Int
    var resumed: Int
    var procStart: Double
    var openStart: Double
    var opened: Double
    var recovered: Double
    var firstStepExec: Double?
    var lastStepExec: Double?
    var result: Double
}

/// Process A (`first`) or B (`recover`), run through the hidden `--crash-child` flag.
func crashChild(_ o: CrashChildOptions, processStart: Double) async throws -> Int32 {
    let sideFile = open(o.side, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    guard sideFile >= 0 else { throw BenchError("cannot open \(o.side)") }
    let first = o.phase == "first"
    let tOpen = wallSeconds()
    let engine = try await Engine(journal: JournalConfiguration(o.journal, durability: o.durability))
    engine.register(CrashSteps.self)
    engine.register(CrashStep(sideFile: sideFile, pid: getpid(), killAt: first ? o.killAfter + 1 : nil))
    let tOpened = wallSeconds()
    if first {
        _ = try await engine.start(CrashSteps.self, input: o.steps, id: crashWorkflowID).result()
        say("crash child A: the process was not killed")
        return 3
    }
    let recovery = try await engine.recover()
    let tRecovered = wallSeconds()
    guard let runID = recovery.resumed.first else {
        throw BenchError("recover() resumed nothing: \(recovery)")
    }
    let outcome = try await engine.outcome(of: runID)
    let tResult = wallSeconds()
    var resultOK = false
    if case .completed(let data) = outcome, let value = try? JSONDecoder().decode(Int.self, from: data) {
        resultOK = value == o.steps * (o.steps + 1) / 2
    }
    let (run, history) = try await engine.history(runID)
    let checkpoints = history.filter { $0.kind == .activityCompleted }.count
    await engine.shutdown()
    let marks = crashMarks.withLock { $0 }
    let report = ChildReport(
        resultOK: resultOK, status: run.status.rawValue, checkpoints: checkpoints, events: history.count,
        resumed: recovery.resumed.count, procStart: processStart, openStart: tOpen, opened: tOpened,
        recovered: tRecovered, firstStepExec: marks.first, lastStepExec: marks.last, result: tResult)
    try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: o.result))
    return 0
}

/// The parent: runs A, then B, reads the side file, emits one `crash_recovery` line.
func runCrash(_ s: WorkloadSettings, folder: String, durability: Durability, round: Int) throws -> Record {
    let base = (folder as NSString).appendingPathComponent("crash-\(durability.rawValue)-\(round)")
    let journal = journalLocation("crash-\(durability.rawValue)-\(round)", folder: folder)
    let side = base + ".steps.log"
    let resultA = base + ".a.json"
    let resultB = base + ".b.json"
    removeJournalFiles(journal)
    for file in [side, resultA, resultB] { try? FileManager.default.removeItem(atPath: file) }
    defer {
        removeJournalFiles(journal)
        for file in [side, resultA, resultB] { try? FileManager.default.removeItem(atPath: file) }
    }
    let exe = executablePath()
    func arguments(_ phase: String, _ result: String) -> [String] {
        ["--crash-child", phase, "--journal", journal, "--side", side, "--result", result,
         "--steps", "\(s.crashSteps)", "--kill-after", "\(s.crashKillAfter)", "--durability-child", durability.rawValue]
    }

    let tA = monoSeconds()
    let statusA = waitFor(try spawn(exe, arguments("first", resultA)))
    let aSeconds = monoSeconds() - tA
    let aLines = readSideFile(side)

    let tSpawn = wallSeconds()
    let statusB = waitFor(try spawn(exe, arguments("recover", resultB)))
    let tExit = wallSeconds()
    let b = FileManager.default.contents(atPath: resultB).flatMap { try? JSONDecoder().decode(ChildReport.self, from: $0) }

    let lines = readSideFile(side)
    let pidA = aLines.first?.pid
    let stepsA = lines.filter { $0.pid == pidA }.map(\.step)
    let stepsB = lines.filter { $0.pid != pidA }.map(\.step)
    var counts: [Int: Int] = [:]
    for line in lines { counts[line.step, default: 0] += 1 }
    let runInBoth = Set(stepsA).intersection(stepsB).sorted()
    let completedReexecuted = runInBoth.filter { $0 <= s.crashKillAfter }
    let duplicates = counts.filter { $0.value > 1 }.keys.sorted()
    let missing = (1...s.crashSteps).filter { counts[$0, default: 0] == 0 }
    let expectedBoth = [s.crashKillAfter + 1]

    func relative(_ time: Double?) -> Double? { time.map { $0 - tSpawn } }

    var record = header("crash_recovery", durability: durability, round: round)
    record.set("steps", s.crashSteps)
    record.set("kill_after", s.crashKillAfter)
    record.set("kill_mode", "in-step \(s.crashKillAfter + 1) (journal as in DBOS 'between')")
    record.set("process_a_returncode", statusA.returnCode)
    record.set("process_a_killed_by_sigkill", statusA.signal == SIGKILL)
    record.set("process_a_wall_s", aSeconds, digits: 3)
    record.set("exec_in_a", stepsA.count)
    record.set("exec_in_b", stepsB.count)
    record.set("exec_total", lines.count)
    record["first_step_in_b"] = stepsB.min().map { .int($0) } ?? .null
    record.set("completed_steps_reexecuted", completedReexecuted.count)
    record.set("steps_run_in_both_processes", Array(runInBoth.prefix(10)))
    record.set("expected_run_in_both", expectedBoth)
    record["checkpoints_after_recovery"] = b.map { .int($0.checkpoints) } ?? .null
    record.set("duplicate_steps", Array(duplicates.prefix(10)))
    record.set("missing_steps", missing.count)
    record["recovered_status"] = b.map { .string($0.status) } ?? .null
    record["result_ok"] = b.map { .bool($0.resultOK) } ?? .null
    record.set("process_b_returncode", statusB.returnCode)
    // Seconds relative to the parent spawning process B.
    record.set("b_spawn_to_result_s", relative(b?.result))
    record.set("b_spawn_to_exit_s", tExit - tSpawn)
    record.set("b_process_start_s", relative(b?.procStart))
    record.set("b_engine_open_start_s", relative(b?.openStart))
    record.set("b_engine_opened_s", relative(b?.opened))
    record.set("b_recover_returned_s", relative(b?.recovered))
    record.set("b_first_step_exec_s", relative(b?.firstStepExec))
    record.set("b_last_step_exec_s", relative(b?.lastStepExec))
    if let b {
        record.set("b_open_to_result_s", b.result - b.openStart)
    }
    if let first = b?.firstStepExec, let last = b?.lastStepExec, last > first, stepsB.count > 1 {
        record.set("b_remaining_steps_per_s", Double(stepsB.count - 1) / (last - first), digits: 1)
    }
    let pass = statusA.signal == SIGKILL && b?.resultOK == true && missing.isEmpty
        && runInBoth == expectedBoth && completedReexecuted.isEmpty
    record.set("pass", pass)
    record.merge(machineLoad())
    emit(record)
    return record
}

private func readSideFile(_ path: String) -> [(step: Int, pid: String)] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ")
        guard parts.count == 2, let step = Int(parts[0]) else { return nil }
        return (step, String(parts[1]))
    }
}
