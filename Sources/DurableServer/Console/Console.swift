import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The web console under `/ui/`: server-rendered pages over the same client, worker and journal as the
/// API, for people signed in with a token (a session cookie; see ``ConsoleSessions``). Its routes are
/// not API routes: they are not in ``DurableServer/routes`` nor in the OpenAPI document, and a session
/// cookie authorizes nothing but them. `Docs/console.md` describes the pages.
struct Console: Sendable {
    let server: DurableServer
    let sessions: ConsoleSessions

    init(server: DurableServer, sessions: ConsoleSessions = ConsoleSessions()) {
        self.server = server
        self.sessions = sessions
    }

    /// Every console route (method and path template), for the metrics' and audit log's route label.
    static let routes: [(method: HTTPRequest.Method, path: String)] = [
        (.get, "/ui"), (.get, "/ui/assets/{file}"),
        (.get, "/ui/login"), (.post, "/ui/login"), (.post, "/ui/logout"),
        (.get, "/ui/runs"), (.get, "/ui/runs.csv"), (.get, "/ui/workers"),
        (.get, "/ui/runs/{id}"), (.get, "/ui/runs/{id}/export"), (.get, "/ui/runs/{id}/events"),
        (.get, "/ui/runs/{id}/confirm"), (.post, "/ui/runs/{id}/preview"),
        (.post, "/ui/runs/{id}/signal"), (.post, "/ui/runs/{id}/cancel"), (.post, "/ui/runs/{id}/terminate"),
        (.post, "/ui/runs/{id}/reset"), (.post, "/ui/runs/{id}/query"), (.get, "/ui/**"),
    ]

    /// The console's path templates.
    static let routePaths = Set(routes.map(\.path))

    /// Whether a path is the console's (the session cookie counts there and nowhere else).
    static func owns(_ path: String) -> Bool { path == "/ui" || path.hasPrefix("/ui/") }

    /// One request to a console route, with who sent it and, for a POST, its form.
    struct Call: Sendable {
        var request: Request
        var context: ServerContext
        /// The signed-in user (for every route that needs a role).
        var viewer: Viewer?
        var form = FormBody("")
        var query: QueryParameters { QueryParameters(request) }
        /// A field of the form of a POST, or of the query string of a GET; empty counts as absent.
        func field(_ name: String) -> String? {
            request.method == .post ? form[name].flatMap { $0.isEmpty ? nil : $0 } : query[name]
        }
    }

    /// A signed-in user and the session's ID.
    struct Viewer: Sendable {
        var session: ConsoleSession
        var caller: Caller { session.caller }
        func may(_ role: Role) -> Bool { caller.role >= role }
    }

    /// The role every console action (signal, cancel, terminate, reset) needs.
    static let actionRole = Role.operator

    func addRoutes(to router: Router<ServerContext>) {
        on(router, .get, "/ui", role: nil) { _ in Self.redirect("/ui/runs") }  // `/ui/` too
        on(router, .get, "/ui/assets/{file}", role: nil) { call in
            ConsoleAssets.response(for: try call.context.parameter("file"), request: call.request)
        }
        on(router, .get, "/ui/login", role: nil) { call in loginPage(call, error: nil, status: .ok) }
        on(router, .post, "/ui/login", role: nil) { call in try await login(call) }
        on(router, .post, "/ui/logout", role: .reader) { call in logout(call) }
        on(router, .get, "/ui/runs", role: .reader) { call in try await runsPage(call) }
        on(router, .get, "/ui/runs.csv", role: .reader) { call in try await runsCSV(call) }
        on(router, .get, "/ui/workers", role: .reader) { call in try await workersPage(call) }
        on(router, .get, "/ui/runs/{id}", role: .reader) { call in try await runPage(call) }
        on(router, .get, "/ui/runs/{id}/export", role: .reader) { call in try await export(call) }
        on(router, .get, "/ui/runs/{id}/events", role: .reader, stream: true) { call in
            try await server.history(call.request, call.context)
        }
        on(router, .get, "/ui/runs/{id}/confirm", role: Self.actionRole) { call in try await confirmPage(call) }
        // The signal form posts its input (which may be too long for a URL) to be confirmed: a POST that
        // changes nothing, so its audit entry (the middleware's) names it a preview.
        on(router, .post, "/ui/runs/{id}/preview", role: Self.actionRole) { call in try await confirmPage(call) }
        for action in ConsoleAction.allCases {
            on(router, .post, "/ui/runs/{id}/\(action.rawValue)", role: Self.actionRole) { call in
                try await perform(action, call)
            }
        }
        on(router, .post, "/ui/runs/{id}/query", role: .reader) { call in try await query(call) }
        on(router, .get, "/ui/**", role: .reader) { call in
            page(call, status: .notFound, title: "Not found", body: """
                <h1>Not found</h1><p class="error" role="alert">The console has no page at this address.</p>
                <p><a href="/ui/runs">Back to the runs</a></p>
                """)
        }
    }

