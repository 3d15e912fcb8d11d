import ArgumentParser
import Durable
import Foundation
import Synchronization

/// `--journal PATH`, shared by every command.
struct JournalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Journal file (default: $DURABLE_JOURNAL or ./durable.sqlite).", valueName: "path"))
    var journal: String?

    var path: String {
        journal ?? ProcessInfo.processInfo.environment["DURABLE_JOURNAL"] ?? "./durable.sqlite"
    }

    /// Opens an existing journal for inspection; a missing file is an error, not a new journal.
    func openExisting(durability: Durability = .full) throws -> Engine {
        try Engine(journal: JournalConfiguration(path: path, durability: durability, createIfMissing: false))
    }

    /// Opens the journal, creating it if needed, with the application's registrations (if any).
    func openForWork(durability: Durability = .full) throws -> Engine {
        let engine = try Engine(journal: .sqlite(path: path, durability: durability))
        if let register = AppSetup.current.withLock({ $0.register }) { register(engine) }
        return engine
    }
}

/// Parses `--durability`.
func parseDurability(_ text: String) throws -> Durability {
    guard let value = Durability(rawValue: text) else {
        throw ValidationError("--durability must be one of: \(Durability.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return value
}

/// Reads `--input`: inline JSON, or `@file` for a file's contents; checks that it is JSON.
func readInput(_ argument: String) throws -> Data {
    let data: Data
    let source: String
    if argument.hasPrefix("@") {
        let path = String(argument.dropFirst())
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw CommandFailure(message: "cannot read input file \(path)", exitCode: .badInput)
        }
        data = contents
        source = "input file \(path)"
    } else {
        data = Data(argument.utf8)
        source = "--input"
    }
    do {
        _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    } catch {
        let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
        throw CommandFailure(message: "\(source) is not valid JSON: \(detail)", exitCode: .badInput)
    }
    return data
}
