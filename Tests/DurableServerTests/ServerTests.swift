import Durable
@testable import DurableServer
import DurableTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `serve` as a real process on a loopback port, over real HTTP.
@Suite(.serialized) struct ServerTests {
    /// A concrete path for a route template.
    static func concrete(_ template: String, run: String) -> String {
        template.replacingOccurrences(of: "{id}", with: run).replacingOccurrences(of: "{type}", with: "Gather")
            .replacingOccurrences(of: "{name}", with: "item")
    }

    @Test func everyRouteRefusesNoTokenABadTokenAndTheRoleBelowItsOwn() async throws {
        let server = try await ServerProcess()
        let run = try await server.start("Gather", input: 5)
        var checked = 0
        for route in DurableServer.routes {
            let path = Self.concrete(route.path, run: run)
            guard let role = route.role else {
                let reply = try await server.request(route.method, path, role: nil)
                #expect(reply.status == 200, "\(route.method) \(route.path) without a token: \(reply.status)")
                continue
            }
            let none = try await server.request(route.method, path, role: nil)
            #expect(none.status == 401, "\(route.method) \(route.path) without a token")
            #expect(none.header("WWW-Authenticate") == "Bearer realm=\"durable\"")
            #expect(none.header("Content-Type") == "application/problem+json")
            let basic = try await server.request(route.method, path, role: nil, headers: ["Authorization": "Basic YTpi"])
            #expect(basic.status == 401 && (basic.json["detail"] as? String)?.contains("needs a bearer token") == true)
            let bad = try await server.request(route.method, path, token: ServerProcess.unknownToken)
            #expect(bad.status == 401, "\(route.method) \(route.path) with an unknown token")
            #expect(bad.json["detail"] as? String == "the bearer token is not valid")
            if let below = Role.allCases.last(where: { $0 < role }) {
                let low = try await server.request(route.method, path, role: below)
                #expect(low.status == 403, "\(route.method) \(route.path) as \(below)")
                #expect(low.json["code"] as? String == "forbidden")
            }
            // The role itself gets past the check (whatever the route then answers).
            let body: Any? = route.path.hasSuffix("/reset") ? ["toEvent": 99] : route.path == "/v1/events" ? ["name": "x", "id": "1"] : nil
            let allowed = try await server.request(route.method, path, role: role, json: body)
            #expect(![401, 403].contains(allowed.status), "\(route.method) \(route.path) as \(role): \(allowed.status) \(allowed.text)")
            checked += 1
        }
        #expect(checked == DurableServer.routes.filter { $0.role != nil }.count)
        // The scheme is case-insensitive.
        let lower = try await server.request("GET", "/v1/runs", role: nil, headers: ["Authorization": "bearer \(server.tokens[.reader]!)"])
        #expect(lower.status == 200)
        #expect(checked >= 14)
    }

