import ArgumentParser
import Durable
import DurableServer
import Foundation

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, count and describe runs.", subcommands: [List.self, Count.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first.")

        @OptionGroup var options: JournalOptions
        @OptionGroup var filters: RunFilterOptions

        @Option(
            parsing: .unconditional,
            help: ArgumentHelp("At most this many runs, 0 to 1000000 (default: 100).", valueName: "count"),
            transform: { try OptionValue.integer($0, in: OptionLimits.limit) })
        var limit: Int = 100

        @Option(help: "newest (the default) or oldest first, by start.")
        var sort: String = "newest"

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            guard ["newest", "oldest"].contains(sort) else { throw ValidationError("--sort must be newest or oldest") }
        }

        func run() async throws {
            let filter = filters.filter(limit: limit, oldestFirst: sort == "oldest")
            let engine = try await options.openClient()
            let runs = try await engine.runs(filter)
            if json {
                try Format.printJSON(runs.map(RunJSON.run))
                return
            }
            if runs.isEmpty {
                print("no runs" + (filter == RunFilter(limit: limit) ? "" : " match"))
                return
            }
            print(Format.table(
                ["RUN ID", "WORKFLOW ID", "TYPE", "STATUS", "STARTED", "DURATION"],
                runs.map { run in
                    [run.runID, run.workflowID, run.workflowType, run.status.rawValue, Format.time(run.createdAt),
                     Format.duration(from: run.createdAt, to: run.closedAt ?? (run.status.isOpen ? nil : run.updatedAt))]
                }))
        }
    }

    struct Count: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Count runs, by status.")

        @OptionGroup var options: JournalOptions
        @OptionGroup var filters: RunFilterOptions

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let counts = try await options.openClient().countRuns(filters.filter())
            let total = counts.values.reduce(0, +)
            let byStatus = RunStatus.allCases.compactMap { status in counts[status].map { (status.rawValue, $0) } }
            if json {
                try Format.printJSON(["count": total, "byStatus": Dictionary(uniqueKeysWithValues: byStatus)] as [String: Any])
            } else {
                print("\(total)" + (byStatus.isEmpty ? "" : " (" + byStatus.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + ")"))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Describe one run: status, input, result or error, pending activities.")

        @OptionGroup var options: JournalOptions
        @OptionGroup var target: RunReference


        func run() async throws {
            let engine = try await options.openExisting(withCode: true)  // an application tells what a run waits for
            let description = try await engine.client.describe(target.id)
            let run = description.run
            if target.json {
                try Format.printJSON(RunJSON.description(description))
                return
            }
            let (result, failure, continuedAs) = RunJSON.parts(of: description.outcome)
            var lines = [
                "run ID:       \(run.runID.escaped)",
                "workflow ID:  \(run.workflowID.escaped)",
                "type:         \(run.workflowType.escaped)",
                "status:       \(run.status.rawValue)",
                "started:      \(Format.time(run.createdAt))",
                "closed:       \(Format.time(run.closedAt))",
                "events:       \(description.eventCount)",
                "input:        \(Format.payload(description.input, limit: 200))",
            ]
            if let result { lines.append("result:       \(Format.payload(result, limit: 200))") }
            if let failure { lines.append("failure:      \("\(failure)".escaped)") }
            if let continuedAs { lines.append("continued as: run \(continuedAs.escaped)") }
            if let error = run.error, failure == nil { lines.append("error:        \(error.escaped)") }
            if let error = description.historyError { lines.append("history:      \("\(error)".escaped)") }
            if let warning = description.historyWarning { lines.append("warning:      \(warning)") }
            if run.status.isOpen {
                lines.append("lease:        " + (run.leaseOwner.map {
                    "worker \($0.escaped), until \(Format.time(run.leaseExpiresAt))"
                        + ((run.leaseExpiresAt ?? .distantFuture) < Date() ? " (expired)" : "")
                } ?? "none (no worker drives it)"))
                if let awaited = description.awaitedSignals, !awaited.isEmpty {
                    lines.append("waits for:    signal " + awaited.map(\.escaped).joined(separator: ", "))
                }
                if !description.queuedSignals.isEmpty {
                    lines.append("queued:       signal " + description.queuedSignals.map(\.escaped).joined(separator: ", ") + " (not delivered yet)")
                }
            }
            for rejected in description.rejectedSignals {
                lines.append("rejected:     signal \(rejected.name.escaped) at \(Format.time(rejected.time)): \(rejected.reason.escaped)")
            }
            print(lines.joined(separator: "\n"))
            if let parent = description.parent {
                print("parent:       run \(parent.parentRunID.escaped) (seq \(parent.parentSeq))")
            }
            for child in description.children {
                print("child:        seq \(child.seq) \(child.workflowType.escaped) \(child.workflowID.escaped) run \(child.runID.escaped) \(child.state.escaped)")
            }
            for timer in description.timers where timer.state == .waiting {
                print("timer:        seq \(timer.seq) due \(Format.time(timer.due))")
            }
            if !description.activities.isEmpty {
                print("activities:")
                print(Format.table(
                    ["SEQ", "ACTIVITY", "STATE", "ATTEMPTS", "LAST ATTEMPT", "LAST FAILURE"],
                    description.activities.map { activity in
                        [
                            "\(activity.seq)", activity.activityType,
                            activity.state.rawValue + (activity.cancelRequested && activity.state == .pending ? " (cancelling)" : ""),
                            "\(activity.attempts)", activity.lastAttempt?.summary ?? "",
                            activity.lastFailure.map { "\($0)" } ?? "",
                        ]
                    }))
            }
        }
    }
}
