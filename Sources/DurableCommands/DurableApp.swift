public import ArgumentParser
public import Durable
public import DurableServer
import Foundation
import Logging
import Synchronization

/// Runs Durable's command tree, in the `durable` executable or in an application that embeds it.
///
/// An application passes a closure that registers its workflows and activities; it then also gets
/// the commands that need the code: `worker`, `run` and `replay`.
///
/// ```swift
/// @main struct ClaimsApp {
///     static func main() async {
///         await DurableApp.main(name: "claims") { engine in
///             engine.register(ClaimIntake.self)
///             engine.register(ScoreFraud())
///         }
///     }
/// }
/// ```
public enum DurableApp {
    /// Parses `arguments` (the process's by default), runs the command, and exits the process with
    /// the command's exit code. See `Docs/cli.md` for the codes.
    /// - Parameters:
    ///   - eventRoutes: what `serve` does with the events posted to `/v1/events` (a `--events` file
    ///     replaces them).
    ///   - commands: the application's own subcommands, beside Durable's (`claims seed`, `claims
    ///     report`); `@OptionGroup var journal: JournalOptions` gives one `--journal` as Durable's
    ///     commands take it. Their errors are printed and exit as Durable's are. A name Durable's
    ///     commands use already is refused at start, with exit 64.
    public static func main(
        name: String, arguments: [String]? = nil, eventRoutes: EventRoutes? = nil,
        commands: [any ParsableCommand.Type] = [], register: (@Sendable (DurableWorker) -> Void)? = nil
    ) async -> Never {
        AppSetup.current.withLock {
            $0 = AppSetup(name: name, register: register, eventRoutes: eventRoutes, commands: commands)
        }
        lineBufferStandardOutput()
        LoggingSystem.bootstrap { StandardErrorLogHandler(label: $0) }  // logs on stderr; results stay on stdout
        if let taken = RootCommand.takenNames(of: commands) {
            printError("the application's command name(s) \(taken.joined(separator: ", ")) are Durable's own; rename them")
            exit(64)
        }
        let code = await run(arguments ?? Array(CommandLine.arguments.dropFirst()))
        exit(code)
    }

    /// Runs one command line and returns its exit code, without exiting.
    static func run(_ arguments: [String]) async -> Int32 {
        do {
            var command = try RootCommand.parseAsRoot(arguments)
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
            return 0
        } catch let error as CommandFailure {
            printError(error.message)
            return error.exitCode.rawValue
        } catch let error as JournalError {
            let advice = switch error.code {
            case .missing: " (pass --journal PATH or set DURABLE_JOURNAL)"
            case .missingPayloadKey: " (set DURABLE_PAYLOAD_KEYS_FILE or DURABLE_PAYLOAD_KEY to a key file or key holding it)"
            default: ""
            }
            printError(error.description + advice)
            return error.isBadInput ? ExitCode.badInput.rawValue : ExitCode.journal.rawValue
        } catch let error as DurableError {
            printError(error.description)
            return ExitCode.badInput.rawValue
        } catch {
            let code = RootCommand.exitCode(for: error)
            if code == .success {  // --help, --version
                print(RootCommand.fullMessage(for: error))
                return 0
            }
            printError(RootCommand.message(for: error))
            return code.rawValue
        }
    }
}

/// Prints `error: <message>` on standard error, as one line with its control characters escaped (a
/// message may quote a hostile ID).
func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(message.escaped)\n".utf8))
}

/// The host's name and, in an application, its registrations.
struct AppSetup: Sendable {
    var name: String
    var register: (@Sendable (DurableWorker) -> Void)?
    var eventRoutes: EventRoutes?
    /// The application's own subcommands.
    var commands: [any ParsableCommand.Type] = []

    static let current = Mutex(AppSetup(name: "durable", register: nil))

    static var hasCode: Bool { current.withLock { $0.register != nil } }

    /// Registers the application's workflows and activities, if it has any.
    static func registerCode(in engine: DurableWorker) {
        if let register = current.withLock({ $0.register }) { register(engine) }
    }
}

/// Exit codes, documented in `Docs/cli.md`.
enum ExitCode: Int32 {
    /// The run failed or is held, or replay found a mismatch.
    case runFailed = 1
    /// Unknown workflow type, invalid JSON input, unknown run or workflow ID.
    case badInput = 2
    /// The journal is missing, corrupt, from a newer format, or locked by another worker.
    case journal = 3
}

/// A failure a command reports as one line, with its exit code.
struct CommandFailure: Error {
    var message: String
    var exitCode: ExitCode
}

extension JournalError {
    /// A mistake in what the user asked for (an unknown run, an unreadable history file), not a
    /// problem with the journal.
    var isBadInput: Bool { code == .runNotFound || code == .badHistoryFile || code == .invalidSetting }
}

struct RootCommand: AsyncParsableCommand {
    /// Durable's subcommands every executable has.
    static let clientCommands: [any ParsableCommand.Type] = [
        Submit.self, Runs.self, History.self, Signal.self, Cancel.self, Terminate.self, Reset.self, JournalCommand.self,
        Audit.self, Serve.self, Auth.self, Lineage.self,
    ]
    /// Durable's subcommands that need the workflow code: an application's only.
    static let codeCommands: [any ParsableCommand.Type] = [Worker.self, RunCommand.self, Replay.self, Query.self]
    /// Durable's own subcommands: all of them, whether or not this executable has workflow code.
    static var durableCommands: [any ParsableCommand.Type] { clientCommands + codeCommands }

    /// The names among `commands`' that Durable's commands have (`help` included), `nil` for none.
    static func takenNames(of commands: [any ParsableCommand.Type]) -> [String]? {
        let durable = Set(durableCommands.map { $0._commandName } + ["help"])
        let taken = commands.map { $0._commandName }.filter { durable.contains($0) }
        return taken.isEmpty ? nil : taken
    }

    static var configuration: CommandConfiguration {
        let (name, appCommands) = AppSetup.current.withLock { ($0.name, $0.commands) }
        let subcommands = clientCommands + (AppSetup.hasCode ? codeCommands : []) + appCommands
        return CommandConfiguration(
            commandName: name,
            abstract: AppSetup.hasCode
                ? "Run and inspect durable workflows of \(name)."
                : "Submit and inspect durable workflow runs in a Durable journal.",
            discussion: "The journal is ./durable.sqlite unless --journal PATH or DURABLE_JOURNAL says otherwise.",
            subcommands: subcommands)
    }
}

