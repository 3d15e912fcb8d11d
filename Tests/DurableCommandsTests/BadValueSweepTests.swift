import DurableTestSupport
import Foundation
import Testing

/// Every numeric and duration option of every command, given values out of range or not numbers at all:
/// the command exits 64 (usage) with one line on standard error naming the option, and never dies from
/// a signal. The list of options is checked against the command tree the executable describes, so a
/// new option has to be placed here.
@Suite(.timeLimit(.minutes(2))) struct BadValueSweepTests {
    let app: String

    init() throws {
        app = try productPath("durable-test-worker")  // the application: every command, `worker` and `run` too
    }

    /// A numeric or duration option: the command line that reaches it and a value in range.
    struct NumericOption: Sendable, CustomStringConvertible {
        /// The subcommand's path, e.g. `runs list`.
        var path: String
        var option: String
        /// Arguments the command needs besides the option.
        var required: [String] = []
        var valid: String
        /// How the command exits with the valid value: 3, the journal cannot be opened (or 2, for
        /// `serve`, which reads its token file first, a missing one here).
        var validExit: Int32 = 3

        var description: String { "\(path) \(option)" }
        var key: String { "\(path) \(option)" }
    }

    static let numericOptions: [NumericOption] = [
        NumericOption(path: "worker", option: "--lease", valid: "5"),
        NumericOption(path: "run", option: "--lease", required: ["CrashFlow", "--input", "{}"], valid: "5"),
        NumericOption(path: "runs list", option: "--limit", valid: "10"),
        NumericOption(path: "runs list", option: "--started-after", valid: "2h"),
        NumericOption(path: "runs list", option: "--started-before", valid: "2026-11-29T09:00:00Z"),
        NumericOption(path: "runs count", option: "--started-after", valid: "30m"),
        NumericOption(path: "runs count", option: "--started-before", valid: "7d"),
        NumericOption(path: "journal prune", option: "--older-than", valid: "7d"),
        NumericOption(path: "reset", option: "--to", required: ["some-run"], valid: "3"),
        NumericOption(path: "audit list", option: "--after", valid: "7"),
        NumericOption(path: "audit list", option: "--limit", valid: "10"),
        NumericOption(path: "lineage", option: "--limit", required: ["--model", "fraud"], valid: "10"),
        NumericOption(path: "lineage", option: "--since", required: ["--model", "fraud@2"], valid: "7d"),
    ] + ["--port": "0", "--max-body": "4096", "--request-timeout": "2.5", "--max-wait": "30", "--max-waiters": "10", "--lease": "5"]
        .sorted { $0.key < $1.key }.map { option, valid in
            NumericOption(path: "serve", option: option, required: ["--auth", "/nonexistent-durable-sweep/tokens.json"], valid: valid, validExit: 2)
        }

    /// Every other option that takes a value (text, names, paths, JSON), by subcommand path.
    static let otherOptions: Set<String> = [
        "submit --journal", "submit --input", "submit --id", "submit --id-reuse",
        "runs list --journal", "runs list --status", "runs list --type", "runs list --id-prefix", "runs list --sort",
        "runs count --journal", "runs count --status", "runs count --type", "runs count --id-prefix",
        "runs show --journal",
        "history show --journal", "history export --journal", "history export --output",
        "signal --journal", "signal --input",
        "cancel --journal", "cancel --reason",
        "terminate --journal", "terminate --reason",
        "reset --journal", "reset --reason",
        "journal check --journal", "journal stats --journal", "journal backup --journal",
        "journal prune --journal", "journal prune --status", "journal compact --journal",
        "journal copy --from", "journal copy --to",
        "worker --journal", "worker --durability", "worker --log-level",
        "run --journal", "run --input", "run --id", "run --id-reuse", "run --durability", "run --log-level",
        "replay --journal", "replay --file", "replay --type",
        "query --journal",
        "audit list --journal",
        "lineage --journal", "lineage --model",
        "serve --journal", "serve --host", "serve --auth", "serve --events", "serve --durability", "serve --log-level",
        "serve --trusted-proxy",
        "count-runs --journal", "count-runs --status",  // the test worker's own command (AppCommandTests)
        "auth add --role", "auth add --file", "auth list --file", "auth remove --file",
    ]

    /// Too large, infinite, not a number, negative, empty; with and without a duration unit.
    static let badValues = [
        "1e300", "99999999999999999", "inf", "infs", "-inf", "nan", "nans", "-5", "-5s", "",
        "1e300d", "99999999999999999d", "1e308s", "1e17", " ", "5x",
    ]

    /// Options that take a value, `"<path> --<name>"`, from the command tree the executable dumps.
    func dumpedOptions() async throws -> Set<String> {
        let dump = try await runCommand(app, ["--experimental-dump-help"])
        try #require(dump.status == 0, "\(dump.stderr)")
        let root = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        var found: Set<String> = []
        func walk(_ command: [String: Any], path: [String]) {
            for argument in command["arguments"] as? [[String: Any]] ?? [] where argument["kind"] as? String == "option" {
                let names = (argument["names"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "long" }
                for name in names.compactMap({ $0["name"] as? String }) {
                    found.insert((path + ["--" + name]).joined(separator: " "))
                }
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] {
                if let name = sub["commandName"] as? String, name != "help" { walk(sub, path: path + [name]) }
            }
        }
        walk(try #require(root["command"] as? [String: Any]), path: [])
        return found
    }

    @Test func theSweepCoversEveryOptionThatTakesAValue() async throws {
        let dumped = try await dumpedOptions()
        let numeric = Set(Self.numericOptions.map(\.key))
        #expect(numeric.isDisjoint(with: Self.otherOptions))
        #expect(dumped.subtracting(numeric).subtracting(Self.otherOptions).isEmpty,
                "options to place in numericOptions or otherOptions: \(dumped.subtracting(numeric).subtracting(Self.otherOptions).sorted())")
        #expect(numeric.union(Self.otherOptions).subtracting(dumped).isEmpty,
                "options no command has: \(numeric.union(Self.otherOptions).subtracting(dumped).sorted())")
    }

    @Test func everyNumericOptionRefusesBadValuesWithOneLineAndExit64() async throws {
        // A journal that cannot exist: a command that accepted its value stops at once (exit 3).
        let journal = "/nonexistent-durable-sweep/journal.sqlite"
        var cases: [(NumericOption, String)] = []
        for option in Self.numericOptions {
            cases.append((option, option.valid))
            for value in Self.badValues { cases.append((option, value)) }
        }
        let app = self.app
        let results = try await withThrowingTaskGroup(of: (Int, Int32, String).self) { group in
            var results: [Int: (Int32, String)] = [:]
            var next = 0
            func add() {
                guard next < cases.count else { return }
                let (option, value) = cases[next]
                let index = next
                let arguments = option.path.split(separator: " ").map(String.init) + option.required
                    + ["--journal", journal, option.option, value]
                group.addTask {
                    let result = try await runCommand(app, arguments, timeout: .seconds(30))
                    return (index, result.status, result.stderr)
                }
                next += 1
            }
            for _ in 0..<4 { add() }  // four processes at a time
            while let (index, status, stderr) = try await group.next() {
                results[index] = (status, stderr)
                add()
            }
            return results
        }
        for (index, (option, value)) in cases.enumerated() {
            let (status, stderr) = try #require(results[index])
            let lines = stderr.split(separator: "\n", omittingEmptySubsequences: true)
            if value == option.valid {
                #expect(status == option.validExit, "\(option) \(value): a valid value gets past the parser: \(stderr)")
                continue
            }
            #expect(status == 64, "\(option) '\(value)' exited \(status): \(stderr)")
            #expect(lines.count == 1, "\(option) '\(value)': \(stderr)")
            #expect(stderr.contains(option.option), "\(option) '\(value)' is not named: \(stderr)")
        }
    }

    /// `--limit -5` (the value looks like an option) and `--limit=-5` both reach the range check.
    @Test func aNegativeValueIsCheckedAsAValueInEitherSpelling() async throws {
        for arguments in [["--limit", "-5"], ["--limit=-5"], ["--lease", "-1"]] {
            let command = arguments[0].hasPrefix("--lease") ? ["worker"] : ["runs", "list"]
            let result = try await runCommand(app, command + arguments + ["--journal", "/nonexistent-durable-sweep/j"])
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(!result.stderr.contains("Missing value"), "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("must be"), "\(arguments): \(result.stderr)")
        }
    }

    /// Options and arguments that name something are refused when empty (exit 64, one line naming them)
    /// instead of being taken as "no filter" or as a path of nothing.
    @Test func emptyNamesAndPathsAreUsageErrors() async throws {
        let journal = "/nonexistent-durable-sweep/journal.sqlite"
        let cases: [([String], String)] = [
            (["runs", "list", "--status", ""], "--status"),
            (["runs", "list", "--status", ","], "--status"),
            (["runs", "count", "--status", "completed,"], "--status"),
            (["runs", "list", "--type", ""], "--type"),
            (["runs", "list", "--id-prefix", ""], "--id-prefix"),
            (["journal", "prune", "--older-than", "1d", "--status", ""], "--status"),
            (["submit", "CrashFlow", "--input", "{}", "--id", ""], "--id"),
            (["run", "CrashFlow", "--input", "{}", "--id", ""], "--id"),
            (["submit", "", "--input", "{}"], "workflow-type"),
            (["signal", "some-run", ""], "name"),
            (["signal", "", "review"], "id"),
            (["runs", "show", ""], "id"),
            (["history", ""], "id"),
            (["history", "export", "some-run", "-o", ""], "-o <output>"),
            (["cancel", "some-run", "--reason", ""], "--reason"),
            (["terminate", "some-run", "--reason", ""], "--reason"),
            (["replay", "--file", ""], "--file"),
            (["replay", "--all", "--type", ""], "--type"),
            (["query", "some-run", ""], "name"),
            (["journal", "backup", ""], "destination"),
        ]
        for (arguments, named) in cases {
            let result = try await runCommand(app, arguments + ["--journal", journal])
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(named), "\(arguments): \(result.stderr)")
        }
        let copy = try await runCommand(app, ["journal", "copy", "--from", "", "--to", journal])
        #expect(copy.status == 64, "\(copy.stderr)")
        #expect(copy.stderr.contains("--from"), "\(copy.stderr)")
        let blankJournal = try await runCommand(app, ["runs", "list", "--journal", ""])
        #expect(blankJournal.status == 64, "\(blankJournal.stderr)")
        #expect(blankJournal.stderr.contains("--journal"), "\(blankJournal.stderr)")
    }
}
