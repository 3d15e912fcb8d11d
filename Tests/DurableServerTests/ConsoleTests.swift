@testable import Durable
@testable import DurableServer
import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A browser's view of the console: plain HTTP/1.1 over a socket (redirects are not followed, so
/// that each 303 can be checked), with a cookie jar.
final class ConsoleBrowser: @unchecked Sendable {
    // @unchecked: used by one test at a time.
    let address: String
    var cookies: [String: String] = [:]

    init(_ server: ServerProcess) { address = server.address }

    struct Page {
        var status: Int
        var headers: [(String, String)]
        var body: String
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        func headers(_ name: String) -> [String] { headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1) }
        /// The value of the first hidden `csrf` field.
        var csrf: String? {
            guard let range = body.range(of: "name=\"csrf\" value=\"") else { return nil }
            return String(body[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    func get(_ path: String, headers: [String: String] = [:]) throws -> Page { try send("GET", path, headers: headers) }

    func post(_ path: String, form: [String: String], headers: [String: String] = [:]) throws -> Page {
        let body = form.map { "\(Self.encode($0.key))=\(Self.encode($0.value))" }.joined(separator: "&")
        return try send("POST", path, body: Data(body.utf8), headers: ["Content-Type": "application/x-www-form-urlencoded"].merging(headers) { $1 })
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")) ?? ""
    }

    /// Signs in with a token through the login form; returns the answer to the form.
    @discardableResult
    func signIn(_ token: String) throws -> Page {
        let form = try get("/ui/login")
        let answer = try post("/ui/login", form: ["csrf": form.csrf ?? "", "token": token, "next": "/ui/runs"])
        return answer
    }

    func send(_ method: String, _ path: String, body: Data = Data(), headers: [String: String] = [:]) throws -> Page {
        let parts = address.split(separator: ":")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestProcessError("socket: \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(parts[1])!).bigEndian
        inet_pton(AF_INET, String(parts[0]), &addr.sin_addr)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestProcessError("connect to \(address): \(errno)") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        if !cookies.isEmpty { head += "Cookie: " + cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") + "\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let request = Data((head + "\r\n").utf8) + body
        try request.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, 0)
                guard n > 0 else { throw TestProcessError("send: \(errno)") }
                sent += n
            }
        }
        var response = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            response.append(contentsOf: buffer[0..<n])
        }
        guard let split = response.range(of: Data("\r\n\r\n".utf8)) else { throw TestProcessError("no response head: \(response.count) bytes") }
        let lines = String(decoding: response[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1])!
        var fields: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var payload = Data(response[split.upperBound...])
        if fields.contains(where: { $0.0.lowercased() == "transfer-encoding" && $0.1.lowercased().contains("chunked") }) {
            var decoded = Data()
            while let end = payload.range(of: Data("\r\n".utf8)) {
                let size = Int(String(decoding: payload[..<end.lowerBound], as: UTF8.self), radix: 16) ?? 0
                if size == 0 { break }
                decoded.append(payload[end.upperBound..<(end.upperBound + size)])
                payload = Data(payload[(end.upperBound + size + 2)...])
            }
            payload = decoded
        }
        let page = Page(status: status, headers: fields, body: String(decoding: payload, as: UTF8.self))
        for value in page.headers("Set-Cookie") {
            let pair = value.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pair[0]), cookie = pair.count > 1 ? String(pair[1]) : ""
            if cookie.isEmpty || value.contains("Max-Age=0") { cookies[name] = nil } else { cookies[name] = cookie }
        }
        return page
    }
}

/// The web console of `serve`, over real HTTP: sessions, pages, actions, escaping.
@Suite(.serialized) struct ConsoleTests {
    static let hostile = "<script>alert(1)</script>\"'</textarea><img src=x onerror=alert(2)>"

