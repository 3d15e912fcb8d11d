import ArgumentParser
import Durable
import Foundation

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a run's recorded events.")

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference


    func run() async throws {
        let engine = try options.openExisting()
        let (run, events) = try engine.history(target.id)
        if target.json {
            try Format.printJSON(events.map { event -> [String: Any] in
                var object: [String: Any] = [
                    "index": event.index, "kind": event.kind.name, "time": Format.time(event.time),
                ]
                if event.seq != 0 { object["seq"] = event.seq }
                if event.attempt != 0 { object["attempt"] = event.attempt }
                if let name = event.name { object["name"] = name }
                if let failure = event.failure {
                    object["failure"] = Format.failureJSON(failure)
                } else if event.data != nil {
                    object["data"] = Format.jsonValue(event.data)
                }
                if event.attemptDetails != nil {
                    object["attemptDetails"] = Format.jsonValue(event.meta)
                } else if let meta = event.meta {
                    object["options"] = Format.jsonValue(meta)
                }
                return object
            })
            return
        }
        print("run \(run.runID)  workflow ID \(run.workflowID)  \(run.workflowType)  \(run.status.rawValue)")
        let start = events.first?.time ?? run.createdAt
        print(Format.table(
            ["#", "+MS", "EVENT", "SEQ", "ATTEMPT", "DETAILS"],
            events.map { event in
                let details: String
                if let failure = event.failure {
                    details = failure.description
                } else {
                    details = [event.name, event.data.map { Format.payload($0) }].compactMap { $0 }.joined(separator: " ")
                }
                let attempt = event.attemptDetails.map { "[\($0.summary)]" }
                let text = [details, attempt].compactMap { $0 }.filter { !$0.isEmpty && $0 != "[]" }.joined(separator: " ")
                return [
                    "\(event.index)", "\(Int(event.time.timeIntervalSince(start) * 1000))", event.kind.name,
                    event.seq == 0 ? "" : "\(event.seq)", event.attempt == 0 ? "" : "\(event.attempt)", text,
                ]
            }))
    }
}
