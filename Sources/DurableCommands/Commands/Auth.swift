import ArgumentParser
import DurableServer
import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct Auth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the bearer tokens `serve` accepts.",
        discussion: "The token file stores each token's name, role and SHA-256 hash, never the token itself.",
        subcommands: [Add.self, List.self, Remove.self])

    struct FileOption: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("Token file (default: ./durable-tokens.json).", valueName: "file"), transform: OptionValue.nonEmpty)
        var file = "./durable-tokens.json"

        func load(missingIsEmpty: Bool) throws -> TokenFile {
            if missingIsEmpty && !FileManager.default.fileExists(atPath: file) { return TokenFile() }
            do {
                return try TokenFile.load(file)
            } catch {
                throw CommandFailure(message: "\(error)", exitCode: .badInput)
            }
        }

        /// Writes the file whole (a temporary file renamed over it), readable by its owner only.
        func save(_ tokens: TokenFile) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let temporary = file + ".tmp-\(getpid())"
            do {
                let data = try encoder.encode(tokens) + Data("\n".utf8)
                guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
                    throw CommandFailure(message: writeFailure(temporary, CocoaError(.fileWriteUnknown)), exitCode: .badInput)
                }
                guard rename(temporary, file) == 0 else {
                    let reason = String(cString: strerror(errno))
                    unlink(temporary)
                    throw CommandFailure(message: "cannot write \(file): \(reason)", exitCode: .badInput)
                }
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new token, print it once, and store its hash.",
            discussion: "Roles: reader (read runs, history, metrics; ask queries) < submitter (start runs, post events, "
                + "send signals) < operator (cancel, terminate, reset) < admin (read the audit log).")

        @Argument(help: "The token's name (recorded in the audit log as token:NAME).")
        var name: String

        @Option(help: ArgumentHelp("reader, submitter, operator or admin.", valueName: "role"))
        var role: String

        @OptionGroup var file: FileOption

        func validate() throws {
            guard Role(rawValue: role) != nil else {
                throw ValidationError("--role must be one of: \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            let tokens = try file.load(missingIsEmpty: true)
            let added: (token: String, file: TokenFile)
            do {
                added = try tokens.adding(name: name, role: Role(rawValue: role)!)
            } catch {
                throw CommandFailure(message: "\(error)", exitCode: .badInput)
            }
            try file.save(added.file)
            print(added.token)
            printProgress("token '\(name)' (\(role)) added to \(file.file); the token above is shown only this once")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tokens' names and roles.")

        @OptionGroup var file: FileOption

        func run() async throws {
            let tokens = try file.load(missingIsEmpty: false)
            print(Format.table(["NAME", "ROLE", "CREATED"], tokens.tokens.map { [$0.name, $0.role.rawValue, $0.created ?? "-"] }))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a token (a running server refuses it within a second).")

        @Argument(help: "The token's name.")
        var name: String

        @OptionGroup var file: FileOption

        func run() async throws {
            var tokens = try file.load(missingIsEmpty: false)
            guard tokens.tokens.contains(where: { $0.name == name }) else {
                throw CommandFailure(message: "no token named '\(name)' in \(file.file)", exitCode: .badInput)
            }
            tokens.tokens.removeAll { $0.name == name }
            try file.save(tokens)
            print("removed token '\(name.escaped)' from \(file.file.escaped)")
        }
    }
}
