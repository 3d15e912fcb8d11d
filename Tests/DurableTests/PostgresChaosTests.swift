import Durable
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Several hosts on one PostgreSQL journal, with everything failing that can: three worker processes
/// that present different hosts (so a dead one is noticed only by its leases expiring, as across
/// machines), SIGKILLed and restarted at random, and the database server itself stopped (fast
/// shutdown) and started again in the middle of the runs.
@Suite(.serialized, .timeLimit(.minutes(4))) struct PostgresChaosTests {
    /// `Scripts/postgres.sh` of this checkout, and the test cluster's folder (Scripts/test.sh sets it).
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Scripts/postgres.sh").path
    static let clusterFolder = ProcessInfo.processInfo.environment["DURABLE_TEST_POSTGRES_DIR"]

    @Test(.enabled(if: TestBackend.current == .postgres && clusterFolder != nil,
                   "needs DURABLE_TEST_BACKEND=postgres and the test cluster's DURABLE_TEST_POSTGRES_DIR"))
    func everyRunCompletesOnceThroughKillsOnThreeHostsAndADatabaseRestart() async throws {
        let worker = try productPath("durable-test-worker")
        let journal = temporaryJournal("chaos")
        let side = temporaryPath("chaos-side")
        let runs = 60
        func start(_ host: String) throws -> Child {
            try Child(
                worker, ["worker", "--quiet", "--durability", "fast", "--lease", "1", "--journal", journal],
                environment: ["SIDE_FILE": side, "STEP_MS": "40", "DURABLE_WORKER_HOST": host])
        }
        let hosts = ["host-a", "host-b", "host-c"]
        let submitter = try await Engine(journal: JournalConfiguration(journal, durability: .fast))
        var workers = try hosts.map(start)
        var outputs: [String] = []
        var submitted = 0
        var kills = 0
        var restarted = false
        var restart: Child?
        var generator = SystemRandomNumberGenerator()
        let begin = ContinuousClock.now
        let deadline = begin + .seconds(180)
        while true {
            try #require(ContinuousClock.now < deadline, "runs did not finish in time")
            if submitted < runs {
                for i in submitted..<submitted + 10 {
                    _ = try await submitter.submit(workflowType: "CrashFlow", input: Data(#"{"tag":"c\#(i)"}"#.utf8), id: "c\(i)")
                }
                submitted += 10
            } else if !restarted {
                // All submitted, many in flight: the database goes away for two seconds (fast shutdown,
                // then a start), while the workers go on being killed. Not waited for here: the server
                // process it starts would be this process's grandchild.
                restart = try Child("/bin/bash", [Self.script, "restart", try #require(Self.clusterFolder)],
                                    environment: ["DURABLE_PG_DOWN_SECONDS": "2"])
                restarted = true
            } else {
                // The submitter may itself find the server away for a moment after the restart.
                let open = try? await submitter.countRuns(RunFilter(statuses: [.pending, .running])).values.reduce(0, +)
                if open == 0 { break }
            }
            try await Task.sleep(for: .milliseconds(Int64.random(in: 600...1_500, using: &generator)))
            // A worker started while the server was down stops at once with a clear error: start it again.
            for (i, child) in workers.enumerated() where !child.process.isRunning {
                let exit = try await child.wait()
                #expect(exit.status != 0 && child.output.contains("cannot reach PostgreSQL at 127.0.0.1"),
                        "a worker stopped by itself: \(child.output)")
                outputs.append(child.output)
                workers[i] = try start(hosts[i])
            }
            let victim = Int.random(in: 0..<workers.count, using: &generator)
            workers[victim].kill(SIGKILL)
            _ = try await workers[victim].wait()
            outputs.append(workers[victim].output)
            workers[victim] = try start(hosts[victim])
            kills += 1
        }
        try await Task.sleep(for: .milliseconds(500))
        for child in workers {
            let stoppedByItself = !child.process.isRunning
            child.kill(SIGTERM)
            let exit = try await child.wait()
            if stoppedByItself {  // started while the server was down
                #expect(child.output.contains("cannot reach PostgreSQL at 127.0.0.1"), "\(child.output)")
            } else {
                #expect(exit.reason == .exit && exit.status == 0, "worker did not stop cleanly: \(child.output)")
            }
            outputs.append(child.output)
        }
        #expect(restarted && kills >= 5, "killed \(kills) times, restarted the server: \(restarted)")
        #expect(restart?.output.contains("error") == false, "the restart: \(restart?.output ?? "")")

        let all = try await submitter.runs()
        #expect(all.count == runs, "each workflow ID ran once")
        let records = sideRecords(side)
        for run in all {
            #expect(run.status == .completed, "\(run.workflowID) is \(run.status): \(run.error ?? "")")
            let (_, events) = try await submitter.history(run.runID)
            let tag = run.workflowID
            let expected = "\(tag)-a!,\(tag)-side!,\(tag)-b1x!\(tag)-b1y!,\(tag)-b2x!\(tag)-b2y!,\(tag)-b3x!\(tag)-b3y!,\(tag)-z! #8"
            #expect(try await submitter.describe(run.runID).outcome == .completed(Data("\"\(expected)\"".utf8)))
            checkAttempts(records.filter { $0.label.hasPrefix(tag + "-") }, events, run: tag)
        }
        // A worker that lived through the outage said so once, and once that the server was back.
        let lost = outputs.map { $0.components(separatedBy: "lost the connection to PostgreSQL").count - 1 }
        let failed = outputs.map { $0.components(separatedBy: "trying again").count - 1 }
        #expect(lost.allSatisfy { $0 <= 1 } && failed.allSatisfy { $0 <= 1 }, "outage lines per worker: \(lost) \(failed)")
        #expect(lost.contains(1), "no worker reported the outage: \(outputs.joined(separator: "\n---\n"))")
        await submitter.shutdown()
    }
}
