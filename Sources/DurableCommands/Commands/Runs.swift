import ArgumentParser
import Durable
import Foundation

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List and describe runs.", subcommands: [List.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first.")

        @OptionGroup var options: JournalOptions

        @Option(help: "Only runs with this status (\(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))).")
        var status: String?

        @Option(help: "At most this many runs.")
        var limit: Int = 100

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let status = try self.status.map(parseStatus)
            let engine = try options.openExisting()
            let runs = try engine.runs(status: status, limit: limit)
            if json {
                try Format.printJSON(runs.map(Format.runJSON))
                return
            }
            if runs.isEmpty {
                print("no runs" + (status.map { " with status \($0.rawValue)" } ?? ""))
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

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Describe one run: status, input, result or error, pending activities.")

        @OptionGroup var options: JournalOptions
        @OptionGroup var target: RunReference


        func run() async throws {
            let engine = try options.openExisting()
            let description = try engine.describe(target.id)
            let run = description.run
            var result: Data?
            var failure: FailureInfo?
            var continuedAs: String?
            switch description.outcome {
            case .completed(let data): result = data
            case .failed(let info): failure = info
            case .cancelled(let reason): failure = FailureInfo(type: "Cancelled", message: reason)
            case .terminated(let reason): failure = FailureInfo(type: "Terminated", message: reason)
            case .continuedAsNew(let next): continuedAs = next
            case nil: break
            }
            if target.json {
                var object = Format.runJSON(run)
                object["eventCount"] = description.eventCount
                object["historyError"] = description.historyError.map { "\($0)" } ?? NSNull()
                object["input"] = Format.jsonValue(description.input)
                object["result"] = Format.jsonValue(result)
                object["failure"] = Format.failureJSON(failure)
                object["continuedAs"] = continuedAs ?? NSNull()
                object["activities"] = description.activities.map(Format.activityJSON)
                object["parent"] = description.parent.map {
                    ["runID": $0.parentRunID, "seq": $0.parentSeq] as [String: Any]
                } ?? NSNull()
                object["children"] = description.children.map {
                    ["seq": $0.seq, "workflowType": $0.workflowType, "workflowID": $0.workflowID, "runID": $0.runID,
                     "state": $0.state] as [String: Any]
                }
                object["timers"] = description.timers.map {
                    ["seq": $0.seq, "due": Format.time($0.due), "state": $0.state.rawValue] as [String: Any]
                }
                try Format.printJSON(object)
                return
            }
            var lines = [
                "run ID:       \(run.runID)",
                "workflow ID:  \(run.workflowID)",
                "type:         \(run.workflowType)",
                "status:       \(run.status.rawValue)",
                "started:      \(Format.time(run.createdAt))",
                "closed:       \(Format.time(run.closedAt))",
                "events:       \(description.eventCount)",
                "input:        \(Format.payload(description.input, limit: 200))",
            ]
            if let result { lines.append("result:       \(Format.payload(result, limit: 200))") }
            if let failure { lines.append("failure:      \(failure)") }
            if let continuedAs { lines.append("continued as: run \(continuedAs)") }
            if let error = run.error, failure == nil { lines.append("error:        \(error)") }
            if let error = description.historyError { lines.append("history:      \(error)") }
            print(lines.joined(separator: "\n"))
            if let parent = description.parent {
                print("parent:       run \(parent.parentRunID) (seq \(parent.parentSeq))")
            }
            for child in description.children {
                print("child:        seq \(child.seq) \(child.workflowType) \(child.workflowID) run \(child.runID) \(child.state)")
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


func parseStatus(_ text: String) throws -> RunStatus {
    guard let status = RunStatus(rawValue: text) else {
        throw ValidationError(
            "unknown status '\(text)'; use one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return status
}