    /// Registers one route: finds the session (a page redirects to the login page without one), checks
    /// the role (403) and, on a POST, the form's CSRF token (403), and answers errors as an HTML page.
    private func on(
        _ router: Router<ServerContext>, _ method: HTTPRequest.Method, _ path: String, role: Role?, stream: Bool = false,
        _ handler: @escaping @Sendable (Call) async throws -> Response
    ) {
        let timeout = server.options.requestTimeout
        router.on(RouterPath(path), method: method) { request, context in
            var call = Call(request: request, context: context)
            do {
                if let role {
                    guard let session = sessions.session(request.cookies[ConsoleSessions.cookieName]?.value) else {
                        let here = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
                        return Self.redirect("/ui/login" + (method == .get ? HTML.queryString([("next", here)]) : ""))
                    }
                    call.viewer = Viewer(session: session)
                    guard session.caller.role >= role else {
                        return page(call, status: .forbidden, title: "Not allowed", body: """
                            <h1>Not allowed</h1><p class="error" role="alert">Token '\(HTML.escape(session.caller.name))' has role \
                            \(session.caller.role.rawValue); this needs \(role.rawValue) or above.</p>
                            """)
                    }
                }
                if method == .post {
                    // Read only once the session is known (an anonymous POST gets no further than its head).
                    var body = request
                    let buffer = try await body.collectBody(upTo: context.maxUploadSize)
                    call.form = FormBody(String(decoding: buffer.readableBytesView, as: UTF8.self))
                    let expected = call.viewer?.session.csrfToken ?? request.cookies[ConsoleSessions.loginCookieName]?.value ?? ""
                    guard !expected.isEmpty, ConsoleSessions.same(call.form["csrf"], expected) else {
                        return page(call, status: .forbidden, title: "Form expired", body: """
                            <h1>Form expired</h1><p class="error" role="alert">The form's CSRF token is missing or does not \
                            match this session: nothing was done. Load the page again and resend the form.</p>
                            <p><a href="\(call.viewer == nil ? "/ui/login" : "/ui/runs")">\(call.viewer == nil ? "Sign in" : "Back to the runs")</a></p>
                            """)
                    }
                }
                if stream { return try await handler(call) }
                let fixed = call
                return try await withTimeout(timeout) { try await handler(fixed) }
            } catch {
                let problem = Problem.from(error)
                if problem.status.code >= 500 {
                    server.logger.error("console: \(method.rawValue) \(request.uri.path) answered \(problem.status.code): \(problem.detail)")
                }
                // A server error's detail is for the log (written above), not for the page; a 501 (no
                // workflow code here to answer a query) is an answer, not a failure, and says why.
                let detail = problem.status.code >= 500 && problem.status != .notImplemented
                    ? "The server could not answer this request; its log says why." : problem.detail
                return page(call, status: problem.status, title: problem.status.reasonPhrase, body: """
                    <h1>\(HTML.escape(problem.status.reasonPhrase))</h1>
                    <p class="error" role="alert">\(HTML.escape(detail))</p>
                    <p><a href="/ui/runs">Back to the runs</a></p>
                    """)
            }
        }
    }

    // MARK: - Responses

    /// The headers of every console page: no caching, no framing, no sniffing, and only the console's
    /// own script and style sheet.
    static func securityHeaders() -> HTTPFields {
        [
            .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                + "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            .xContentTypeOptions: "nosniff",
            HTTPField.Name("X-Frame-Options")!: "DENY",
            HTTPField.Name("Referrer-Policy")!: "same-origin",
            .cacheControl: "no-store",
        ]
    }

    static func redirect(_ location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers = securityHeaders()
        headers[.location] = location
        headers.append(contentsOf: extra)
        return Response(status: .seeOther, headers: headers)
    }

    /// A whole page: the layout around `body` (already HTML).
    func page(
        _ call: Call, status: HTTPResponse.Status = .ok, title: String, body: String, headers extra: HTTPFields = [:],
        bodyAttributes: String = ""
    ) -> Response {
        var nav = ""
        if let viewer = call.viewer {
            let path = call.request.uri.path
            func item(_ href: String, _ text: String, current: Bool) -> String {
                "<a href=\"\(href)\"\(current ? " aria-current=\"page\"" : "")>\(text)</a>"
            }
            nav = """
                <nav aria-label="Console">\(item("/ui/runs", "Runs", current: path.hasPrefix("/ui/runs")))\
                \(item("/ui/workers", "Workers", current: path == "/ui/workers"))</nav>
                <div class="who"><span>\(HTML.escape(viewer.caller.name)) <span class="role">\(viewer.caller.role.rawValue)</span></span>
                <form method="post" action="/ui/logout">\(csrfField(call))<button type="submit" class="link">Log out</button></form></div>
                """
        }
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(HTML.escape(title)) · Durable</title>
            <link rel="icon" href="data:,">
            <link rel="stylesheet" href="\(ConsoleAssets.cssPath)">
            <script src="\(ConsoleAssets.jsPath)" defer></script>
            </head><body\(bodyAttributes)><a class="skip" href="#main">Skip to content</a>
            <header class="top"><a class="brand" href="/ui/runs">Durable</a>\(nav)</header>
            <main id="main">\(body)</main>
            </body></html>
            """
        var headers = Self.securityHeaders()
        headers[.contentType] = "text/html; charset=utf-8"
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The hidden CSRF field of a form on a signed-in page.
    func csrfField(_ call: Call) -> String {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(HTML.escape(call.viewer?.session.csrfToken ?? ""))\">"
    }
}
