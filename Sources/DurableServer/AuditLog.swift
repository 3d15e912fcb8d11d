import Durable
import DurableJournal
import Foundation
import Hummingbird
import Logging
import Synchronization

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
        var context = context
        let slip = AuditSlip()
        context.auditSlip = slip
        do {
            let response = try await next(request, context)
            if !slip.isRecorded { await record(request, context, status: response.status.code, problem: nil) }
            return response
        } catch {
            let problem = Problem.answering(error, to: request)
            if !slip.isRecorded { await record(request, context, status: problem.status.code, problem: problem) }
            throw error
        }
    }

    private func record(_ request: Request, _ context: ServerContext, status: Int, problem: Problem?) async {
        guard let entry = context.auditDraft(request, status: status, problem: problem) else {
            // Without a caller: refused (401), or a route that needs no token (the console's sign-in,
            // which logs its own outcome).
            if status == 401 {
                logger.notice("refused \(context.auditAction(request)) from \(context.peer): \(problem?.detail ?? "no token") (not in the audit log)")
            }
            return
        }
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

/// Whether a request's audit entry was written by its handler (so the middleware writes none).
final class AuditSlip: Sendable {
    private let recorded = Atomic<Bool>(false)

    var isRecorded: Bool { recorded.load(ordering: .acquiring) }

    func markRecorded() { recorded.store(true, ordering: .releasing) }
}

extension ServerContext {
    /// The request as the audit log names it: the method and the route (or the path, for no route).
    func auditAction(_ request: Request) -> String {
        "\(request.method.rawValue) \(route ?? request.uri.path)"
    }

    /// The audit entry of the request answered with `status`: who (the token's name), from where, the
    /// method and route, the target (the run, workflow type or event) and the outcome. `nil` for a
    /// request without a valid token, which is not recorded.
    func auditDraft(_ request: Request, status: Int, problem: Problem?) -> AuditDraft? {
        guard let caller = identity else { return nil }
        let target = parameters.get("id") ?? parameters.get("type") ?? ""
        let detail = [parameters.get("name").map { "name \($0)" }, problem.map { "\($0.code): \($0.detail)" }]
            .compactMap { $0 }.joined(separator: "; ")
        return AuditDraft(
            actor: "token:\(caller.name)", source: "http \(peer)", action: auditAction(request),
            target: target.contains("%") ? target.removingPercentEncoding ?? target : target, outcome: String(status),
            detail: detail.isEmpty ? nil : detail)
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
