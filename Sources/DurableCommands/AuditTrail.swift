#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Durable
import Foundation

/// What a control command records in the audit log of the journal it acts on (see
/// `Docs/operations.md`, "Audit log"). The command fills in ``target`` and ``detail`` as it learns
/// them (a new run's ID, what was deleted); ``audited(_:_:target:detail:_:)`` adds who, from where
/// and how it ended.
struct AuditNote {
    var target: String
    var detail: String?

    /// Adds a part to the detail, after a `; `.
    mutating func add(_ part: String) {
        detail = detail.map { $0 + "; " + part } ?? part
    }

    /// Adds the run ID the target (a workflow ID) named, unless it is the target.
    mutating func resolved(_ runID: String) {
        if runID != target { add("run \(runID)") }
    }
}

/// Does a control action and records it in the audit log of `client`'s journal: the OS user
/// (`user:<name>`), this process (`cli pid <pid> on <host>`), `action`, the note's target and detail,
/// and the outcome: `ok`, or the error's code (`runNotFound`, `badInput`) with its message added to
/// the detail.
///
/// The action's own result or error is what the caller gets: an entry that cannot be recorded is
/// reported as a warning on standard error, never instead of it.
///
/// ```swift
/// let runID = try await audited(client, "cancel", target: id, detail: "reason: \(reason)") { _ in
///     try await client.cancel(id, reason: reason)
/// }
/// ```
func audited<T>(
    _ client: DurableClient, _ action: String, target: String, detail: String? = nil,
    _ body: (inout AuditNote) async throws -> T
) async throws -> T {
    var note = AuditNote(target: target, detail: detail)
    let outcome: Result<T, any Error>
    do {
        outcome = .success(try await body(&note))
    } catch {
        outcome = .failure(error)
    }
    var draft = AuditDraft(
        actor: CommandLineIdentity.actor, source: CommandLineIdentity.source, action: action, target: note.target,
        outcome: "ok", detail: note.detail)
    if case .failure(let error) = outcome {
        let failure = CommandLineIdentity.outcome(of: error)
        draft.outcome = failure.code
        note.add(failure.message)
        draft.detail = note.detail
    }
    do {
        try await client.recordAudit(draft)
    } catch {
        let warning = "\(action) was not recorded in the audit log: \(error)"
        FileHandle.standardError.write(Data("warning: \(warning.escaped)\n".utf8))
    }
    return try outcome.get()
}

/// Who runs this command and from where, as the audit log records it.
enum CommandLineIdentity {
    /// `user:<name>` of the effective user, `user:uid <n>` when it has no name.
    static let actor: String = {
        let uid = geteuid()
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4_096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, found != nil, let name = entry.pw_name else {
            return "user:uid \(uid)"
        }
        return "user:" + String(cString: name)
    }()

    /// `cli pid 4242 on build-7`.
    static let source = "cli pid \(getpid()) on \(WorkerIdentity.systemHostName)"

    /// How a failed action is recorded: the error's code (or what kind of failure it was) and its message.
    static func outcome(of error: any Error) -> (code: String, message: String) {
        switch error {
        case let error as JournalError: (error.code.description, error.description)
        case let error as DurableError: (error.code.description, error.description)
        case let error as CommandFailure: ("\(error.exitCode)", error.message)
        case is CancellationError: ("cancelled", "interrupted")
        default: ("error", "\(error)")
        }
    }
}
