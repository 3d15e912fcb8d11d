import ArgumentParser
import Durable
import DurableServer
import Foundation

struct Query: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a run a query and print the answer.",
        discussion: """
            The answer is computed by the workflow's query handler from a replay of the run's history in \
            this process (a run in progress answers as of its last recorded event). Nothing is recorded.
            """)

    @OptionGroup var options: JournalOptions
    @OptionGroup var target: RunReference

    @Argument(help: "The query's name, as the workflow registers it.", transform: OptionValue.nonEmpty)
    var name: String

    func run() async throws {
        let engine = try await options.openExisting(withCode: true)
        let answer = try await engine.client.query(target.id, name: name)
        if target.json {
            let run = try await engine.client.describe(target.id).run
            try Format.printJSON(["runID": run.runID, "query": name, "result": RunJSON.value(answer)])
        } else {
            print(String(decoding: answer, as: UTF8.self))  // JSON: no raw control characters
        }
    }
}
