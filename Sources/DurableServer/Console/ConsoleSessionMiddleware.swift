import Hummingbird

/// On the console's paths only: the caller is the signed-in session's (a bearer token counts for
/// nothing there), so that the audit log records console actions under the session's token name.
/// Elsewhere it does nothing: a session cookie never authorizes an API route.
struct ConsoleSessionMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let sessions: ConsoleSessions

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard Console.owns(request.uri.path) else { return try await next(request, context) }
        var context = context
        context.identity = sessions.session(request.cookies[ConsoleSessions.cookieName]?.value)?.caller
        context.presentedUnknownToken = false
        return try await next(request, context)
    }
}