    @Test func startWaitsForTheResultOrAnswers202WithLocation() async throws {
        let server = try await ServerProcess()
        let done = try await server.request("POST", "/v1/workflows/Nap/runs?wait=20s", role: .submitter, json: ["input": 10, "workflowID": "nap-1"])
        #expect(done.status == 200, "\(done.text)")
        #expect(done.json["status"] as? String == "completed")
        #expect(done.json["result"] as? String == "nap!")
        #expect(done.json["workflowID"] as? String == "nap-1")
        #expect(done.header("Location") == "/v1/runs/\(done.json["runID"] as? String ?? "?")")

        let open = try await server.request("POST", "/v1/workflows/Gather/runs?wait=200ms", role: .submitter, json: ["input": 1])
        #expect(open.status == 202)
        #expect(open.json["status"] as? String == "running" || open.json["status"] as? String == "pending")
        let runID = try #require(open.json["runID"] as? String)
        #expect(open.header("Location") == "/v1/runs/\(runID)")
        #expect(open.json["workflowID"] as? String == runID, "a generated workflow ID is the run ID")

        let pending = try await server.request("GET", "/v1/runs/\(runID)/result?wait=100ms", role: .reader)
        #expect(pending.status == 202)
        async let waited = server.request("GET", "/v1/runs/\(runID)/result?wait=20s", role: .reader)
        try await Task.sleep(for: .milliseconds(200))
        let signal = try await server.request("POST", "/v1/runs/\(runID)/signals/item", role: .submitter, json: "only")
        #expect(signal.status == 202)
        let result = try await waited
        #expect(result.status == 200)
        #expect(result.json["result"] as? String == "only")

        // The 202 of a new run is written without JSONSerialization: hostile IDs still read back exactly.
        let hostile = "a\"b\\c\nd\u{1}e\te\u{7f}é🙂</script>"
        let odd = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 1, "workflowID": hostile])
        #expect(odd.status == 202, "\(odd.text)")
        #expect(odd.json["workflowID"] as? String == hostile, "\(odd.text)")
        #expect(odd.json["status"] as? String == "pending" && odd.json["workflowType"] as? String == "Gather")

        // The ID reuse policy: a completed workflow ID is refused again by default, allowed with "allow".
        let again = try await server.request("POST", "/v1/workflows/Nap/runs", role: .submitter, json: ["input": 10, "workflowID": "nap-1"])
        #expect(again.status == 409)
        #expect(again.json["code"] as? String == "workflowIDReused")
        let allowed = try await server.request(
            "POST", "/v1/workflows/Nap/runs", role: .submitter, json: ["input": 10, "workflowID": "nap-1", "idReusePolicy": "allow"])
        #expect(allowed.status == 202 || allowed.status == 200)
        #expect(allowed.json["runID"] as? String != done.json["runID"] as? String)
    }

    @Test func aRepeatedIdempotencyKeyAnswersTheFirstRun() async throws {
        let server = try await ServerProcess()
        let headers = ["Idempotency-Key": "order-77"]
        let first = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 2], headers: headers)
        let second = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 2], headers: headers)
        #expect(first.status == 202)
        #expect(second.status == 202)
        #expect(first.json["runID"] as? String != nil)
        #expect(second.json["runID"] as? String == first.json["runID"] as? String)
        #expect(first.header("Idempotent-Replayed") == nil)
        #expect(second.header("Idempotent-Replayed") == "true")
        // Another token's same key is another request.
        let other = try await server.request("POST", "/v1/workflows/Gather/runs", role: .admin, json: ["input": 2], headers: headers)
        #expect(other.json["runID"] as? String != first.json["runID"] as? String)
        // The same key with another body is refused.
        let changed = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 3], headers: headers)
        #expect(changed.status == 422)
        #expect(changed.json["code"] as? String == "idempotencyKeyReused")
        let runs = try await server.request("GET", "/v1/runs?type=Gather", role: .reader)
        #expect((runs.json["runs"] as? [Any])?.count == 2)

        // With a workflow ID in the body, a new key on a run of other input is no reuse of the key:
        // the ID reuse policy decides (an open run of the ID is that run); another type is a conflict.
        let named = try await server.start("Gather", input: 1, workflowID: "named-1")
        let fresh = try await server.request(
            "POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 2, "workflowID": "named-1"], headers: ["Idempotency-Key": "fresh"])
        #expect(fresh.status == 202)
        #expect(fresh.json["runID"] as? String == named && fresh.json["existing"] as? Bool == true)
        let otherType = try await server.request("POST", "/v1/workflows/Nap/runs", role: .submitter, json: ["input": 1, "workflowID": "named-1"])
        #expect(otherType.status == 409)
        #expect(otherType.json["code"] as? String == "workflowIDInUse")
    }

    @Test func eventsStartAndSignalRunsAndARepeatedEventDoesNothingTwice() async throws {
        let server = try await ServerProcess(events: [
            "gather.begin": ["start": "Gather", "workflowID": "gather-{id}"],
            "gather.item": ["signal": "item", "workflowID": "gather-b1"],
        ])
        let started = try await server.request("POST", "/v1/events", role: .submitter, json: ["name": "gather.begin", "id": "b1", "data": 3])
        #expect(started.status == 202, "\(started.text)")
        let results = try #require(started.json["results"] as? [[String: Any]])
        #expect(results.first?["outcome"] as? String == "started")
        let items: [[String: Any]] = [
            ["name": "gather.item", "id": "e1", "data": "a"],
            ["name": "gather.item", "id": "e2", "data": "b"],
            ["name": "gather.item", "id": "e2", "data": "b"],
            ["name": "gather.begin", "id": "b1", "data": 3],
        ]
        let posted = try await server.request("POST", "/v1/events", role: .submitter, json: items)
        #expect(posted.status == 202)
        let outcomes = (posted.json["results"] as? [[String: Any]] ?? []).map { $0["outcome"] as? String ?? "?" }
        #expect(outcomes == ["signalled", "signalled", "duplicate", "duplicate"])
        // A request that merely names event:e3 as a run is audited with that target; e3 is still new.
        #expect(try await server.request("POST", "/v1/runs/event:e3/cancel", role: .operator).status == 404)
        let last = try await server.request("POST", "/v1/events", role: .submitter, json: ["name": "gather.item", "id": "e3", "data": "c"])
        #expect((last.json["results"] as? [[String: Any]])?.first?["outcome"] as? String == "signalled")
        #expect(last.status == 202)
        let result = try await server.request("GET", "/v1/runs/gather-b1/result?wait=20s", role: .reader)
        #expect(result.json["result"] as? String == "a,b,c")

        // Unknown names and templates the event cannot fill refuse the whole post, doing nothing.
        let unknown = try await server.request("POST", "/v1/events", role: .submitter, json: [
            ["name": "gather.item", "id": "e9", "data": "z"], ["name": "nope", "id": "x"],
        ])
        #expect(unknown.status == 422)
        #expect(unknown.json["code"] as? String == "unknownEvent")
        let history = try await server.request("GET", "/v1/runs/gather-b1/history", role: .reader)
        #expect(!history.text.contains("\"z\""))
    }

    @Test func anEventPostedToTwoServersAtOnceSignalsOnce() async throws {
        let routes: [String: Any] = [
            "gather.begin": ["start": "Gather", "workflowID": "gather-{id}"],
            "gather.item": ["signal": "item", "workflowID": "gather-b1"],
        ]
        let first = try await ServerProcess(events: routes)
        let second = try await ServerProcess(worker: false, events: routes, journal: first.journal)
        let started = try await first.request("POST", "/v1/events", role: .submitter, json: ["name": "gather.begin", "id": "b1", "data": 4])
        #expect((started.json["results"] as? [[String: Any]])?.first?["outcome"] as? String == "started")
        // Each item's event posted to both servers at the same moment.
        var outcomes: [String] = []
        for item in ["a", "b", "c", "d"] {
            let body = Data(#"{"name": "gather.item", "id": "item-\#(item)", "data": "\#(item)"}"#.utf8)
            let json = ["Content-Type": "application/json"]
            async let one = first.request("POST", "/v1/events", role: .submitter, body: body, headers: json)
            async let other = second.request("POST", "/v1/events", role: .submitter, body: body, headers: json)
            for reply in try await [one, other] {
                #expect(reply.status == 202, "\(reply.text)")
                outcomes.append((reply.json["results"] as? [[String: Any]])?.first?["outcome"] as? String ?? "?")
            }
        }
        #expect(outcomes.filter { $0 == "signalled" }.count == 4 && outcomes.filter { $0 == "duplicate" }.count == 4, "\(outcomes)")
        let result = try await first.request("GET", "/v1/runs/gather-b1/result?wait=20s", role: .reader)
        let items = (result.json["result"] as? String ?? "").split(separator: ",").map(String.init)
        #expect(items.sorted() == ["a", "b", "c", "d"], "each item once: \(result.text)")
        let log = try await first.request("GET", "/v1/audit?limit=1000", role: .admin)
        let intake = (log.json["entries"] as? [[String: Any]] ?? []).filter { ($0["action"] as? String)?.hasPrefix("event signal") == true }
        #expect(intake.count == 4, "one record per event")
        _ = try await second.stop()
        _ = try await first.stop()
    }

    @Test func historyStreamsFollowNewEventsAsServerSentEvents() async throws {
        let server = try await ServerProcess()
        let runID = try await server.start("Gather", input: 2)
        _ = try await server.request("POST", "/v1/runs/\(runID)/signals/item", role: .submitter, json: "a")
        try await eventually("the first signal recorded") {
            let history = try await server.request("GET", "/v1/runs/\(runID)/history", role: .reader)
            return history.text.contains("SignalReceived")
        }
        let before = try await server.request("GET", "/v1/runs/\(runID)/history", role: .reader)
        let countBefore = (before.json["events"] as? [Any])?.count ?? 0
        async let stream = server.request("GET", "/v1/runs/\(runID)/history", role: .reader, headers: ["Accept": "text/event-stream"])
        try await Task.sleep(for: .milliseconds(300))
        _ = try await server.request("POST", "/v1/runs/\(runID)/signals/item", role: .submitter, json: "b")
        let events = try await stream
        #expect(events.status == 200)
        #expect(events.header("Content-Type") == "text/event-stream")
        let ids = events.text.split(separator: "\n").filter { $0.hasPrefix("id: ") }.compactMap { Int($0.dropFirst(4)) }
        #expect(ids == Array(0..<ids.count), "every event once, in order")
        #expect(ids.count > countBefore, "events recorded after the stream opened are in it")
        #expect(events.text.contains("event: WorkflowCompleted"))
        #expect(events.text.hasSuffix("event: end\ndata: {\"status\":\"completed\"}\n\n"))

        // A reconnecting event source resumes after its Last-Event-ID; NDJSON is one event per line.
        let resumed = try await server.request(
            "GET", "/v1/runs/\(runID)/history", role: .reader, headers: ["Accept": "text/event-stream", "Last-Event-ID": "2"])
        #expect(resumed.text.split(separator: "\n").first { $0.hasPrefix("id: ") } == "id: 3")
        let lines = try await server.request("GET", "/v1/runs/\(runID)/history", role: .reader, headers: ["Accept": "application/x-ndjson"])
        let objects = lines.text.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == ids.count)
        #expect(objects.allSatisfy { $0?["kind"] != nil })
    }

    @Test func errorsAreProblemDetailsWithThePublicCode() async throws {
        let server = try await ServerProcess()
        let cases: [(String, String, Any?, Data?, Int, String)] = [
            ("GET", "/v1/runs/no-such-run", nil, nil, 404, "runNotFound"),
            ("POST", "/v1/workflows/NoSuchFlow/runs", ["input": 1], nil, 422, "unknownWorkflowType"),
            ("POST", "/v1/workflows/Gather/runs", nil, Data("{not json".utf8), 400, "badRequest"),
            ("POST", "/v1/workflows/Gather/runs", ["input": "not a number"], nil, 400, "badInput"),
            ("POST", "/v1/workflows/Gather/runs", ["input": 1, "extra": true], nil, 400, "badRequest"),
            ("GET", "/v1/runs?limit=0", nil, nil, 400, "badRequest"),
            ("GET", "/v1/runs?limit=99999999999999999999", nil, nil, 400, "badRequest"),
            ("GET", "/v1/runs?status=sleeping", nil, nil, 400, "badRequest"),
            ("GET", "/v1/runs?startedAfter=yesterday", nil, nil, 400, "badRequest"),
            ("GET", "/v1/runs?cursor=nope", nil, nil, 400, "badRequest"),
            ("POST", "/v1/workflows/Gather/runs?wait=forever", ["input": 1], nil, 400, "badRequest"),
            ("POST", "/v1/workflows/Gather/runs?wait=99999s", ["input": 1], nil, 400, "badRequest"),
            ("POST", "/v1/runs/no-such-run/signals/item", "x", nil, 404, "runNotFound"),
            ("POST", "/v1/runs/no-such-run/cancel", nil, nil, 404, "runNotFound"),
            ("GET", "/v1/nowhere", nil, nil, 404, "notFound"),
        ]
        for (method, path, json, body, status, code) in cases {
            let reply = try await server.request(method, path, role: .admin, json: json, body: body)
            #expect(reply.status == status, "\(method) \(path): \(reply.status) \(reply.text)")
            #expect(reply.header("Content-Type") == "application/problem+json", "\(method) \(path)")
            #expect(reply.json["code"] as? String == code, "\(method) \(path): \(reply.text)")
            #expect(reply.json["type"] as? String == "urn:durable:error:\(code)")
            #expect(reply.json["status"] as? Int == status)
            #expect((reply.json["detail"] as? String)?.isEmpty == false)
        }
        // A signal to a closed run.
        let done = try await server.request("POST", "/v1/workflows/Nap/runs?wait=20s", role: .submitter, json: ["input": 1])
        let closed = try await server.request("POST", "/v1/runs/\(done.json["runID"] as? String ?? "")/signals/item", role: .submitter, json: "x")
        #expect(closed.status == 409)
        #expect(closed.json["code"] as? String == "runClosed")
    }

    @Test func bodiesWaitersAndPagesAreBounded() async throws {
        let server = try await ServerProcess(arguments: ["--max-body", "2048", "--max-waiters", "1"])
        let big = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": String(repeating: "x", count: 4_000)])
        #expect(big.status == 413)
        #expect(big.json["code"] as? String == "tooLarge")
        let runID = try await server.start("Gather", input: 1)
        async let waiting = server.request("GET", "/v1/runs/\(runID)/result?wait=3s", role: .reader)
        try await Task.sleep(for: .milliseconds(300))
        let second = try await server.request("GET", "/v1/runs/\(runID)/result?wait=3s", role: .reader)
        #expect(second.status == 503)
        #expect(second.json["code"] as? String == "tooManyWaiters")
        #expect(second.header("Retry-After") == "1")
        #expect(try await waiting.status == 202)
        // A start whose wait cannot be taken on is still answered 202: it was recorded, and a 503
        // would have the client start it again.
        async let holding = server.request("GET", "/v1/runs/\(runID)/result?wait=2s", role: .reader)
        try await Task.sleep(for: .milliseconds(300))
        let started = try await server.request("POST", "/v1/workflows/Gather/runs?wait=2s", role: .submitter, json: ["input": 1])
        #expect(started.status == 202, "\(started.text)")
        _ = try await holding

        // Keyset pages: every run once, newest first.
        for index in 0..<5 { _ = try await server.start("Gather", input: 1, workflowID: "page-\(index)") }
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await server.request("GET", "/v1/runs?idPrefix=page-&limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""), role: .reader)
            #expect(page.status == 200)
            seen += (page.json["runs"] as? [[String: Any]] ?? []).compactMap { $0["workflowID"] as? String }
            cursor = page.json["nextCursor"] as? String
        } while cursor != nil
        #expect(seen == (0..<5).reversed().map { "page-\($0)" })
    }

    /// A journal another process holds locked: the request is answered 503 `timeout` at the request
    /// timeout (not when the lock goes), and what it did lands in the journal once the lock is gone,
    /// so the same request with the same Idempotency-Key then finds that run. Without `--worker`: a
    /// worker in the same process waits for the lock too (its lease renewals), and SQLite's waits
    /// block threads of Swift's cooperative pool, of which a 2-core machine has two (Docs/http.md,
    /// "Limits and timeouts", says what that means).
    @Test(.enabled(if: TestBackend.isSQLite, "locks the SQLite file")) func aRequestTheJournalCannotTakeInTimeIsAnswered503() async throws {
        let server = try await ServerProcess(worker: false, arguments: ["--request-timeout", "0.5"])
        _ = try await server.start("Gather", input: 1)  // the journal exists, the type is known
        // Another process's exclusive lock, held on a thread of its own until released.
        let lock = try DatabaseQueue(path: server.journal)
        let (locked, release) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        Thread {
            try? lock.inDatabase { db in
                try db.execute(sql: "BEGIN EXCLUSIVE")
                locked.signal()
                release.wait()
                try db.execute(sql: "COMMIT")
            }
        }.start()
        locked.wait()
        let began = ContinuousClock.now
        let headers = ["Idempotency-Key": "locked-1"]
        let reply = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 1], headers: headers)
        let took = ContinuousClock.now - began
        #expect(reply.status == 503, "\(reply.text)")
        #expect(reply.json["code"] as? String == "timeout")
        #expect(reply.header("Retry-After") == "1")
        #expect(took < .seconds(5), "answered at the timeout, not when the lock went: \(took)")
        release.signal()
        var again = reply
        try await eventually("the held start landing in the journal") {
            again = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 1], headers: headers)
            return again.header("Idempotent-Replayed") == "true"
        }
        #expect(again.status == 202)
        let runs = try await server.request("GET", "/v1/runs?type=Gather", role: .reader)
        #expect((runs.json["runs"] as? [Any])?.count == 2, "one run for the held request, none more")
    }

    @Test func operatorActionsCancelTerminateAndReset() async throws {
        let server = try await ServerProcess()
        let doomed = try await server.start("Gather", input: 3)
        let terminated = try await server.request("POST", "/v1/runs/\(doomed)/terminate", role: .operator, json: ["reason": "wrong claim"])
        #expect(terminated.status == 202)
        let outcome = try await server.request("GET", "/v1/runs/\(doomed)/result?wait=20s", role: .reader)
        #expect(outcome.json["status"] as? String == "terminated", "\(outcome.status) \(outcome.text)\n\(server.child.output.suffix(3_000))")
        #expect((outcome.json["failure"] as? [String: Any])?["message"] as? String == "wrong claim")

        let cancelled = try await server.start("Gather", input: 3)
        #expect(try await server.request("POST", "/v1/runs/\(cancelled)/cancel", role: .operator).status == 202)
        let cancelOutcome = try await server.request("GET", "/v1/runs/\(cancelled)/result?wait=20s", role: .reader)
        #expect(cancelOutcome.json["status"] as? String == "cancelled" || cancelOutcome.json["status"] as? String == "failed")

        let source = try await server.start("Gather", input: 2, workflowID: "resettable")
        _ = try await server.request("POST", "/v1/runs/\(source)/signals/item", role: .submitter, json: "a")
        var signalIndex: Int?
        try await eventually("the signal recorded") {
            let history = try await server.request("GET", "/v1/runs/\(source)/history", role: .reader)
            signalIndex = (history.json["events"] as? [[String: Any]])?.first { $0["kind"] as? String == "SignalReceived" }?["index"] as? Int
            return signalIndex != nil
        }
        let bad = try await server.request("POST", "/v1/runs/\(source)/reset", role: .operator, json: ["toEvent": 0])
        #expect(bad.status == 400)
        #expect(bad.json["code"] as? String == "badResetPoint")
        let reset = try await server.request("POST", "/v1/runs/\(source)/reset", role: .operator, json: ["toEvent": signalIndex!, "reason": "redo"])
        #expect(reset.status == 200, "\(reset.text)")
        let newRun = try #require(reset.json["newRunID"] as? String)
        #expect(newRun != source)
        _ = try await server.request("POST", "/v1/runs/resettable/signals/item", role: .submitter, json: "b")
        let after = try await server.request("GET", "/v1/runs/\(newRun)/result?wait=20s", role: .reader)
        #expect(after.json["result"] as? String == "a,b")

        // The run as `runs show` describes it, and its export file.
        let shown = try await server.request("GET", "/v1/runs/\(newRun)", role: .reader)
        #expect(shown.json["workflowID"] as? String == "resettable")
        #expect(shown.json["status"] as? String == "completed")
        let export = try await server.request("GET", "/v1/runs/\(newRun)/export", role: .reader)
        #expect(export.json["format"] as? String == "durable.history")
        #expect(export.header("Content-Disposition") == "attachment; filename=\"\(newRun).json\"")
    }

    @Test func queriesNeedTheApplicationsCodeAndSaySoWithoutIt() async throws {
        let app = try await ServerProcess()
        let runID = try await app.start("Gather", input: 3, workflowID: "asked")
        _ = try await app.request("POST", "/v1/runs/asked/signals/item", role: .submitter, json: "a")
        try await eventually("the query answering the item") {
            let reply = try await app.request("POST", "/v1/runs/asked/queries/items", role: .reader)
            return (reply.json["result"] as? [String]) == ["a"]
        }
        let unknown = try await app.request("POST", "/v1/runs/\(runID)/queries/nothing", role: .reader)
        #expect(unknown.status == 404)
        #expect(unknown.json["code"] as? String == "unknownQuery")
        _ = try await app.stop()

        let codeless = try await ServerProcess(codeless: true, journal: app.journal)
        let reply = try await codeless.request("POST", "/v1/runs/asked/queries/items", role: .reader)
        #expect(reply.status == 501)
        #expect(reply.json["code"] as? String == "unknownWorkflowType")
        #expect((reply.json["detail"] as? String)?.contains("APP serve") == true)
        // The code-less server knows the types workers recorded, and refuses others.
        #expect(try await codeless.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 1]).status == 202)
        #expect(try await codeless.request("POST", "/v1/workflows/Nope/runs", role: .submitter, json: ["input": 1]).status == 422)
    }

    @Test func theAuditLogRecordsEveryRequestThatIsNotAGet() async throws {
        let server = try await ServerProcess()
        let runID = try await server.start("Gather", input: 1)
        // A new run's entry is written with the run; a start answered with the open run of its ID is
        // recorded after the answer: one entry each.
        for _ in 1...2 {
            let again = try await server.request("POST", "/v1/workflows/Gather/runs", role: .submitter, json: ["input": 2, "workflowID": "same"])
            #expect(again.status == 202)
        }
        _ = try await server.request("POST", "/v1/runs/\(runID)/cancel", role: .operator, json: ["reason": "audit me"])
        _ = try await server.request("POST", "/v1/runs/\(runID)/terminate", role: .reader)
        _ = try await server.request("POST", "/v1/runs/no-such/signals/item", role: .submitter, json: 1)
        _ = try await server.request("GET", "/v1/runs", role: .reader)
        #expect(try await server.request("POST", "/v1/runs/\(runID)/cancel", role: nil).status == 401)
        #expect(try await server.request("POST", "/v1/nowhere", token: ServerProcess.unknownToken).status == 404)
        #expect(try await server.request("GET", "/v1/audit", role: .operator).status == 403)
        let log = try await server.request("GET", "/v1/audit", role: .admin)
        #expect(log.status == 200)
        let entries = try #require(log.json["entries"] as? [[String: Any]])
        let lines = entries.map { "\($0["actor"] ?? "") \($0["action"] ?? "") \($0["target"] ?? "") \($0["outcome"] ?? "")" }
        #expect(lines == [
            "token:submitter-token POST /v1/workflows/{type}/runs Gather 202",
            "token:submitter-token POST /v1/workflows/{type}/runs Gather 202",
            "token:submitter-token POST /v1/workflows/{type}/runs Gather 202",
            "token:operator-token POST /v1/runs/{id}/cancel \(runID) 202",
            "token:reader-token POST /v1/runs/{id}/terminate \(runID) 403",
            "token:submitter-token POST /v1/runs/{id}/signals/{name} no-such 404",
        ])
        #expect(entries.allSatisfy { ($0["source"] as? String)?.hasPrefix("http 127.0.0.1:") == true })
        #expect((entries.last?["detail"] as? String)?.contains("runNotFound") == true)
        // journal check verifies the entries.
        _ = try await server.stop()
        let check = try await runCommand(try productPath("durable"), ["journal", "check", "--journal", server.journal])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test func behindATrustedProxyTheAuditLogNamesTheClientItForwardedFor() async throws {
        let behind = try await ServerProcess(arguments: ["--trusted-proxy", "127.0.0.1,10.0.0.0/8"])
        let direct = try await ServerProcess()
        for (server, trusted) in [(behind, true), (direct, false)] {
            for forwarded in ["198.51.100.9, 203.0.113.7, 10.1.2.3", "[2001:db8::7]:443", "not an address", nil] {
                let headers = forwarded.map { ["X-Forwarded-For": $0] } ?? [:]
                #expect(try await server.request("POST", "/v1/runs/no-such/cancel", role: .operator, headers: headers).status == 404)
            }
            let log = try await server.request("GET", "/v1/audit", role: .admin)
            let sources = try #require(log.json["entries"] as? [[String: Any]]).map { $0["source"] as? String ?? "" }
                .map { $0.replacingOccurrences(of: #":[0-9]+$"#, with: ":PORT", options: .regularExpression) }
            #expect(sources == (trusted
                ? ["http 203.0.113.7 via 127.0.0.1:PORT", "http 2001:db8::7 via 127.0.0.1:PORT", "http 127.0.0.1:PORT", "http 127.0.0.1:PORT"]
                : Array(repeating: "http 127.0.0.1:PORT", count: 4)))
        }
        _ = try await behind.stop()
        _ = try await direct.stop()
    }

    @Test func aChangedTokenFileTakesEffectWithoutARestart() async throws {
        let server = try await ServerProcess()
        #expect(try await server.request("GET", "/v1/runs", role: .reader).status == 200)
        // The reader's token removed and another added: within about a second the one is refused and
        // the other accepted.
        var file = server.tokenFile
        file.tokens.removeAll { $0.role == .reader }
        let added = try file.adding(name: "late", role: .reader)
        try server.replaceTokenFile(with: added.file)
        try await eventually("the removed token refused", timeout: .seconds(10)) {
            try await server.request("GET", "/v1/runs", role: .reader).status == 401
        }
        #expect(try await server.request("GET", "/v1/runs", token: added.token).status == 200)
        #expect(server.child.output.contains("token file \(server.tokenPath) read again: 4 token(s) (added late; removed reader-token)"))
        // A file that is not a token file, then none: the server keeps the tokens it had, and says so once each.
        try Data("{\"tokens\": [".utf8).write(to: URL(fileURLWithPath: server.tokenPath))
        // (The file is looked at when a request with a token comes.)
        try await eventually("the bad file reported", timeout: .seconds(10)) {
            _ = try await server.request("GET", "/v1/runs", token: added.token)
            return server.child.output.contains("is not a token file")
        }
        #expect(try await server.request("GET", "/v1/runs", token: added.token).status == 200)
        #expect(try await server.request("GET", "/v1/runs", role: .reader).status == 401)
        try FileManager.default.removeItem(atPath: server.tokenPath)
        try await eventually("the missing file reported", timeout: .seconds(10)) {
            _ = try await server.request("GET", "/v1/runs", token: added.token)
            return server.child.output.contains("does not exist")
        }
        for _ in 0..<3 {  // more looks, a second apart
            try await Task.sleep(for: .seconds(1.1))
            #expect(try await server.request("GET", "/v1/runs", token: added.token).status == 200)
        }
        let output = server.child.output
        #expect(output.components(separatedBy: "keeps the 4 token(s) it had").count == 3, "one error for the bad file, one for the missing one:\n\(output)")
        // A file again, with no tokens: every token refused.
        try server.replaceTokenFile(with: TokenFile())
        try await eventually("every token refused", timeout: .seconds(10)) {
            try await server.request("GET", "/v1/runs", token: added.token).status == 401
        }
        #expect(try await server.request("GET", "/v1/runs", role: .admin).status == 401)
        _ = try await server.stop()
    }

    @Test func metricsCountRequestsByRouteTemplateNeverByRunID() async throws {
        let server = try await ServerProcess()
        let runID = try await server.start("Nap", input: 1)
        _ = try await server.request("GET", "/v1/runs/\(runID)/result?wait=20s", role: .reader)
        _ = try await server.request("GET", "/v1/runs/\(runID)", role: .reader)
        _ = try await server.request("GET", "/v1/nowhere/\(runID)", role: .reader)
        _ = try await server.request("DELETE", "/v1/runs/\(runID)", role: .reader)
        let metrics = try await server.request("GET", "/metrics", role: .reader)
        #expect(metrics.status == 200)
        #expect(metrics.header("Content-Type")?.hasPrefix("text/plain") == true)
        #expect(metrics.text.contains(#"durable_http_requests_total{method="GET",route="/v1/runs/{id}",status="200"} 1"#), "\(metrics.text)")
        #expect(metrics.text.contains(#"durable_http_request_duration_seconds_bucket{method="POST",route="/v1/workflows/{type}/runs""#))
        #expect(!metrics.text.contains(runID))
        #expect(metrics.text.contains(#"durable_http_requests_total{method="GET",route="unmatched",status="404"} 1"#))
        #expect(metrics.text.contains(#"durable_http_requests_total{method="DELETE",route="unmatched",status="405"} 1"#))
        // The engine's metrics of this process (the worker of `serve --worker`) are there too.
        #expect(metrics.text.contains(#"durable_runs_closed_total{workflow_type="Nap",outcome="completed"} 1"#))
        #expect(metrics.text.contains(#"durable_activity_attempts_total{activity_type="Step",outcome="completed"} 1"#))
        #expect(metrics.text.contains("durable_activity_schedule_to_start_seconds_bucket"))
        #expect(metrics.text.contains("durable_journal_commit_seconds_bucket"))
    }

    @Test func theServedDocumentIsTheCommittedOneAndListsExactlyTheServedRoutes() async throws {
        let server = try await ServerProcess(worker: false)
        let served = try await server.request("GET", "/openapi.yaml", role: nil)
        #expect(served.status == 200)
        let committed = try String(contentsOfFile: Self.repository + "/Docs/openapi.yaml", encoding: .utf8)
        #expect(served.text + "\n" == committed, "run Scripts/embed-openapi.sh after editing Docs/openapi.yaml")

        let documented = try Self.operations(committed)
        let routes = DurableServer.routes
        #expect(Set(documented.keys) == Set(routes.map { "\($0.method) \($0.path)" }))
        for route in routes {
            #expect(documented["\(route.method) \(route.path)"] == (route.role == nil), "security of \(route.method) \(route.path)")
        }
    }

    @Test func sigtermAnswersWaitersAndStopsCleanly() async throws {
        let server = try await ServerProcess()
        let runID = try await server.start("Gather", input: 1)
        async let waiting = server.request("GET", "/v1/runs/\(runID)/result?wait=50s", role: .reader)
        try await Task.sleep(for: .milliseconds(300))
        let began = ContinuousClock.now
        server.child.kill(SIGTERM)
        let reply = try await waiting
        #expect(reply.status == 202)
        #expect(ContinuousClock.now - began < .seconds(10))
        let exit = try await server.child.wait(timeout: .seconds(20))
        #expect(exit.status == 0, "\(server.child.output)")
        #expect(server.child.output.contains("server stopped cleanly"))
    }

    @Test func authAddPrintsATokenOnceAndStoresOnlyItsHash() async throws {
        let file = temporaryPath("tokens") + ".json"
        let durable = try productPath("durable")
        let added = try await runCommand(durable, ["auth", "add", "portal", "--role", "submitter", "--file", file])
        #expect(added.status == 0, "\(added.stderr)")
        let token = added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("dur_") && token.count > 40)
        let stored = try String(contentsOfFile: file, encoding: .utf8)
        #expect(!stored.contains(token))
        #expect(stored.contains(TokenFile.hash(token)))
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let again = try await runCommand(durable, ["auth", "add", "portal", "--role", "admin", "--file", file])
        #expect(again.status == 2)
        #expect(again.stderr.contains("exists already"))
        let badRole = try await runCommand(durable, ["auth", "add", "x", "--role", "root", "--file", file])
        #expect(badRole.status == 64)
        #expect(try TokenFile.load(file).tokens.map(\.name) == ["portal"])
        // A verifier finds the caller by the token, and nobody by another.
        let verifier = TokenVerifier(try TokenFile.load(file))
        #expect(verifier.caller(presenting: token) == Caller(name: "portal", role: .submitter))
        #expect(verifier.caller(presenting: token + "x") == nil)
    }

    @Test func workflowIDTemplatesFillFromTheEventAndNameWhatIsMissing() throws {
        let data: [String: Any] = ["claim": ["id": "C-7", "amount": 1200], "flag": true]
        #expect(try Template("claim-{data.claim.id}").fill(id: "e1", name: "n", data: data) == "claim-C-7")
        #expect(try Template("{name}/{id}/{data.claim.amount}").fill(id: "e1", name: "claim.filed", data: data) == "claim.filed/e1/1200")
        #expect(try Template("fixed").fill(id: "e1", name: "n", data: nil) == "fixed")
        for missing in ["x-{data.claim.nope}", "x-{data.flag}", "x-{data.claim}"] {
            #expect(throws: Problem.self, "\(missing)") { try Template(missing).fill(id: "e1", name: "n", data: data) }
        }
        #expect(Template("x-{data.a}").problem == nil)
        #expect(Template("x-{data}").problem != nil)
        #expect(Template("x-{other}").problem != nil)
        #expect(Template("x-{id").problem != nil)
        // A route table file is checked when loaded.
        let path = temporaryPath("routes") + ".json"
        try Data(#"{"a": {"start": "T", "signal": "s", "workflowID": "x"}}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: EventRoutesError.self) { try EventRoutes.load(path) }
        try Data(#"{"a": {"start": "T", "workflowID": "x-{bad}"}}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: EventRoutesError.self) { try EventRoutes.load(path) }
        try Data(#"{"a": {"signal": "s", "workflowID": "x-{data.k}"}}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(try EventRoutes.load(path) == EventRoutes(["a": .signal("s", workflowID: "x-{data.k}")]))
    }

    /// A pending activity's next retry: the failed attempt's time plus the delay it was given,
    /// cleared when the activity ends.
    @Test func aRetriedActivityShowsWhenItsNextAttemptIsDue() throws {
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let failure = try JSONEncoder().encode(FailureInfo(type: "Timeout", message: "model busy", retryable: true, nextRetryDelayMs: 2_500))
        var events = [
            HistoryEvent(index: 1, kind: .activityScheduled, time: t0, seq: 1, name: "Score"),
            HistoryEvent(index: 2, kind: .activityAttemptFailed, time: t0.addingTimeInterval(1), seq: 1, attempt: 1, data: failure),
        ]
        let pending = try #require(ActivitySummary.from(events).first)
        #expect(pending.nextRetryAt == t0.addingTimeInterval(3.5))
        #expect(RunJSON.activity(pending)["nextRetryAt"] as? String == RunJSON.time(t0.addingTimeInterval(3.5)))
        events.append(HistoryEvent(index: 3, kind: .activityCompleted, time: t0.addingTimeInterval(4), seq: 1, attempt: 2, data: Data("1".utf8)))
        #expect(ActivitySummary.from(events).first?.nextRetryAt == nil)
        #expect(RunJSON.activity(try #require(ActivitySummary.from(events).first))["nextRetryAt"] is NSNull)
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The document's operations (`METHOD /path`), each with whether it needs no token
    /// (`security: []`). The document is written in one layout: paths at two spaces, methods at four.
    static func operations(_ yaml: String) throws -> [String: Bool] {
        var operations: [String: Bool] = [:]
        var inPaths = false
        var path: String?
        var operation: String?
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            if inPaths, !line.hasPrefix(" "), !line.isEmpty { break }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"), let path {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                guard ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) else {
                    throw TestProcessError("unexpected key '\(line)' under \(path)")
                }
                operation = "\(method) \(path)"
                operations[operation!] = false
            } else if line == "      security: []", let operation {
                operations[operation] = true
            }
        }
        return operations
    }
}
