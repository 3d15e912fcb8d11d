import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdAuth
import NIOCore

/// A request's context: who sent it (from the bearer token), from where, and the body size it may have.
struct ServerContext: AuthRequestContext, RequestContext {
    var coreContext: CoreRequestContextStorage
    var identity: Caller?
    /// Whether a token was presented that no entry matches (to tell "bad token" from "no token").
    var presentedUnknownToken = false
    /// Where the request came from: the peer's address, `ip:port`; behind a trusted proxy that sent
    /// `X-Forwarded-For`, `CLIENT via ip:port` (``ServerOptions/trustedProxies``).
    var peer: String
    /// The peer's IP address alone.
    let peerIP: String?
    /// Set by the server for each request, from its options.
    var bodyLimit = 2 * 1024 * 1024
    /// Set by the audit middleware for a request it records: a handler that wrote the request's entry
    /// itself (with what it did, in one transaction) says so on it.
    var auditSlip: AuditSlip?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        identity = nil
        let address = source.channel.remoteAddress
        peerIP = address?.ipAddress
        peer = address.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
    }

    var maxUploadSize: Int { bodyLimit }

    /// The route template the request matched (`/v1/runs/{id}`, or a console page's `/ui/runs/{id}`),
    /// `nil` for none.
    var route: String? {
        endpointPath.flatMap { DurableServer.routePaths.contains($0) || Console.routePaths.contains($0) ? $0 : nil }
    }

    /// The caller, when its role is `role` or above.
    /// - Throws: a 401 problem without a (valid) token, a 403 problem for a role too low.
    func require(_ role: Role) throws -> Caller {
        guard let identity else {
            throw Problem(
                .unauthorized, "unauthorized",
                presentedUnknownToken ? "the bearer token is not valid" : "this route needs a bearer token (Authorization: Bearer TOKEN)",
                headers: [.wwwAuthenticate: "Bearer realm=\"durable\""])
        }
        guard identity.role >= role else {
            throw Problem(.forbidden, "forbidden", "token '\(identity.name)' has role \(identity.role.rawValue); this needs \(role.rawValue) or above")
        }
        return identity
    }
}

/// Finds the caller of each request from its `Authorization: Bearer` header, and where it came from
/// (from `X-Forwarded-For` when a trusted proxy sent it).
struct TokenAuthenticator: RouterMiddleware {
    typealias Context = ServerContext
    let tokens: TokenStore
    let bodyLimit: Int
    let trustedProxies: [AddressRange]
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        var context = context
        context.bodyLimit = bodyLimit
        if !trustedProxies.isEmpty {
            context.peer = trustedProxies.origin(
                peerIP: context.peerIP, peer: context.peer, forwardedFor: request.headers[values: Self.forwardedFor])
        }
        // `Authorization: Bearer TOKEN`, the scheme in any case (RFC 9110); another scheme is no token.
        if let field = request.headers[.authorization], let space = field.firstIndex(of: " "),
           field[..<space].lowercased() == "bearer"
        {
            context.identity = tokens.caller(presenting: String(field[space...].trimmingSpaces))
            context.presentedUnknownToken = context.identity == nil
        }
        return try await next(request, context)
    }
}

extension Substring {
    /// Without the spaces and tabs around it (what a header field may have around a token).
    var trimmingSpaces: Substring {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return self[first...last]
    }
}
