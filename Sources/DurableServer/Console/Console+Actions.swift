import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import Logging

extension Console {
    // MARK: - Signing in and out

    func loginPage(_ call: Call, error: String?, status: HTTPResponse.Status) -> Response {
        let existing: String? = call.request.cookies[ConsoleSessions.loginCookieName]?.value
        let nonce = existing.flatMap { $0.utf8.count == 64 ? $0 : nil } ?? ConsoleSessions.randomToken()
        let next = Self.safeNext(call.query["next"] ?? call.form["next"])
        let body = """
            <div class="login"><h1>Sign in to the Durable console</h1>
            \(error.map { "<p class=\"error\" role=\"alert\">\(HTML.escape($0))</p>" } ?? "")
            <form method="post" action="/ui/login">
            <input type="hidden" name="csrf" value="\(HTML.escape(nonce))">
            <input type="hidden" name="next" value="\(HTML.escape(next))">
            <label for="token">API token</label>
            <input type="password" id="token" name="token" autocomplete="off" required autofocus>
            <button type="submit">Sign in</button>
            </form>
            <p class="muted">The token is checked like a bearer token of the API (<code>durable auth add</code> makes one) and is not \
            kept: the session lives in this server's memory for \(HTML.escape(Self.lifetimeText(sessions.lifetime))), \
            until you log out, until the token is removed, or until the server restarts.</p></div>
            """
        var headers = HTTPFields()
        headers.append(HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.loginCookieName, nonce, maxAge: 3600, call)))
        return page(call, status: status, title: "Sign in", body: body, headers: headers)
    }

    func login(_ call: Call) async throws -> Response {
        let token = (call.form["token"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let caller = server.tokens.caller(presenting: token) else {
            server.logger.notice("console: a sign-in with a token that is not valid from \(call.context.peer)")
            return loginPage(call, error: token.isEmpty ? "Enter a token." : "That token is not valid.", status: .unauthorized)
        }
        // A session this browser had (a sign-in over it, as another token) ends here.
        sessions.end(call.request.cookies[ConsoleSessions.cookieName]?.value)
        let id = sessions.start(caller)
        server.logger.notice("console: token '\(caller.name)' signed in from \(call.context.peer)")
        var headers = HTTPFields()
        headers.append(HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.cookieName, id, maxAge: Int(sessions.lifetime), call)))
        headers.append(HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.loginCookieName, "", maxAge: 0, call)))
        return Self.redirect(Self.safeNext(call.form["next"]), headers: headers)
    }

    func logout(_ call: Call) -> Response {
        sessions.end(call.request.cookies[ConsoleSessions.cookieName]?.value)
        var headers = HTTPFields()
        headers.append(HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.cookieName, "", maxAge: 0, call)))
        return Self.redirect("/ui/login", headers: headers)
    }

    /// A session's lifetime in words: `8 hours`, `1 hour`, else as ``HTML/duration(_:)`` says it.
    static func lifetimeText(_ seconds: TimeInterval) -> String {
        let whole = Int(seconds)
        guard Double(whole) == seconds, whole >= 3600, whole % 3600 == 0 else { return HTML.duration(seconds) }
        return whole == 3600 ? "1 hour" : "\(whole / 3600) hours"
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the console's paths only; `Secure` when a
    /// proxy says the browser came over HTTPS (`X-Forwarded-Proto: https`).
    static func cookie(_ name: String, _ value: String, maxAge: Int, _ call: Call) -> String {
        let secure = call.request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        return "\(name)=\(value); Path=/ui; Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    /// Where to go after signing in: a console path only (never another site).
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/ui/"), !next.hasPrefix("//"), !next.contains("\\"),
              !next.unicodeScalars.contains(where: { $0.value < 0x20 })
        else { return "/ui/runs" }
        return next
    }

    // MARK: - Confirming and performing actions

    static func describe(_ event: HistoryEvent) -> String {
        var text = "#\(event.index) \(event.kind.name)"
        if event.seq != 0 { text += " seq \(event.seq)" }
        if let name = event.name { text += " \(name)" }
        return text + " at " + RunJSON.time(event.time)
    }

    /// The signal's input as JSON (an empty field is `null`).
    static func signalInput(_ text: String?) throws -> Data {
        let trimmed = (text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let data = Data((trimmed.isEmpty ? "null" : trimmed).utf8)
        guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil else {
            throw Problem.badRequest("the signal's input is not valid JSON (a string needs quotes: \"text\")")
        }
        return data
    }

    static func reason(_ text: String?, default fallback: String) throws -> String {
        let reason = (text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard reason.utf8.count <= 4_096 else { throw Problem.badRequest("a reason is at most 4096 bytes") }
        return reason.isEmpty ? fallback : reason
    }

    /// The reset point a form names, checked against the run's history.
    func resetPoint(_ text: String?, of run: RunRecord) async throws -> HistoryEvent {
        let events = try await server.client.journal.history(run, from: 0)
        let points = events.resetPoints
        guard let text, let index = Int(text), let point = points.first(where: { $0.index == index }) else {
            throw Problem(
                .badRequest, "badResetPoint",
                "event '\(text ?? "")' is not an activation boundary of this run; it can be reset to "
                    + (points.isEmpty ? "none (only its start)" : points.map { String($0.index) }.joined(separator: ", ")))
        }
        return point
    }

    /// `GET /ui/runs/{id}/confirm?action=…` (or `POST /ui/runs/{id}/preview` with the same fields): what
    /// the action will do, and the form that does it. Nothing is done here.
    func confirmPage(_ call: Call) async throws -> Response {
        guard let action = call.field("action").flatMap(ConsoleAction.init(rawValue:)) else {
            throw Problem.badRequest("action must be one of \(ConsoleAction.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let run = try await server.findRun(try call.context.parameter("id"))
        if action != .reset && !run.status.isOpen {
            throw Problem(.conflict, "runClosed", "run \(run.runID) has ended (\(run.status.rawValue)): there is nothing to \(action.rawValue)")
        }
        var fields = ""
        var what = ""
        switch action {
        case .signal:
            let name = call.field("name") ?? ""
            guard !name.isEmpty else { throw Problem.badRequest("a signal needs a name") }
            let input = try Self.signalInput(call.field("input"))
            what = "<p>Send signal <strong class=\"mono\">\(HTML.escape(name))</strong> with this input:</p>\(HTML.jsonBlock(input, label: "signal input"))"
            fields = """
                <input type="hidden" name="name" value="\(HTML.escape(name))">
                <input type="hidden" name="input" value="\(HTML.escape(String(decoding: input, as: UTF8.self)))">
                """
        case .cancel:
            what = "<p>Ask the run to cancel: its workflow code sees the cancellation and decides how to end (it may run compensations).</p>"
        case .terminate:
            what = "<p>End the run at once: no more of its code runs, pending activities are abandoned.</p>"
        case .reset:
            let point = try await resetPoint(call.field("toEvent"), of: run)
            what = """
                <p>Start a new run of workflow ID <strong class="mono">\(HTML.escape(run.workflowID))</strong> that replays this run's \
                history before event <strong class="mono">\(HTML.escape(Self.describe(point)))</strong> and continues with the \
                current code. The run is terminated first if it is open.</p>
                """
            fields = "<input type=\"hidden\" name=\"toEvent\" value=\"\(point.index)\">"
        }
        let reason = action == .signal ? "" : """
            <label for="reason">Reason (recorded; optional)</label>
            <input type="text" id="reason" name="reason" maxlength="4096" value="\(HTML.escape(call.field("reason") ?? ""))">
            """
        let body = """
            <h1>\(HTML.escape(action.verb))?</h1>
            <dl class="summary"><dt>Workflow ID</dt><dd class="mono">\(HTML.escape(run.workflowID))</dd>
            <dt>Run ID</dt><dd class="mono">\(HTML.runLink(run.runID))</dd>
            <dt>Type</dt><dd>\(HTML.escape(run.workflowType))</dd><dt>Status</dt><dd>\(HTML.status(run.status.rawValue))</dd></dl>
            \(what)
            <form method="post" action="\(HTML.escape(HTML.runURL(run.runID)))/\(action.rawValue)" class="action">
            \(csrfField(call))\(fields)\(reason)
            <div class="actions"><button type="submit" class="danger">Yes: \(HTML.escape(action.verb.lowercased()))</button>
            <a class="button secondary" href="\(HTML.escape(HTML.runURL(run.runID)))">No, back to the run</a></div>
            </form>
            """
        return page(call, title: action.verb, body: body)
    }

    /// `POST /ui/runs/{id}/ACTION`: does it through the API's calls, then shows the run. Its audit entry
    /// is written here, with what was done in its detail (the signal's name, the reset point and the
    /// new run, the reason), and the audit middleware writes none.
    func perform(_ action: ConsoleAction, _ call: Call) async throws -> Response {
        let id = try call.context.parameter("id")
        let who = call.viewer?.caller.name ?? "?"
        var target = id
        var detail: [String] = []
        do {
            switch action {
            case .signal:
                let name = call.form["name"] ?? ""
                detail.append("name \(name)")
                guard !name.isEmpty else { throw Problem.badRequest("a signal needs a name") }
                target = try await server.client.signal(id, name: name, json: try Self.signalInput(call.form["input"]))
            case .cancel:
                let reason = try Self.reason(call.form["reason"], default: "cancelled in the console by \(who)")
                detail.append("reason \(reason)")
                target = try await server.client.cancel(id, reason: reason)
            case .terminate:
                let reason = try Self.reason(call.form["reason"], default: "terminated in the console by \(who)")
                detail.append("reason \(reason)")
                target = try await server.client.terminate(id, reason: reason)
            case .reset:
                detail.append("toEvent \(call.form["toEvent"] ?? "")")
                let run = try await server.findRun(id)
                let point = try await resetPoint(call.form["toEvent"], of: run)
                let reason = try Self.reason(call.form["reason"], default: "reset in the console by \(who)")
                target = try await server.worker.reset(run.runID, toEvent: point.index, reason: reason).newRunID
                detail = ["toEvent \(point.index) → run \(target)", "reason \(reason)"]
            }
        } catch {
            let problem = Problem.from(error)
            await audit(call, status: problem.status.code, detail: detail + ["\(problem.code): \(problem.detail)"])
            throw error
        }
        await audit(call, status: HTTPResponse.Status.seeOther.code, detail: detail)
        return Self.redirect(HTML.runURL(target) + "?done=\(action.rawValue)")
    }

    /// Writes an action's audit entry, with its detail, and tells the audit middleware it is written.
    /// An entry the journal does not take is logged (the middleware then writes its own, without the
    /// detail).
    func audit(_ call: Call, status: Int, detail: [String]) async {
        guard var draft = call.context.auditDraft(call.request, status: status, problem: nil) else { return }
        let text = detail.joined(separator: "; ")
        draft.detail = text.utf8.count > 4_500 ? String(text.prefix(4_500)) + "…" : text
        do {
            _ = try await server.client.recordAudit(draft)
            call.context.auditSlip?.markRecorded()
        } catch {
            server.logger.error("audit log: cannot record \(draft.action) by \(draft.actor): \(error)")
        }
    }

    /// `POST /ui/runs/{id}/query`: asks the run a query (the application's code answers).
    func query(_ call: Call) async throws -> Response {
        let run = try await server.findRun(try call.context.parameter("id"))
        let name = call.form["name"] ?? ""
        guard !name.isEmpty else { throw Problem.badRequest("a query needs a name") }
        guard server.hasCode else {
            throw Problem(.notImplemented, "unknownWorkflowType", "this server has no workflow code, so it cannot answer queries: serve the journal with the application's own executable (APP serve), which has the code of \(run.workflowType)")
        }
        let answer = try await server.client.query(run.runID, name: name)
        let body = """
            <h1>Query <span class="mono">\(HTML.escape(name))</span></h1>
            <p>Of run \(HTML.runLink(run.runID)) (workflow ID <span class="mono">\(HTML.escape(run.workflowID))</span>):</p>
            \(HTML.jsonBlock(answer, label: "query result"))
            <p><a href="\(HTML.escape(HTML.runURL(run.runID)))">Back to the run</a></p>
            """
        return page(call, title: "Query \(name)", body: body)
    }
}