    /// Whether a page shows `text` only escaped (never as markup).
    static func expectEscaped(_ page: ConsoleBrowser.Page, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!page.body.contains("<script>alert"), "\(what): raw script", sourceLocation: sourceLocation)
        #expect(!page.body.contains("<img src=x"), "\(what): raw img", sourceLocation: sourceLocation)
        #expect(!page.body.contains("</textarea><"), "\(what): raw textarea end", sourceLocation: sourceLocation)
    }

    @Test func aSessionEndsWhenItsTokenLeavesTheTokenFile() async throws {
        let server = try await ServerProcess()
        let reader = ConsoleBrowser(server)
        let admin = ConsoleBrowser(server)
        #expect(try reader.signIn(server.tokens[.reader]!).status == 303)
        #expect(try admin.signIn(server.tokens[.admin]!).status == 303)
        #expect(try reader.get("/ui/runs").status == 200)
        var file = server.tokenFile
        file.tokens.removeAll { $0.role == .reader }
        try server.replaceTokenFile(with: file)
        try await eventually("the reader's session ended", timeout: .seconds(10)) { try reader.get("/ui/runs").status == 303 }
        #expect(try admin.get("/ui/runs").status == 200, "the other session goes on")
        // Signing in again with the removed token is refused.
        #expect(try reader.signIn(server.tokens[.reader]!).status == 401)
        _ = try await server.stop()
    }

    @Test func signingInSetsAStrictHttpOnlySessionCookieThatOnlyTheConsoleHonours() async throws {
        let server = try await ServerProcess(worker: false)
        let browser = ConsoleBrowser(server)
        // No session: the pages send to the login page (with where to come back to), actions too.
        let away = try browser.get("/ui/runs?status=running")
        #expect(away.status == 303)
        #expect(away.header("Location") == "/ui/login?next=%2Fui%2Fruns%3Fstatus%3Drunning")
        #expect(try browser.post("/ui/runs/x/cancel", form: [:]).header("Location") == "/ui/login")
        #expect(try browser.get("/ui").header("Location") == "/ui/runs")
        // Every route but the public ones (the login page, its assets, the redirect to the runs) sends there.
        let open: Set<String> = ["/ui", "/ui/assets/{file}", "/ui/login"]
        for route in Console.routes where !open.contains(route.path) {
            let path = route.path.replacingOccurrences(of: "{id}", with: "some-run").replacingOccurrences(of: "**", with: "x/y")
            let answer = "\(route.method)" == "GET" ? try browser.get(path) : try browser.post(path, form: ["csrf": "x"])
            #expect(answer.status == 303, "\(route.method) \(route.path)")
            #expect(answer.header("Location")?.hasPrefix("/ui/login") == true, "\(route.method) \(route.path)")
        }
        // A bearer token counts for nothing in the console.
        #expect(try browser.get("/ui/runs", headers: ["Authorization": "Bearer \(server.tokens[.admin]!)"]).status == 303)

        // A hostile `next` is neither echoed as markup nor followed off-site.
        for next in ["https://evil.example/", "//evil.example/ui/", "/ui/\\evil.example", "/ui/\r\nLocation: https://evil.example/",
                     "javascript:alert(1)", Self.hostile] {
            let page = try browser.get("/ui/login?next=\(ConsoleBrowser.encode(next))")
            #expect(page.status == 200)
            #expect(page.body.contains("<input type=\"hidden\" name=\"next\" value=\"/ui/runs\">"), "next \(next)")
            Self.expectEscaped(page, "login page with next \(next)")
            let answer = try browser.post("/ui/login", form: ["csrf": page.csrf ?? "", "token": server.tokens[.reader]!, "next": next])
            #expect(answer.status == 303 && answer.header("Location") == "/ui/runs", "next \(next)")
        }
        let before = try #require(browser.cookies[ConsoleSessions.cookieName])
        // Signing in again over a session ends the old one.
        let again = try browser.get("/ui/login")
        #expect(try browser.post("/ui/login", form: ["csrf": again.csrf ?? "", "token": server.tokens[.admin]!]).status == 303)
        let replaced = try #require(browser.cookies[ConsoleSessions.cookieName])
        #expect(replaced != before)
        browser.cookies[ConsoleSessions.cookieName] = before
        #expect(try browser.get("/ui/runs").status == 303, "the old session ended at the new sign-in")
        browser.cookies[ConsoleSessions.cookieName] = nil
        let login = try browser.get("/ui/login")
        #expect(login.status == 200)
        #expect(login.header("Content-Type") == "text/html; charset=utf-8")
        let policy = try #require(login.header("Content-Security-Policy"))
        #expect(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"))
        #expect(login.header("X-Content-Type-Options") == "nosniff")
        #expect(login.body.contains("<label for=\"token\">"))
        #expect(login.body.contains("for 8 hours, until you log out"), "the session's lifetime, from the sessions")
        let nonce = try #require(login.csrf)
        // The login form's CSRF token must come back with the form.
        #expect(try browser.post("/ui/login", form: ["token": server.tokens[.reader]!]).status == 403)
        #expect(try browser.post("/ui/login", form: ["csrf": (nonce.hasPrefix("0") ? "1" : "0") + nonce.dropFirst(), "token": server.tokens[.reader]!]).status == 403)
        let bad = try browser.post("/ui/login", form: ["csrf": nonce, "token": ServerProcess.unknownToken])
        #expect(bad.status == 401)
        #expect(bad.body.contains("That token is not valid."))
        #expect(browser.cookies[ConsoleSessions.cookieName] == nil)

        // Another site as `next` is ignored.
        let good = try browser.post("/ui/login", form: ["csrf": nonce, "token": server.tokens[.reader]!, "next": "//evil.example/"])
        #expect(good.status == 303)
        #expect(good.header("Location") == "/ui/runs")
        let cookie = try #require(good.headers("Set-Cookie").first { $0.hasPrefix("durable_session=") })
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/ui"))
        let session = try #require(browser.cookies[ConsoleSessions.cookieName])
        #expect(session.count == 64 && !cookie.contains(server.tokens[.reader]!))
        let runs = try browser.get("/ui/runs")
        #expect(runs.status == 200)
        #expect(runs.body.contains("reader-token"))

        // The cookie authorizes no API route.
        let api = try browser.get("/v1/runs")
        #expect(api.status == 401)
        let apiPost = try browser.post("/v1/workflows/Gather/runs", form: ["input": "1"])
        #expect(apiPost.status == 401)

        // Logging out needs the form's token, and ends the session.
        #expect(try browser.post("/ui/logout", form: [:]).status == 403)
        let out = try browser.post("/ui/logout", form: ["csrf": runs.csrf ?? ""])
        #expect(out.status == 303 && out.header("Location") == "/ui/login")
        #expect(browser.cookies[ConsoleSessions.cookieName] == nil)
        browser.cookies[ConsoleSessions.cookieName] = session
        #expect(try browser.get("/ui/runs").status == 303, "the session ended at logout")

        // Sessions are per server process: another server does not know this one's.
        let codeless = try await ServerProcess(codeless: true, journal: server.journal)
        let other = ConsoleBrowser(codeless)
        other.cookies = browser.cookies
        try browser.signIn(server.tokens[.reader]!)
        other.cookies = browser.cookies
        #expect(try other.get("/ui/runs").status == 303)
        // `durable serve` has no worker: the workers page says so.
        #expect(try other.signIn(codeless.tokens[.reader]!).status == 303)
        let workers = try other.get("/ui/workers")
        #expect(workers.status == 200 && workers.body.contains("No worker in this process"))
    }

    @Test func everyPageRendersAndShowsHostileIDsNamesAndInputsOnlyEscaped() async throws {
        let server = try await ServerProcess()
        let gather = try await server.start("Gather", input: 3, workflowID: Self.hostile)
        let hostileJSON = try JSONSerialization.data(withJSONObject: Self.hostile, options: [.fragmentsAllowed])
        _ = try await server.request("POST", "/v1/runs/\(gather)/signals/item", role: .submitter, body: hostileJSON)
        _ = try await server.request("POST", "/v1/runs/\(gather)/signals/\(ConsoleBrowser.encode(Self.hostile))", role: .submitter, json: 1)
        let flaky = try await server.start("Flaky", input: "claim", workflowID: "flaky-1")
        let family = try await server.start("Family", input: 10, workflowID: "family-1")
        let pooled = try await server.start("PooledFlow", input: 3, workflowID: "pooled-1")
        let scored = try await server.start("LineageFlow", input: "claim", workflowID: "scored-1")
        try await eventually("the flaky run's fourth activity retrying, the family done, the signal in") {
            let run = try await server.request("GET", "/v1/runs/\(flaky)", role: .reader)
            let activities = run.json["activities"] as? [[String: Any]] ?? []
            let done = try await server.request("GET", "/v1/runs/\(family)", role: .reader).json["status"] as? String
            let history = try await server.request("GET", "/v1/runs/\(gather)/history", role: .reader).text
            let pooledDone = try await server.request("GET", "/v1/runs/\(pooled)", role: .reader).json["status"] as? String
            let scoredDone = try await server.request("GET", "/v1/runs/\(scored)", role: .reader).json["status"] as? String
            return activities.count == 4 && (activities[3]["attempts"] as? Int ?? 0) >= 2 && done == "completed"
                && pooledDone == "completed" && scoredDone == "completed"
                && history.contains("SignalReceived")
        }
        let browser = ConsoleBrowser(server)
        #expect(try browser.signIn(server.tokens[.reader]!).status == 303)

        // The runs page: filters, counts, the hostile ID escaped, links to parents and children.
        let runs = try browser.get("/ui/runs")
        #expect(runs.status == 200)
        Self.expectEscaped(runs, "runs page")
        #expect(runs.body.contains(HTML.escape(Self.hostile)))
        #expect(runs.body.contains("name=\"idPrefix\"") && runs.body.contains("name=\"startedAfter\"") && runs.body.contains("name=\"retrying\""))
        #expect(runs.body.contains("data-refresh=\"5000\""))
        #expect(runs.body.contains("1 child</a>"), "the family run links to its child")
        #expect(runs.body.contains(">parent "), "the child run links to its parent")
        #expect(!runs.body.contains("/confirm?action="), "a reader sees no action")
        // Retrying: the flaky run only.
        let retrying = try browser.get("/ui/runs?retrying=1")
        #expect(retrying.status == 200)
        #expect(retrying.body.contains("flaky-1") && !retrying.body.contains(HTML.escape(Self.hostile)) && !retrying.body.contains("family-1"))
        #expect(retrying.body.contains("UpstreamTimeout: the model server did not answer"))
        // Keyset pages.
        let first = try browser.get("/ui/runs?limit=2")
        let next = try #require(first.body.range(of: "rel=\"next\"").map { _ in first.body })
        #expect(next.contains("cursor="))
        let cursor = String(first.body[first.body.range(of: "cursor=")!.upperBound...].prefix { $0 != "\"" && $0 != "&" })
        let second = try browser.get("/ui/runs?limit=2&cursor=\(cursor)")
        #expect(second.status == 200 && second.body.contains("First page"))
        #expect(second.body.components(separatedBy: "<tr data-run=").count - 1 == 2)
        // Hostile filters are echoed in the form only escaped.
        let filtered = try browser.get("/ui/runs?type=\(ConsoleBrowser.encode(Self.hostile))&idPrefix=\(ConsoleBrowser.encode(Self.hostile))")
        #expect(filtered.status == 200)
        Self.expectEscaped(filtered, "filter form")
        #expect(filtered.body.contains("name=\"type\" value=\"\(HTML.escape(Self.hostile))\""))
        #expect(filtered.body.contains("name=\"idPrefix\" value=\"\(HTML.escape(Self.hostile))\""))
        // A page has at most 100 runs.
        #expect(try browser.get("/ui/runs?limit=100").status == 200)
        let tooMany = try browser.get("/ui/runs?limit=101")
        #expect(tooMany.status == 400 && tooMany.body.contains("limit"))
        // Bad filters are a clear page, not a trap.
        let badStatus = try browser.get("/ui/runs?status=\(ConsoleBrowser.encode(Self.hostile))")
        #expect(badStatus.status == 400)
        #expect(badStatus.body.contains("status must be one of"))
        Self.expectEscaped(badStatus, "bad status page")
        #expect(try browser.get("/ui/runs?startedAfter=yesterday").status == 400)
        // A datetime-local field's value (no seconds, no zone) is read as UTC.
        #expect(try browser.get("/ui/runs?startedAfter=2000-01-01T00%3A00").body.contains("flaky-1"))
        #expect(try browser.get("/ui/runs?startedBefore=2000-01-01T00%3A00").body.contains("No runs match."))
        #expect(try browser.get("/ui/runs?cursor=nope").status == 400)
        // The export of a search.
        let csv = try browser.get("/ui/runs.csv?type=Gather")
        #expect(csv.status == 200 && csv.header("Content-Type") == "text/csv; charset=utf-8")
        #expect(csv.body.hasPrefix("runID,workflowID,") && csv.body.contains(gather) && !csv.body.contains(flaky))
        let retryingCSV = try browser.get("/ui/runs.csv?retrying=1")
        #expect(retryingCSV.body.hasPrefix("runID,workflowID,workflowType,status,createdAt,closedAt,leaseOwner,error,lastFailure\r\n"))
        #expect(retryingCSV.body.contains(flaky) && retryingCSV.body.contains("Step: UpstreamTimeout: the model server") && !retryingCSV.body.contains(gather))

        // The hostile run's page: ID, signal name and input escaped everywhere (summary, history, JSON, timeline).
        let run = try browser.get("/ui/runs/\(gather)")
        #expect(run.status == 200)
        Self.expectEscaped(run, "run page")
        #expect(run.body.contains(HTML.escape(Self.hostile)))
        #expect(run.body.contains("data-events=\"/ui/runs/\(gather)/events?after=2\""), "an open run's page follows its events after the last shown")
        #expect(run.body.contains("class=\"signal\""), "the signal's mark on the timeline")
        #expect(run.body.contains("<dt>Received</dt><dd><code>item</code> at ") && run.body.contains("<code>\(HTML.escape(Self.hostile))</code> at "))
        // The same run by its hostile workflow ID.
        #expect(try browser.get("/ui/runs/\(ConsoleBrowser.encode(Self.hostile))").body.contains(gather))

        // The retrying run: a bar per activity, attempts marked, the pending activity's failure.
        let flakyPage = try browser.get("/ui/runs/\(flaky)")
        #expect(flakyPage.status == 200)
        #expect(flakyPage.body.components(separatedBy: "<rect class=\"bar activity").count - 1 == 4)
        #expect(flakyPage.body.contains("<rect class=\"bar activity pending open\" data-seq=\"4\""))
        #expect(flakyPage.body.contains("class=\"attempt-failed\""))
        let pending = String(flakyPage.body[flakyPage.body.range(of: "id=\"h-pending\"")!.upperBound...].prefix(3000))
        #expect(pending.contains("<strong>UpstreamTimeout</strong>: the model server did not answer within 30 s"))
        #expect(pending.contains("&quot;attempt&quot;"), "the last heartbeat's details")
        #expect(flakyPage.body.contains("Lease holder</dt><dd class=\"mono\">") && !flakyPage.body.contains("Lease holder</dt><dd class=\"mono\">none"))
        #expect(!flakyPage.body.contains("Terminate…") && !flakyPage.body.contains("name=\"toEvent\""), "a reader sees no action")
        // Model lineage: both decisions of the scorer, with the weights digest; a run without a model says so.
        let scoredPage = try browser.get("/ui/runs/\(scored)")
        let lineage = String(scoredPage.body[try #require(scoredPage.body.range(of: "id=\"h-lineage\""), "\(scoredPage.body)").upperBound...].prefix(4000))
        #expect(lineage.components(separatedBy: "<td>scorer@1</td>").count - 1 == 2, "\(lineage)")
        // Weights, input and output of each: 12 hex digits shown, all 64 in the title.
        let hashes = try Regex(#"title="[0-9a-f]{64}">[0-9a-f]{12}</span>"#)
        #expect(lineage.matches(of: hashes).count == 6, "\(lineage)")
        #expect(lineage.contains("prompt=p-7"))
        #expect(flakyPage.body.contains("No attempt of this run recorded a model."))
        // The family: the child's row on the timeline and in the children table, which links to it.
        let familyPage = try browser.get("/ui/runs/\(family)")
        #expect(familyPage.body.contains("class=\"bar child completed\""))
        let childID = try #require(try await server.request("GET", "/v1/runs/\(family)", role: .reader).json["children"] as? [[String: Any]]).first?["runID"] as? String
        #expect(familyPage.body.contains("href=\"/ui/runs/\(try #require(childID))\""))
        let child = try browser.get("/ui/runs/\(childID!)")
        #expect(child.body.contains("<dt>Parent</dt><dd class=\"mono\"><a class=\"run\" href=\"/ui/runs/\(family)\">"))
        #expect(child.body.contains("class=\"bar timer fired\""))
        // The run's events as server-sent events (what the page's script follows), to the end of a closed run.
        let stream = try browser.get("/ui/runs/\(family)/events", headers: ["Accept": "text/event-stream"])
        #expect(stream.status == 200 && stream.header("Content-Type") == "text/event-stream")
        #expect(stream.body.contains("event: WorkflowStarted") && stream.body.contains("event: end"))
        // The export file, as `replay --file` reads it.
        let export = try browser.get("/ui/runs/\(family)/export")
        #expect(export.status == 200 && export.header("Content-Disposition") == "attachment; filename=\"\(family).json\"")
        let file = try HistoryExport.decode(Data(export.body.utf8), path: "export")
        #expect(file.run.runID == family && file.events.count > 3)
        // A run that does not exist.
        let missing = try browser.get("/ui/runs/\(ConsoleBrowser.encode(Self.hostile + "-none"))")
        #expect(missing.status == 404)
        Self.expectEscaped(missing, "missing run page")

        // Workers and pools, from the journal's leases and this process's metrics.
        let workers = try browser.get("/ui/workers")
        #expect(workers.status == 200)
        #expect(workers.body.contains("Workers holding leases") && workers.body.contains("<tr data-pool=\"Step\">"))
        // The one-slot pool of Pooled: one cold start, then two warm hits; the slot is warm and idle.
        #expect(workers.body.contains("<tr data-pool=\"Pooled\"><td>Pooled</td><td>0</td><td>1</td><td>1</td><td>2</td>"), "\(workers.body)")
        #expect(workers.body.contains("<td class=\"id\">"), "a worker holds leases (the open runs')")
        // The assets: their types, long caching by content hash, and a 304.
        for (path, type) in [(ConsoleAssets.cssPath, "text/css"), (ConsoleAssets.jsPath, "text/javascript")] {
            let asset = try browser.get(path)
            #expect(asset.status == 200 && asset.header("Content-Type")?.hasPrefix(type) == true)
            #expect(asset.header("Cache-Control") == "public, max-age=31536000, immutable")
            #expect(try browser.get(path, headers: ["If-None-Match": asset.header("ETag") ?? ""]).status == 304)
        }
        #expect(try browser.get("/ui/assets/nothing.js").status == 404)
        let nowhere = try browser.get("/ui/nowhere/\(ConsoleBrowser.encode(Self.hostile))")
        #expect(nowhere.status == 404 && nowhere.header("Content-Type") == "text/html; charset=utf-8")
        Self.expectEscaped(nowhere, "page of no route")
        // Queries from the console (POST, so with the form's CSRF token; a reader may ask).
        let answer = try browser.post("/ui/runs/\(gather)/query", form: ["csrf": run.csrf ?? "", "name": "items"])
        #expect(answer.status == 200)
        Self.expectEscaped(answer, "query answer")
        #expect(answer.body.contains(HTML.escape("</textarea>")))
    }

    @Test func actionsNeedAnOperatorAndTheFormsTokenAndLandInTheAuditLog() async throws {
        let server = try await ServerProcess()
        let gather = try await server.start("Gather", input: 2, workflowID: "g-1")
        let doomed = try await server.start("Gather", input: 2, workflowID: "g-2")
        let reader = ConsoleBrowser(server)
        try reader.signIn(server.tokens[.reader]!)
        let readerPage = try reader.get("/ui/runs/\(gather)")
        #expect(!readerPage.body.contains("/confirm"))
        // The server refuses a reader's action whatever the page shows.
        let refused = try reader.post("/ui/runs/\(gather)/terminate", form: ["csrf": readerPage.csrf ?? ""])
        #expect(refused.status == 403 && refused.body.contains("this needs operator or above"))
        #expect(try reader.get("/ui/runs/\(gather)/confirm?action=terminate").status == 403)
        // A submitter neither (the console's actions are for operators).
        let submitter = ConsoleBrowser(server)
        try submitter.signIn(server.tokens[.submitter]!)
        #expect(try submitter.post("/ui/runs/\(gather)/signal", form: ["csrf": try submitter.get("/ui/runs").csrf ?? "", "name": "item"]).status == 403)
        let submitterPage = try submitter.get("/ui/runs/\(gather)")
        #expect(submitterPage.status == 200)
        #expect(!submitterPage.body.contains("/confirm") && !submitterPage.body.contains("/preview"), "a submitter sees no action")
        #expect(!submitterPage.body.contains("name=\"toEvent\"") && !submitterPage.body.contains("id=\"h-actions\""))
        #expect(!(try submitter.get("/ui/runs")).body.contains("/confirm?action="), "nor in the runs table")

        let op = ConsoleBrowser(server)
        try op.signIn(server.tokens[.operator]!)
        let page = try op.get("/ui/runs/\(gather)")
        let csrf = try #require(page.csrf)
        #expect(page.body.contains("?action=terminate") && page.body.contains("name=\"input\""))
        // Without or with a wrong CSRF token, every action is refused and nothing happens.
        for action in ["signal", "cancel", "terminate", "reset"] {
            let none = try op.post("/ui/runs/\(gather)/\(action)", form: ["name": "item", "input": "\"x\"", "toEvent": "1"])
            #expect(none.status == 403, "\(action) without CSRF")
            let wrong = try op.post("/ui/runs/\(gather)/\(action)", form: ["csrf": (csrf.hasPrefix("0") ? "1" : "0") + csrf.dropFirst(), "name": "item", "input": "\"x\"", "toEvent": "1"])
            #expect(wrong.status == 403, "\(action) with a wrong CSRF token")
            #expect(wrong.body.contains("nothing was done"))
        }
        #expect(try await server.request("GET", "/v1/runs/\(gather)", role: .reader).json["status"] as? String == "running")
        #expect(try await server.request("GET", "/v1/runs/\(gather)/history", role: .reader).text.contains("SignalReceived") == false)

        // Signal: the confirmation page shows what will be sent (escaped), the form sends it.
        let confirm = try op.get("/ui/runs/\(gather)/confirm?action=signal&name=item&input=\(ConsoleBrowser.encode("\"" + Self.hostile.replacingOccurrences(of: "\"", with: "\\\"") + "\""))")
        #expect(confirm.status == 200)
        Self.expectEscaped(confirm, "signal confirmation")
        #expect(confirm.body.contains("Yes: send the signal"))
        // The run page's signal form posts (an input too long for a URL is fine), with the CSRF token.
        #expect(page.body.contains("<form class=\"action\" method=\"post\" action=\"/ui/runs/\(gather)/preview\""))
        let long = "\"" + String(repeating: "</textarea><script>alert(3)</script>", count: 3_000) + "\""
        #expect(try op.post("/ui/runs/\(gather)/preview", form: ["action": "signal", "name": "item", "input": long]).status == 403)
        let posted = try op.post("/ui/runs/\(gather)/preview", form: ["csrf": csrf, "action": "signal", "name": "item", "input": long])
        #expect(posted.status == 200 && posted.body.contains("Yes: send the signal"))
        Self.expectEscaped(posted, "posted signal confirmation")
        #expect(posted.body.contains("name=\"input\" value=\"&quot;&lt;/textarea&gt;&lt;script&gt;alert(3)"))
        let badJSON = try op.get("/ui/runs/\(gather)/confirm?action=signal&name=item&input=%7Bnope")
        #expect(badJSON.status == 400 && badJSON.body.contains("not valid JSON"))
        let signalled = try op.post("/ui/runs/\(gather)/signal", form: ["csrf": csrf, "name": "item", "input": "\"first\""])
        #expect(signalled.status == 303 && signalled.header("Location") == "/ui/runs/\(gather)?done=signal")
        #expect(try op.get(signalled.header("Location")!).body.contains("The signal was sent."))
        var signalIndex: Int?
        try await eventually("the signal recorded") {
            let events = try await server.request("GET", "/v1/runs/\(gather)/history", role: .reader).json["events"] as? [[String: Any]] ?? []
            signalIndex = events.first { $0["kind"] as? String == "SignalReceived" }?["index"] as? Int
            return signalIndex != nil
        }

        // Reset: the page offers exactly the activation boundaries; another index is refused.
        let resettable = try op.get("/ui/runs/\(gather)")
        let after = try #require(resettable.body.range(of: "<select id=\"reset-to\""))
        let select = String(resettable.body[after.upperBound...]).components(separatedBy: "</select>")[0]
        let offered = select.components(separatedBy: "<option value=\"").dropFirst().compactMap { Int($0.prefix { $0 != "\"" }) }
        #expect(offered == [signalIndex!], "offered \(offered)")
        let badPoint = try op.post("/ui/runs/\(gather)/reset", form: ["csrf": csrf, "toEvent": "0"])
        #expect(badPoint.status == 400 && badPoint.body.contains("not an activation boundary"))
        #expect(try op.get("/ui/runs/\(gather)/confirm?action=reset&toEvent=0").status == 400)
        #expect(try op.get("/ui/runs/\(gather)/confirm?action=reset&toEvent=\(signalIndex!)").body.contains("Yes: reset the run"))
        let reset = try op.post("/ui/runs/\(gather)/reset", form: ["csrf": csrf, "toEvent": String(signalIndex!), "reason": "redo"])
        #expect(reset.status == 303)
        let newRun = try #require(reset.header("Location")?.dropFirst("/ui/runs/".count).prefix { $0 != "?" }).description
        #expect(newRun != gather && reset.header("Location")?.hasSuffix("?done=reset") == true)
        #expect(try await server.request("GET", "/v1/runs/\(gather)", role: .reader).json["status"] as? String == "terminated")

        // Cancel and terminate, after their confirmation pages.
        #expect(try op.get("/ui/runs/\(newRun)/confirm?action=cancel").body.contains("Yes: cancel the run"))
        let cancel = try op.post("/ui/runs/\(newRun)/cancel", form: ["csrf": csrf, "reason": "not needed"])
        #expect(cancel.status == 303)
        let terminate = try op.post("/ui/runs/\(doomed)/terminate", form: ["csrf": csrf, "reason": Self.hostile])
        #expect(terminate.status == 303)
        let outcome = try await server.request("GET", "/v1/runs/\(doomed)/result?wait=20s", role: .reader)
        #expect(outcome.json["status"] as? String == "terminated")
        #expect((outcome.json["failure"] as? [String: Any])?["message"] as? String == Self.hostile)
        let terminatedPage = try op.get("/ui/runs/\(doomed)")
        Self.expectEscaped(terminatedPage, "terminated run page")
        #expect(terminatedPage.body.contains("Terminated</strong>") || terminatedPage.body.contains("Terminated: "))
        // An action on a closed run is a clear page.
        let closed = try op.post("/ui/runs/\(doomed)/terminate", form: ["csrf": csrf])
        #expect(closed.status == 409)
        let closedConfirm = try op.get("/ui/runs/\(doomed)/confirm?action=cancel")
        #expect(closedConfirm.status == 409 && closedConfirm.body.contains("has ended (terminated)"))

        // Every console POST is in the audit log, under the session's token name.
        let log = try await server.request("GET", "/v1/audit", role: .admin)
        let lines = (log.json["entries"] as? [[String: Any]] ?? []).map {
            "\($0["actor"] ?? "") \($0["action"] ?? "") \($0["target"] ?? "") \($0["outcome"] ?? "")"
        }
        #expect(lines.contains("token:reader-token POST /ui/runs/{id}/terminate \(gather) 403"), "\(lines)")
        #expect(lines.contains("token:operator-token POST /ui/runs/{id}/signal \(gather) 303"))
        #expect(lines.contains("token:operator-token POST /ui/runs/{id}/signal \(gather) 403"), "the refused forms too")
        #expect(lines.contains("token:operator-token POST /ui/runs/{id}/reset \(gather) 400"))
        #expect(lines.contains("token:operator-token POST /ui/runs/{id}/reset \(gather) 303"))
        #expect(lines.contains("token:operator-token POST /ui/runs/{id}/cancel \(newRun) 303"))
        #expect(lines.contains("token:operator-token POST /ui/runs/{id}/terminate \(doomed) 303"))
        // Each action's entry says what was done; the signal's preview is named a preview.
        let entries = (log.json["entries"] as? [[String: Any]] ?? []).map {
            "\($0["action"] ?? "") \($0["target"] ?? "") \($0["outcome"] ?? "") [\($0["detail"] as? String ?? "")]"
        }
        #expect(entries.contains("POST /ui/runs/{id}/signal \(gather) 303 [name item]"), "\(entries)")
        #expect(entries.contains("POST /ui/runs/{id}/preview \(gather) 200 []"))
        #expect(!entries.contains { $0.hasPrefix("POST /ui/runs/{id}/confirm") })
        #expect(entries.contains("POST /ui/runs/{id}/reset \(gather) 303 [toEvent \(signalIndex!) → run \(newRun); reason redo]"))
        #expect(entries.contains { $0.hasPrefix("POST /ui/runs/{id}/reset \(gather) 400 [toEvent 0; badResetPoint: ") })
        #expect(entries.contains("POST /ui/runs/{id}/cancel \(newRun) 303 [reason not needed]"))
        #expect(entries.contains("POST /ui/runs/{id}/terminate \(doomed) 303 [reason \(Self.hostile)]"))
        #expect(entries.contains { $0.hasPrefix("POST /ui/runs/{id}/terminate \(doomed) 409 [reason terminated in the console by operator-token; ") })
        #expect(entries.filter { $0.hasPrefix("POST /ui/runs/{id}/signal \(gather) 303") }.count == 1, "one entry per action")
        // The console's routes are not API routes.
        #expect(!DurableServer.routes.contains { $0.path.hasPrefix("/ui") })
    }
}

extension ConsoleTests {
    @Test func theRetryingExportStopsAtItsBoundAndSaysSo() async throws {
        // No worker: every run stays pending (open), so the retrying filter reads each of them.
        let server = try await ServerProcess(worker: false)
        let total = Console.retryingScanLimit + 5
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<8 {
                group.addTask {
                    for number in stride(from: lane, to: total, by: 8) {
                        _ = try await server.start("Gather", input: 1, workflowID: "open-\(number)")
                    }
                }
            }
            try await group.waitForAll()
        }
        let browser = ConsoleBrowser(server)
        try browser.signIn(server.tokens[.reader]!)
        let csv = try browser.get("/ui/runs.csv?retrying=1")
        #expect(csv.status == 200)
        #expect(csv.header("Durable-Scan-Stopped") == String(Console.retryingScanLimit))
        let lines = csv.body.split(separator: "\r\n")
        #expect(lines.count == 2, "the header line and the note: no run is retrying")
        #expect(lines.last?.hasPrefix("# the retrying filter stopped after reading \(Console.retryingScanLimit) open runs") == true)
        // Without the retrying filter no history is read, and every run is exported.
        let plain = try browser.get("/ui/runs.csv")
        #expect(plain.header("Durable-Scan-Stopped") == nil)
        #expect(plain.body.split(separator: "\r\n").count == total + 1)
        // The page says how many it read.
        #expect(try browser.get("/ui/runs?retrying=1").body.contains("\(Console.retryingScanLimit) open run(s) read for this page"))
    }
}

