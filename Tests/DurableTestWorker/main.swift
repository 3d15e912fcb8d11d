// A worker application the crash and determinism tests spawn (and SIGKILL) as a real process.
// It embeds Durable's command tree with the workflows of DurableTestSupport, and one command of its
// own (an application's subcommand, as `DurableApp.main(commands:)` takes them).
import ArgumentParser
import Durable
import DurableCommands
import DurableTestSupport

/// `count-runs [--status S] [--journal J]`: prints how many runs the journal holds.
struct CountRuns: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "count-runs", abstract: "Print how many runs the journal holds.")

    @OptionGroup var journal: JournalOptions

    @Option(help: "Only runs of this status.")
    var status: String?

    func run() async throws {
        let client = try await journal.openClient()
        let status = try status.map { text in
            guard let status = RunStatus(rawValue: text) else { throw ValidationError("'\(text)' is not a run status") }
            return status
        }
        print(try await client.runs(status: status).count)
    }
}

await DurableApp.main(name: "durable-test-worker", commands: [CountRuns.self], register: registerTestWorkflows)
