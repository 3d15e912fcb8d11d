import DurableTestSupport
import Foundation
import GRDB
import Synchronization
import Testing

@testable import DurableJournal
@testable import DurableSQLite

/// Damages copies of a journal at random and checks that nothing traps or hangs and that every
/// change to the journal's content is reported by `journal check`.
///
/// **Content** is a logical dump of the journal: `PRAGMA application_id` and `user_version`, and
/// every row of `runs`, `events`, `signals` and `packed_histories` (each value with its storage
/// class, SQLite's `quote()`), leaving out `runs.updated_at`, `runs.lease_owner` and
/// `runs.lease_expires_at` (operational state a worker rewrites all the time), the value of
/// `runs.closed_at` (only whether it is set counts: it is checked against the status and the
/// creation time, not covered by the row's checksum, see `RowChecksum`) and the
/// `workflow_types` table (a registry every worker rewrites when it starts). A case whose file
/// cannot be dumped at all (SQLite refuses it) counts as changed. A changed journal counts as
/// **reported** when opening it throws a `JournalError`, or `check()` throws or finds it not
/// healthy (`PRAGMA integrity_check` or a problem); a flip that lands in free space changes no
/// content and may pass.
///
/// Cases: random byte flips anywhere in the file, truncations, type-confused values (TEXT, BLOB,
/// REAL, Int64.max, Int64.min, NULL in every column of every table) and field edits that keep the
/// type (a name with one letter changed, a number off by one). Each is read in process (open
/// read-only, check, list runs, read every history, queued signals, stats, then open it as a worker
/// does and claim); a sample also through the `durable` executable in a subprocess (`journal
/// check`, `runs list --json`, `history --json`), where a trap shows as a signal.
///
/// `DURABLE_FUZZ_CASES` sets the number of cases (default 240), `DURABLE_FUZZ_SEED` the seed.
@Suite(.serialized, .timeLimit(.minutes(10))) struct CorruptionFuzzTests {
    static let runs = ["r-packed", "r-closed", "r-open", "r-terminated", "r-failed"]

    /// A journal with real histories: a packed run, closed runs, an open run with a queued signal,
    /// a terminated and a failed run; checkpointed into one file.
    static func baseJournal() async throws -> String {
        let path = temporaryPath("fuzzbase")
        let journal = try SQLiteJournal(.sqlite(path: path, durability: .fast), lease: LeaseSettings(owner: "w1", durationMs: 60_000))
        let start = Date(timeIntervalSince1970: 1_750_000_000)
        func write(_ id: String, steps: Int, close: EventKind?) async throws {
            var events = [EventDraft(HistoryEvent(
                index: 0, kind: .workflowStarted, time: start, name: "Report", data: Data(#"{"customer":"\#(id)","n":3}"#.utf8)))]
            for step in 1...steps {
                let time = start.addingTimeInterval(Double(step))
                events.append(EventDraft(HistoryEvent(
                    index: events.count, kind: .activityScheduled, time: time, seq: step, name: step % 2 == 0 ? "Summarize" : "Fetch",
                    data: Data(#""chunk-\#(step)""#.utf8))))
                events.append(EventDraft(HistoryEvent(
                    index: events.count, kind: .activityCompleted, time: time, seq: step, attempt: 1,
                    data: Data(#"{"text":"\#(String(repeating: "lorem ipsum \(step) ", count: 12))"}"#.utf8),
                    meta: Data(#"{"ms":\#(step * 7),"worker":"w1"}"#.utf8))))
            }
            if let close {
                events.append(EventDraft(HistoryEvent(
                    index: events.count, kind: close, time: start.addingTimeInterval(99),
                    data: Data(close == .workflowFailed ? #"{"type":"E","message":"boom"}"#.utf8 : #""done""#.utf8))))
            }
            let status: RunStatus? = switch close {
            case .workflowCompleted: .completed
            case .workflowFailed: .failed
            default: nil
            }
            try await journal.append(JournalBatch(
                run: RunRef(runID: id),
                newRun: .init(workflowID: "wf-" + id, workflowType: "Report", seed: 42, status: .running, createdAt: start),
                events: events, statusChange: status.map { .init(status: $0, error: $0 == .failed ? "E: boom" : nil) }))
        }
        try await write("r-packed", steps: 4, close: .workflowCompleted)
        _ = try await journal.compact()
        try await write("r-closed", steps: 3, close: .workflowCompleted)
        try await write("r-open", steps: 2, close: nil)
        _ = try await journal.sendSignal(toRun: "r-open", name: "approve", data: Data(#"{"by":"ana"}"#.utf8))
        try await write("r-terminated", steps: 1, close: nil)
        let terminated = try #require(try await journal.findRun("r-terminated"))
        #expect(try await journal.terminateRun("r-terminated", reason: "stopped by ops", expected: RunLease(of: terminated), notice: nil))
        try await write("r-failed", steps: 2, close: .workflowFailed)
        try await journal.registerWorkflowTypes(["Report"])
        let report = try await journal.check()
        #expect(report.isHealthy, "\(report.problems)")
        try await journal.checkpoint()
        return path
    }

    /// The journal's content (see the suite's comment), or `nil` when SQLite cannot read it.
    static func content(_ path: String) -> String? {
        var configuration = Configuration()
        configuration.readonly = true
        guard let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return nil }
        defer { try? queue.close() }
        return try? queue.read { db -> String in
            var dump = "\(try Int64.fetchOne(db, sql: "PRAGMA application_id") ?? 0) \(try Int64.fetchOne(db, sql: "PRAGMA user_version") ?? 0)\n"
            let tables: [(String, [String])] = [
                ("runs", ["id", "run_id", "workflow_id", "workflow_type", "status", "created_at", "closed_at IS NULL", "seed", "error", "sum"]),
                ("events", ["run", "idx", "kind", "time", "seq", "attempt", "name", "data", "meta", "sum"]),
                ("signals", ["id", "run", "name", "data", "sent_at", "sum"]),
                ("packed_histories", ["run", "events", "payload_bytes", "data"]),
            ]
            for (table, columns) in tables {
                let values = columns.map { "quote(\($0))" }.joined(separator: " || ',' || ")
                let rows = try String.fetchAll(db, sql: "SELECT \(values) FROM \(table) ORDER BY 1")
                dump += table + ":\n" + rows.joined(separator: "\n") + "\n"
            }
            return dump
        }
    }

    enum Damage: CustomStringConvertible {
        case flip([(offset: Int, mask: UInt8)])
        case truncate(Int)
        case sql(String)

        var description: String {
            switch self {
            case .flip(let flips): "flip " + flips.map { "\($0.offset)^\(String($0.mask, radix: 16))" }.joined(separator: " ")
            case .truncate(let length): "truncate to \(length)"
            case .sql(let sql): sql
            }
        }
    }

    static let columns: [(table: String, key: String, columns: [String])] = [
        ("runs", "id", ["run_id", "workflow_id", "workflow_type", "status", "created_at", "updated_at", "closed_at", "seed",
                        "error", "lease_owner", "lease_expires_at", "sum"]),
        ("events", "rowid", []),  // WITHOUT ROWID: chosen by (run, idx) below
        ("signals", "id", ["run", "name", "data", "sent_at", "sum"]),
        ("packed_histories", "run", ["events", "payload_bytes", "data"]),
    ]
    static let eventColumns = ["run", "idx", "kind", "time", "seq", "attempt", "name", "data", "meta", "sum"]
    static let confusedValues = ["'text'", "X'00'", "9223372036854775807", "-9223372036854775808", "1.5", "NULL", "-1", "X''", "''"]

    static func randomDamage(_ rng: inout SplitMix64, fileSize: Int) -> Damage {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<4:
            return .flip((0..<Int.random(in: 1...3, using: &rng)).map { _ in
                (Int.random(in: 0..<fileSize, using: &rng), UInt8.random(in: 1...255, using: &rng))
            })
        case 4:
            return .truncate(Int.random(in: 0..<fileSize, using: &rng))
        case 5..<8:
            let value = confusedValues.randomElement(using: &rng)!
            return .sql(randomUpdate(&rng, value: value))
        default:
            // The same type, a different value: a letter or a digit changed, as a bad sector would.
            let edits = [
                "events SET name = 'R' || substr(name, 2)", "events SET time = time + 1", "events SET kind = kind + 1",
                "events SET seq = seq + 1", "events SET attempt = attempt + 1", "events SET idx = idx + 100",
                "events SET meta = CAST(replace(CAST(meta AS TEXT), 'w1', 'w2') AS BLOB)",
                "events SET data = substr(data, 1, 3) || X'ff' || substr(data, 5)",
                "events SET run = run + 1",
                "runs SET workflow_type = 'Rep0rt'", "runs SET seed = seed + 1", "runs SET created_at = created_at - 1",
                "runs SET error = 'E: bang'", "runs SET status = 'completed'", "runs SET status = 'running'",
                "runs SET closed_at = NULL", "runs SET workflow_id = workflow_id || 'x'", "runs SET run_id = run_id || 'x'",
                "signals SET name = 'approvf'", "signals SET sent_at = sent_at + 1", "signals SET run = run + 1",
                "packed_histories SET events = events + 1", "packed_histories SET run = run + 10",
                "packed_histories SET data = substr(data, 1, 5) || X'00' || substr(data, 7)",
            ]
            let edit = edits.randomElement(using: &rng)!
            return .sql("UPDATE \(edit) WHERE \(edit.hasPrefix("events") ? "idx" : edit.hasPrefix("packed") ? "run" : "rowid") "
                + "= (SELECT \(edit.hasPrefix("events") ? "idx" : edit.hasPrefix("packed") ? "run" : "rowid") FROM "
                + "\(edit.split(separator: " ")[0]) ORDER BY random() LIMIT 1)")
        }
    }

    static func randomUpdate(_ rng: inout SplitMix64, value: String) -> String {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0, 1:
            let column = eventColumns.randomElement(using: &rng)!
            let run = Int.random(in: 1...5, using: &rng)
            return "UPDATE events SET \(column) = \(value) WHERE run = \(run) AND idx = (SELECT idx FROM events WHERE run = \(run) "
                + "ORDER BY idx LIMIT 1 OFFSET \(Int.random(in: 0..<6, using: &rng)))"
        case 2:
            let column = columns[0].columns.randomElement(using: &rng)!
            return "UPDATE runs SET \(column) = \(value) WHERE id = \(Int.random(in: 1...5, using: &rng))"
        default:
            let (table, key, list) = [columns[2], columns[3]].randomElement(using: &rng)!
            return "UPDATE \(table) SET \(list.randomElement(using: &rng)!) = \(value) WHERE \(key) = (SELECT \(key) FROM \(table) LIMIT 1)"
        }
    }

    /// Applies `damage` to the file at `path`.
    static func apply(_ damage: Damage, to path: String) throws {
        switch damage {
        case .flip(let flips):
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            for (offset, mask) in flips { bytes[offset] ^= mask }
            try bytes.write(to: URL(fileURLWithPath: path))
        case .truncate(let length):
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(length))
            try handle.close()
        case .sql(let sql):
            let queue = try DatabaseQueue(path: path)
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: sql)
                _ = try db.checkpoint(.truncate)
            }
            try queue.close()
        }
    }

    struct Outcome {
        var reported: Bool
        var readFailures = 0
    }

    /// Reads the damaged journal as the commands and a worker do. - Returns: whether it was reported.
    static func readInProcess(_ path: String) async -> Outcome {
        var outcome = Outcome(reported: false)
        let journal: SQLiteJournal
        do {
            journal = try SQLiteJournal(JournalConfiguration(path, createIfMissing: false))
        } catch {
            #expect(error is JournalError, "open: \(error)")
            return Outcome(reported: true)
        }
        do {
            let report = try await journal.check()
            outcome.reported = !report.isHealthy
        } catch {
            #expect(error is JournalError, "check: \(error)")
            outcome.reported = true
        }
        func attempt(_ body: () async throws -> Void) async {
            do { try await body() } catch {
                #expect(error is JournalError, "\(error)")
                outcome.readFailures += 1
            }
        }
        await attempt {
            for run in try await journal.runs(RunFilter()) {
                await attempt { _ = try await journal.history(run) }
                await attempt { _ = try await journal.eventCount(run) }
                await attempt { _ = try await journal.queuedSignalNames(runID: run.runID) }
            }
        }
        for id in runs { await attempt { _ = try await journal.findRun(id) } }
        await attempt { _ = try await journal.queuedSignals() }
        await attempt { _ = try await journal.stats() }
        await attempt { _ = try await journal.countRuns(RunFilter()) }
        await attempt { _ = try await journal.knownWorkflowTypes() }
        // As a worker opens it: for writing, with a lease; claims and takes over what it can.
        await attempt {
            let worker = try SQLiteJournal(.sqlite(path: path, durability: .fast), lease: LeaseSettings(owner: "w2", durationMs: 1_000))
            _ = try await worker.claimPendingRuns(workflowTypes: ["Report"], limit: 10)
            _ = try await worker.runsToTakeOver(deadOwners: ["w1"])
            _ = try await worker.leaseOwners()
            _ = try await worker.renewLeases()
        }
        return outcome
    }

    /// The `durable` executable beside the test bundle.
    static var durable: String? {
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if folder.lastPathComponent.hasSuffix(".xctest") { folder = folder.deletingLastPathComponent() }
        let path = folder.appendingPathComponent("durable").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Runs `durable` with `arguments` (30 s at most). - Returns: the exit status, or `nil` when it
    /// ended by a signal (a trap) or had to be killed.
    static func runDurable(_ executable: String, _ arguments: [String]) async throws -> (status: Int32?, output: String) {
        let outputPath = temporaryPath("fuzzout") + ".log"
        let process = try SpawnedProcess(executable, arguments, stdout: outputPath)
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning {
            if ContinuousClock.now > deadline {
                process.terminate()
                break
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (process.terminationReason == .exit ? process.terminationStatus : nil, text)
    }

    @Test func randomDamageIsReportedAndNeverTrapsOrHangs() async throws {
        let environment = ProcessInfo.processInfo.environment
        let cases = environment["DURABLE_FUZZ_CASES"].flatMap(Int.init) ?? 240
        let seed = environment["DURABLE_FUZZ_SEED"].flatMap(UInt64.init) ?? 12
        let base = try await Self.baseJournal()
        let original = try #require(Self.content(base))
        let baseBytes = try Data(contentsOf: URL(fileURLWithPath: base))
        let executable = Self.durable
        if executable == nil { print("note: the durable executable is not built; the subprocess sample is skipped") }
        var rng = SplitMix64(seed: seed)
        var counts = (flips: 0, truncations: 0, sql: 0, changed: 0, reported: 0, unchangedPassed: 0, readFailures: 0,
                      subprocess: 0)
        for number in 0..<cases {
            let path = temporaryPath("fuzz\(number)")
            try baseBytes.write(to: URL(fileURLWithPath: path))
            let damage = Self.randomDamage(&rng, fileSize: baseBytes.count)
            switch damage {
            case .flip: counts.flips += 1
            case .truncate: counts.truncations += 1
            case .sql: counts.sql += 1
            }
            do {
                try Self.apply(damage, to: path)
            } catch {
                // A statement SQLite refused (a constraint): nothing changed.
            }
            let content = Self.content(path)
            let changed = content != original
            let snapshot = try Data(contentsOf: URL(fileURLWithPath: path))
            let outcome = await Self.readInProcess(path)
            counts.readFailures += outcome.readFailures
            if changed {
                counts.changed += 1
                if outcome.reported { counts.reported += 1 }
                #expect(outcome.reported, "case \(number) (seed \(seed)): \(damage): the content changed and check did not say so")
            } else if !outcome.reported {
                counts.unchangedPassed += 1
            }
            // A sample through the executable, from the damaged file as it was before the worker opened it.
            if let executable, number % 8 == 0 {
                counts.subprocess += 1
                try snapshot.write(to: URL(fileURLWithPath: path))
                for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
                for arguments in [["journal", "check"], ["runs", "list", "--json"], ["history", "r-open", "--json"],
                                  ["history", "r-packed", "--json"]] {
                    let (status, output) = try await Self.runDurable(executable, arguments + ["--journal", path])
                    #expect(status != nil, "case \(number) (seed \(seed)): \(damage): durable \(arguments) trapped or hung:\n\(output)")
                    if arguments == ["journal", "check"], changed {
                        #expect(status != 0, "case \(number): \(damage): durable journal check said healthy:\n\(output)")
                    }
                }
            }
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        print("""
            corruption fuzz: seed \(seed), \(cases) cases (\(counts.flips) byte flips, \(counts.truncations) truncations, \
            \(counts.sql) row edits); content changed in \(counts.changed), reported \(counts.reported); \
            unchanged and healthy \(counts.unchangedPassed); \(counts.readFailures) reads refused with a journal error; \
            \(counts.subprocess) cases also through the durable executable
            """)
    }
}
