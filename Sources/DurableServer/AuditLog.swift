import Durable
import DurableJournal
import Foundation
import Hummingbird
import Logging

/// Records every request that is not a GET in the journal's audit log, after it is answered: who
/// (the token's name), from where, the method and route, the target (the run, workflow type or
/// event), and the status it was answered with. A request the audit log cannot take is still
/// answered, and the failure is logged. Requests without a valid token (401) are logged, not
/// recorded: anyone who reaches the port could otherwise grow the log with synced writes.
struct AuditMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let client: DurableClient
    let logger: Logger
    /// How long the answer waits for its entry to be written (the entry is written later if the
    /// journal takes longer, and the answer goes out).
    let timeout: Duration

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard request.method != .get, request.method != .head else { return try await next(request, context) }
        do {
            let response = try await next(request, context)
            await record(request, context, status: response.status.code, problem: nil)
            return response
        } catch {
            let problem = Problem.answering(error, to: request)
            await record(request, context, status: problem.status.code, problem: problem)
            throw error
        }
    }

    private func record(_ request: Request, _ context: ServerContext, status: Int, problem: Problem?) async {
        let action = "\(request.method.rawValue) \(context.route ?? request.uri.path)"
        guard let caller = context.identity else {
            logger.notice("refused \(action) from \(context.peer): \(problem?.detail ?? "no token") (not in the audit log)")
            return
        }
        let target = context.parameters.get("id") ?? context.parameters.get("type") ?? ""
        let detail = [context.parameters.get("name").map { "name \($0)" }, problem.map { "\($0.code): \($0.detail)" }]
            .compactMap { $0 }.joined(separator: "; ")
        let entry = AuditDraft(
            actor: "token:\(caller.name)", source: "http \(context.peer)", action: action,
            target: target.removingPercentEncoding ?? target, outcome: String(status), detail: detail.isEmpty ? nil : detail)
        let client = self.client
        do {
            _ = try await withTimeout(timeout) { try await client.recordAudit(entry) }
        } catch let problem as Problem where problem.code == "timeout" {
            logger.warning("audit log: the entry for \(entry.action) by \(entry.actor) is late; it is written when the journal takes it")
        } catch {
            logger.error("audit log: cannot record \(entry.action) by \(entry.actor): \(error)")
        }
    }
}

/// Audit entries as JSON (the fields of ``AuditEntry``, as `audit list --json` prints them).
enum AuditJSON {
    static func entry(_ entry: AuditEntry) -> [String: Any] {
        [
            "seq": entry.seq, "time": RunJSON.time(entry.time), "actor": entry.actor, "source": entry.source,
            "action": entry.action, "target": entry.target, "outcome": entry.outcome, "detail": entry.detail ?? NSNull(),
            "hash": entry.hash,
        ]
    }
}
