public import ArgumentParser
public import Durable
import Foundation
import Logging
import Synchronization

/// `--journal PATH|URL`, shared by every command, and for an application's own commands
/// (``DurableApp/main(name:arguments:eventRoutes:commands:register:)``):
///
/// ```swift
/// struct Overdue: AsyncParsableCommand {
///     @OptionGroup var journal: JournalOptions
///     func run() async throws {
///         let client = try await journal.openClient()
///         for run in try await client.runs(status: .running) { print(run.workflowID) }
///     }
/// }
/// ```
public struct JournalOptions: ParsableArguments {
    public init() {}

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Journal: a SQLite file, or a postgres:// URL (default: $DURABLE_JOURNAL or ./durable.sqlite).",
            valueName: "path|url"),
        transform: OptionValue.nonEmpty)
    var journal: String?

    /// The journal's location as given: a file path or a URL.
    public var location: String {
        journal ?? ProcessInfo.processInfo.environment["DURABLE_JOURNAL"] ?? "./durable.sqlite"
    }

    /// The location for messages (a URL's password hidden).
    var path: String { JournalConfiguration(location).displayLocation }

    /// Opens an existing journal as a client, with no workflow code: a missing journal is an error,
    /// not a new one. Payload keys come from the environment (`DURABLE_PAYLOAD_KEYS_FILE`,
    /// `DURABLE_PAYLOAD_KEY`); a payload whose key is not held cannot be read.
    public func openClient() async throws -> DurableClient {
        try await openClient(encryptedPayloads: .requireKey)
    }

    /// ``openClient()``, with what reads do with a payload whose key is not held.
    func openClient(encryptedPayloads: EncryptedPayloadReading) async throws -> DurableClient {
        var configuration = JournalConfiguration(location, createIfMissing: false)
        configuration.encryptedPayloads = encryptedPayloads
        return try await DurableClient(journal: configuration)
    }

    /// Opens an existing journal with a worker that takes no work (for what needs the code or the
    /// engine room: replay, queries, resets, the signal types); a missing one is an error, not a new
    /// journal.
    /// - Parameter withCode: register the application's workflows and activities (if any).
    func openExisting(withCode: Bool) async throws -> DurableWorker {
        let engine = try await DurableWorker(journal: JournalConfiguration(location, createIfMissing: false))
        if withCode { AppSetup.registerCode(in: engine) }
        return engine
    }

    /// Opens the journal, creating it if needed, with the application's registrations (if any).
    func openForWork(
        durability: Durability = .full, worker: WorkerOptions = WorkerOptions(), logger: Logger = Logger(label: "durable")
    ) async throws -> DurableWorker {
        let engine = try await DurableWorker(
            journal: JournalConfiguration(location, durability: durability), options: worker, logger: logger)
        AppSetup.registerCode(in: engine)
        return engine
    }
}

/// `--durability`, shared by the commands that drive runs (`worker`, `run`).
struct WorkOptions: ParsableArguments {
    @Option(help: "full: fsync every commit (survives power loss); fast: survives process crashes only.")
    var durability: String = "full"

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds a run's lease lasts unless renewed, 0.3 to 86400 (default: 5); another worker takes the run "
                + "over after that (or at once when this process is gone).",
            valueName: "seconds"),
        transform: { try OptionValue.seconds($0, in: OptionLimits.lease) })
    var lease: Duration = .seconds(5)

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp("What the worker logs on standard error: trace, debug, info, notice, warning, error or critical.",
                           valueName: "level"))
    var logLevel: String = "notice"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func parsedDurability() throws -> Durability { try parseDurability(durability) }

    /// A logger at `--log-level` (the process's handler is bootstrapped once, to standard error).
    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .notice
        return logger
    }

    func workerOptions() throws -> WorkerOptions {
        WorkerOptions(leaseDuration: lease)  // in range: checked when parsed
    }
}

/// `<WorkflowType> --input … --id …`, shared by `submit` and `run`.
struct StartOptions: ParsableArguments {
    @Argument(help: "The workflow type, as registered by the worker.")
    var workflowType: String

    @Option(help: ArgumentHelp("Input as JSON, or @file to read it from a file.", valueName: "json|@file"))
    var input: String

    @Option(
        help: "Workflow ID (a business key, 1 to 1000 bytes of UTF-8); a new UUID when omitted.")
    var id: String?

    @Option(
        name: .customLong("id-reuse"),
        help: ArgumentHelp(
            "When a run with the workflow ID has ended: allow a new run, allow one only if that run did not "
                + "complete (allow-failed), reject, or terminate an open run first (terminate-if-running).",
            valueName: WorkflowIDReusePolicy.allCases.map(\.rawValue).joined(separator: "|")))
    var idReuse: String = WorkflowIDReusePolicy.allowDuplicateFailedOnly.rawValue

    func validate() throws {
        try OptionValue.checkIdentifier(workflowType, "<workflow-type>")
        if let id { try OptionValue.checkIdentifier(id, "--id") }
    }

    /// The parsed `--id-reuse`.
    func reusePolicy() throws -> WorkflowIDReusePolicy {
        guard let policy = WorkflowIDReusePolicy(rawValue: idReuse) else {
            throw ValidationError(
                "--id-reuse must be one of: \(WorkflowIDReusePolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return policy
    }
}

/// `<id> [--json]`, shared by the commands that look at one run.
struct RunReference: ParsableArguments {
    @Argument(help: "Run ID, or workflow ID (its newest run).", transform: OptionValue.nonEmpty)
    var id: String

    @Flag(help: "Print JSON.")
    var json = false
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
        // Refused before it is read: a payload over the limit would be refused anyway.
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
            size.intValue > DurableLimits.maximumPayloadBytes
        {
            throw CommandFailure(
                message: DurableError(.payloadTooLarge(what: "input file \(path)", bytes: size.intValue)).description,
                exitCode: .badInput)
        }
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

/// The filters of `runs list` and `runs count`.
struct RunFilterOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Only runs with these statuses, comma-separated (\(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))).",
            valueName: "status"),
        transform: OptionValue.statuses)
    var status: [RunStatus]?

    @Option(help: "Only runs of this workflow type.", transform: OptionValue.nonEmpty)
    var type: String?

    @Option(help: "Only runs whose workflow ID starts with this.", transform: OptionValue.nonEmpty)
    var idPrefix: String?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Only runs started at or after this time: ISO 8601 (2026-11-29T09:00:00Z, 2026-11-29) or an age "
                + "(90s, 30m, 2h, 7d; at most 100 years).",
            valueName: "time"),
        transform: { try OptionValue.time($0) })
    var startedAfter: Date?

    @Option(
        parsing: .unconditional, help: ArgumentHelp("Only runs started before this time (same forms).", valueName: "time"),
        transform: { try OptionValue.time($0) })
    var startedBefore: Date?

    func filter(limit: Int? = nil, oldestFirst: Bool = false) -> RunFilter {
        RunFilter(
            statuses: status, workflowType: type, workflowIDPrefix: idPrefix,
            startedAfter: startedAfter, startedBefore: startedBefore, oldestFirst: oldestFirst, limit: limit)
    }
}
