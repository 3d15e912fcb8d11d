import Hummingbird

/// On the console's paths only: the caller is the signed-in session's (a bearer token counts for
/// nothing there), so that the audit log records console actions under the session's token name.
/// Elsewhere it does nothing: a session cookie never authorizes an API route.
struct ConsoleSessionMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let sessions: ConsoleSessions
    let tokens: TokenStore

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard Console.owns(request.uri.path) else { return try await next(request, context) }
        var context = context
        // A session whose token has since been removed from the token file (or given another role) ends.
        let cookie = request.cookies[ConsoleSessions.cookieName]?.value
        context.identity = sessions.session(cookie)?.caller
        if let caller = context.identity, !tokens.accepts(caller) {
            sessions.end(cookie)
            context.identity = nil
        }
        context.presentedUnknownToken = false
        return try await next(request, context)
    }
}
