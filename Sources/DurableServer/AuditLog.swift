import Durable
import DurableJournal
import Foundation
import Hummingbird
import Logging

/// Records every request that is not a GET in the journal's audit log, after it is answered: who
/// (the token's name), from where, the method and route, the target (the run, workflow type or
/// event), and the status it was answered with. A request the audit log cannot take is still
/// answered, and the failure is logged.
struct AuditMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let client: DurableClient
    let logger: Logger
    /// How long the answer waits for its entry to be written (the entry is written later if the
    /// journal takes longer, and the answer goes out).
    let timeout: Duration

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard request.method != .get, request.method != .head else { return try await next(request, context) }
        let status: Int
        let response: Response
        do {
            response = try await next(request, context)
            status = response.status.code
        } catch {
            await record(request, context, outcome: Problem.from(error))
            throw error
        }
        await record(request, context, outcome: nil, status: status)
        return response
    }

    private func record(_ request: Request, _ context: ServerContext, outcome problem: Problem?, status: Int? = nil) async {
        let target = context.parameters.get("id") ?? context.parameters.get("type") ?? ""
        let detail = [context.parameters.get("name").map { "name \($0)" }, problem.map { "\($0.code): \($0.detail)" }]
            .compactMap { $0 }.joined(separator: "; ")
        let entry = AuditDraft(
            actor: context.identity.map { "token:\($0.name)" } ?? "anonymous",
            source: "http \(context.peer)",
            action: "\(request.method.rawValue) \(context.endpointPath ?? request.uri.path)",
            target: target.removingPercentEncoding ?? target,
            outcome: String(problem?.status.code ?? status ?? 0),
            detail: detail.isEmpty ? nil : detail)
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
