import ArgumentParser
@testable import DurableCommands
import DurableTestSupport
import Foundation
import Testing

/// An application's own subcommands (`DurableApp.main(commands:)`), through the test worker's
/// `count-runs`, run as a built executable.
@Suite(.timeLimit(.minutes(2))) struct AppCommandTests {
    struct Named: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "worker")
    }
    struct Helpful: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "help")
    }
    struct Seed: ParsableCommand {}

    @Test func anApplicationsCommandRunsBesideDurablesWithTheSameJournalOptionAndErrors() async throws {
        let app = try productPath("durable-test-worker")
        let journal = temporaryJournal()
        for id in ["n-1", "n-2"] {
            let submit = try await runCommand(app, ["submit", "Nap", "--input", "60000", "--id", id, "--journal", journal])
            try #require(submit.status == 0, "\(submit.stderr)")
        }
        let count = try await runCommand(app, ["count-runs", "--journal", journal])
        #expect(count.status == 0 && count.stdout == "2\n", "\(count.stdout)\(count.stderr)")
        let none = try await runCommand(app, ["count-runs", "--status", "completed"], environment: ["DURABLE_JOURNAL": journal])
        #expect(none.status == 0 && none.stdout == "0\n", "DURABLE_JOURNAL as for Durable's commands: \(none.stderr)")
        let bad = try await runCommand(app, ["count-runs", "--status", "bogus", "--journal", journal])
        #expect(bad.status == 64 && bad.stderr.contains("error: 'bogus' is not a run status"), "\(bad.stderr)")
        let missing = try await runCommand(app, ["count-runs", "--journal", "/nonexistent-durable/journal.sqlite"])
        #expect(missing.status == 3 && missing.stderr == "error: no journal at /nonexistent-durable/journal.sqlite "
            + "(pass --journal PATH or set DURABLE_JOURNAL)\n", "\(missing.stderr)")
        let help = try await runCommand(app, ["--help"])
        #expect(help.stdout.contains("count-runs") && help.stdout.contains("Print how many runs the journal holds."))
        let durable = try await runCommand(try productPath("durable"), ["--help"])
        #expect(!durable.stdout.contains("count-runs"), "the code-less durable has none of an application's commands")
    }

    @Test func aNameDurableUsesIsRefused() {
        #expect(RootCommand.takenNames(of: [Named.self, Seed.self, Helpful.self]) == ["worker", "help"])
        #expect(RootCommand.takenNames(of: [Seed.self]) == nil)
        #expect(RootCommand.takenNames(of: []) == nil)
    }
}