/// The console's pieces that need no server: the timeline, CSV fields, metric lines, escaping.
@Suite struct ConsolePartsTests {
    @Test func theTimelineHasABarPerActivityTimerAndChildAndMarksFailedAttemptsAndSignals() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        func at(_ ms: Double) -> Date { start.addingTimeInterval(ms / 1000) }
        let failure = try JSONEncoder().encode(FailureInfo(type: "Upstream<Timeout>", message: "no \"answer\"", nextRetryDelayMs: 100))
        let events = [
            HistoryEvent(index: 0, kind: .workflowStarted, time: at(0), name: "Flow"),
            HistoryEvent(index: 1, kind: .activityScheduled, time: at(0), seq: 1, name: "<b>OCR</b>"),
            HistoryEvent(index: 2, kind: .activityCompleted, time: at(100), seq: 1, attempt: 1, data: Data("1".utf8)),
            HistoryEvent(index: 3, kind: .activityScheduled, time: at(100), seq: 2, name: "Score"),
            HistoryEvent(index: 4, kind: .activityAttemptFailed, time: at(150), seq: 2, attempt: 1, data: failure),
            HistoryEvent(index: 5, kind: .activityAttemptFailed, time: at(300), seq: 2, attempt: 2, data: failure),
            HistoryEvent(index: 6, kind: .signalReceived, time: at(350), name: "re\"view"),
        ]
        let run = RunRecord(
            runID: "r", workflowID: "w", workflowType: "Flow", status: .running, createdAt: start, updatedAt: at(350),
            closedAt: nil, seed: 1, error: nil)
        let timeline = ConsoleTimeline(run: run, events: events, now: at(1000))
        #expect(timeline.rows.map(\.state) == ["completed", "pending"])
        #expect(timeline.rows[1].marks.count == 2 && timeline.rows[1].attempts == 2)
        let svg = timeline.svg()
        #expect(svg.components(separatedBy: "<rect class=\"bar activity").count - 1 == 2)
        #expect(svg.contains("<rect class=\"bar activity pending open\" data-seq=\"2\" data-attempts=\"2\""))
        #expect(svg.components(separatedBy: "<circle class=\"attempt-failed\"").count - 1 == 2)
        #expect(svg.contains("attempt 2 failed at") && svg.contains("Upstream&lt;Timeout&gt;: no &quot;answer&quot;"))
        #expect(svg.contains("&lt;b&gt;OCR&lt;/b&gt;") && !svg.contains("<b>"))
        #expect(svg.contains("signal re&quot;view received"))
        // The open bar reaches to now: the right end of the axis.
        #expect(svg.contains("width=\"\(String(format: "%.1f", 985 - (250 + 735 * 0.1)))\""))
    }

    @Test func aChildsStateFromItsEventDataIsARunStatusOrClosedInTheBarsClass() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let hostile = "completed\" onfocus=\"alert(1)\" x=\"" + ConsoleTests.hostile
        func events(_ status: String) throws -> [HistoryEvent] {
            [
                HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Flow"),
                HistoryEvent(index: 1, kind: .childStarted, time: start, seq: 1, name: "Child"),
                HistoryEvent(
                    index: 2, kind: .childClosed, time: start.addingTimeInterval(1), seq: 1,
                    data: try JSONEncoder().encode(ChildOutcome(seq: 1, childRunID: "c", status: status))),
            ]
        }
        let run = RunRecord(
            runID: "r", workflowID: "w", workflowType: "Flow", status: .completed, createdAt: start, updatedAt: start,
            closedAt: start.addingTimeInterval(2), seed: 1, error: nil)
        let hostileTimeline = ConsoleTimeline(run: run, events: try events(hostile))
        #expect(hostileTimeline.rows.map(\.state) == ["closed"])
        let svg = hostileTimeline.svg()
        #expect(svg.contains("<rect class=\"bar child closed\""))
        #expect(!svg.contains("onfocus") && !svg.contains("<script>") && !svg.contains("<img"))
        // A real status is kept.
        #expect(ConsoleTimeline(run: run, events: try events("failed")).svg().contains("<rect class=\"bar child failed\""))
    }

    @Test func theTimelineMarksABoundedNumberOfFailedAttemptsAndSignalsAndCountsTheRest() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let failure = try? JSONEncoder().encode(FailureInfo(type: "E", message: "m"))
        var events = [
            HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Flow"),
            HistoryEvent(index: 1, kind: .activityScheduled, time: start, seq: 1, name: "A"),
        ]
        let attempts = ConsoleTimeline.maximumMarks + 7, signals = ConsoleTimeline.maximumSignals + 3
        for attempt in 1...attempts {
            events.append(HistoryEvent(
                index: events.count, kind: .activityAttemptFailed, time: start.addingTimeInterval(Double(attempt)), seq: 1,
                attempt: attempt, data: failure))
        }
        for number in 0..<signals {
            events.append(HistoryEvent(index: events.count, kind: .signalReceived, time: start.addingTimeInterval(Double(number)), name: "s"))
        }
        let run = RunRecord(
            runID: "r", workflowID: "w", workflowType: "Flow", status: .running, createdAt: start, updatedAt: start,
            closedAt: nil, seed: 1, error: nil)
        let timeline = ConsoleTimeline(run: run, events: events, now: start.addingTimeInterval(1000))
        #expect(timeline.rows[0].marks.count == ConsoleTimeline.maximumMarks && timeline.rows[0].unmarked == 7)
        #expect(timeline.rows[0].attempts == attempts)
        #expect(timeline.signals.count == ConsoleTimeline.maximumSignals && timeline.unmarkedSignals == 3)
        let svg = timeline.svg()
        #expect(svg.components(separatedBy: "<circle class=\"attempt-failed\"").count - 1 == ConsoleTimeline.maximumMarks)
        #expect(svg.components(separatedBy: "<polygon class=\"signal\"").count - 1 == ConsoleTimeline.maximumSignals)
        #expect(svg.contains("(7 more)") && svg.contains("signals (+3 not marked)"))
    }

    /// The run page's sections for a run made of `events` (as the page draws them from its description).
    static func runPage(_ events: [HistoryEvent], input: Data? = nil, status: RunStatus = .running) -> RunPage {
        let start = events.first?.time ?? Date()
        let run = RunRecord(
            runID: "r", workflowID: "w", workflowType: "Flow", status: status, createdAt: start, updatedAt: start,
            closedAt: nil, seed: 1, error: nil)
        let description = RunDescription(
            run: run, eventCount: events.count, input: input ?? events.first?.data, outcome: nil,
            activities: ActivitySummary.from(events))
        return RunPage(description: description, events: events, now: start.addingTimeInterval(1))
    }

    @Test func aPendingActivitysHostileFailureAndHeartbeatAreShownEscaped() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let hostile = ConsoleTests.hostile
        let failure = try JSONEncoder().encode(FailureInfo(type: hostile, message: hostile, nextRetryDelayMs: 60_000))
        let beat = try JSONSerialization.data(withJSONObject: ["note": hostile])
        let page = Self.runPage([
            HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Flow", data: Data("null".utf8)),
            HistoryEvent(index: 1, kind: .activityScheduled, time: start, seq: 1, name: "Step"),
            HistoryEvent(index: 2, kind: .activityHeartbeat, time: start, seq: 1, attempt: 1, data: beat),
            HistoryEvent(index: 3, kind: .activityAttemptFailed, time: start, seq: 1, attempt: 1, data: failure),
        ])
        let pending = page.pending()
        #expect(pending.contains("<tr class=\"pending-activity\" data-seq=\"1\">"))
        #expect(!pending.contains("<script>alert") && !pending.contains("<img src=x") && !pending.contains("</textarea><"))
        #expect(pending.contains("<strong>\(HTML.escape(hostile))</strong>: \(HTML.escape(hostile))"), "the failure, escaped")
        #expect(pending.contains(HTML.escape(HTML.prettyJSON(beat))), "the heartbeat, escaped")
        let history = page.history()
        #expect(!history.contains("<script>alert") && !history.contains("<img src=x"))
    }

    @Test func theLineageSectionShowsModelAttemptsOnlyAndEscapesWhatTheModelReported() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let hostile = ConsoleTests.hostile
        var served = AttemptDetails()
        served.model = hostile
        served.modelVersion = "7"
        served.modelMetadata = ["prompt": hostile]
        served.inputSHA256 = String(repeating: "c", count: 64)
        var plain = AttemptDetails()
        plain.runMs = 3
        let page = Self.runPage([
            HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Flow", data: Data("null".utf8)),
            HistoryEvent(index: 1, kind: .activityScheduled, time: start, seq: 1, name: "Judge"),
            HistoryEvent(index: 2, kind: .activityCompleted, time: start, seq: 1, attempt: 1, data: Data("1".utf8), meta: served.json),
            HistoryEvent(index: 3, kind: .activityScheduled, time: start, seq: 2, name: "Store"),
            HistoryEvent(index: 4, kind: .activityCompleted, time: start, seq: 2, attempt: 1, data: Data("1".utf8), meta: plain.json),
        ])
        let lineage = page.lineage()
        #expect(!lineage.contains("<script>alert") && !lineage.contains("<img src=x"))
        #expect(lineage.contains("<td>\(HTML.escape(hostile + "@7"))</td>"))
        #expect(lineage.contains("prompt=\(HTML.escape(hostile))"))
        #expect(lineage.contains("title=\"\(String(repeating: "c", count: 64))\">cccccccccccc</span>"))
        #expect(lineage.contains("Judge") && !lineage.contains("Store"), "only attempts that recorded a model")
        #expect(Self.runPage([HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Flow", data: nil)]).lineage()
            .contains("No attempt of this run recorded a model."))
    }

    @Test func aLargeInputIsCutWithANoteAndTheExportLink() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let big = Data(("\"" + String(repeating: "x", count: 100_000) + "\"").utf8)
        let events = [HistoryEvent(index: 0, kind: .workflowStarted, time: start, name: "Flow", data: big)]
        let summary = Self.runPage(events).summary()
        #expect(summary.count < 80_000)
        #expect(summary.contains("The first 64 KiB of \(big.count) bytes;") && summary.contains("href=\"/ui/runs/r/export\""))
        let small = Self.runPage(events, input: Data("[1]".utf8)).summary()
        #expect(!small.contains("The first 64 KiB") && small.contains("1"))
    }

    @Test func sessionsExpireAndTheOneNearestItsEndMakesRoomWhenFull() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let sessions = ConsoleSessions(lifetime: 60, capacity: 2)
        let who = Caller(name: "alice", role: .operator)
        let a = sessions.start(who, now: start)
        #expect(sessions.session(a, now: start.addingTimeInterval(59))?.caller == who)
        #expect(sessions.session(a, now: start.addingTimeInterval(60)) == nil, "expired at its end")
        #expect(sessions.session(a, now: start) == nil, "and removed")
        // Full: an expired session goes first, then the one nearest its end.
        let b = sessions.start(who, now: start)
        let c = sessions.start(who, now: start.addingTimeInterval(10))
        let d = sessions.start(who, now: start.addingTimeInterval(20))
        #expect(sessions.session(b, now: start.addingTimeInterval(20)) == nil, "b made room for d")
        #expect(sessions.session(c, now: start.addingTimeInterval(20)) != nil && sessions.session(d, now: start.addingTimeInterval(20)) != nil)
        let e = sessions.start(who, now: start.addingTimeInterval(75))  // c has expired: it goes, d stays
        #expect(sessions.session(d, now: start.addingTimeInterval(75)) != nil && sessions.session(e, now: start.addingTimeInterval(75)) != nil)
        #expect(sessions.session(c, now: start.addingTimeInterval(20)) == nil)
        #expect(sessions.session(nil) == nil && sessions.session("short") == nil)
        #expect(ConsoleSessions.same("abc", "abc") && !ConsoleSessions.same("abc", "abd") && !ConsoleSessions.same(nil, "") && !ConsoleSessions.same("ab", "abc"))
    }

    @Test func exportFileNamesAndTheSessionLifetimeInWords() {
        #expect(DurableServer.exportFileName("a/é b.c-_") == "a___b.c-_")
        #expect(DurableServer.exportFileName("3c1402fb-child-1") == "3c1402fb-child-1")
        #expect(DurableServer.exportFileName(String(repeating: "x", count: 300)).count == 100)
        #expect(Console.lifetimeText(8 * 3600) == "8 hours" && Console.lifetimeText(3600) == "1 hour")
        #expect(Console.lifetimeText(90) == "1 min 30 s")
    }

    @Test func csvFieldsAreQuotedAndFormulasDefused() {
        #expect(Console.csvField("plain") == "plain")
        #expect(Console.csvField("a,b") == "\"a,b\"")
        #expect(Console.csvField("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(Console.csvField("=HYPERLINK(\"x\")") == "\"'=HYPERLINK(\"\"x\"\")\"")
        #expect(Console.csvField("@SUM(A1)") == "'@SUM(A1)")
    }

    @Test func metricLinesParseWithTheirLabels() {
        let samples = MetricSample.parse("""
            # TYPE durable_pool_slots_in_use gauge
            durable_pool_slots_in_use{pool="Classify"} 2.0
            durable_pool_cold_starts_total{pool="odd \\"name\\", here"} 3
            durable_up 1
            not a metric line
            """)
        #expect(samples == [
            MetricSample(name: "durable_pool_slots_in_use", labels: ["pool": "Classify"], value: 2),
            MetricSample(name: "durable_pool_cold_starts_total", labels: ["pool": "odd \"name\", here"], value: 3),
            MetricSample(name: "durable_up", labels: [:], value: 1),
        ])
    }

    @Test func escapingCoversTextAttributesAndURLs() {
        #expect(HTML.escape("<a href='x'>\"&\"</a>") == "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;")
        #expect(HTML.runURL("a/b?c#d e") == "/ui/runs/a%2Fb%3Fc%23d%20e")
        #expect(HTML.shortID("3c1402fb-f630-4511-91be-2e8c94f04fcb") == "3c1402fb…f04fcb")
        #expect(HTML.shortID("3c1402fb-child-1-abc") == "3c1402fb-child-1-abc")
        #expect(Console.safeNext("//evil.example/ui/") == "/ui/runs")
        #expect(Console.safeNext("/ui/runs?status=failed") == "/ui/runs?status=failed")
        #expect(Console.safeNext("https://evil.example/") == "/ui/runs")
        #expect(Console.safeNext("/ui/\\\\evil") == "/ui/runs")
    }
}
