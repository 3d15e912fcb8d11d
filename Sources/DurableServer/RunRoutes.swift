import Crypto
import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
}

extension DurableServer {
    static func addRunRoutes(to book: inout RouteBook, server: DurableServer?) {
        book.add(.post, "/v1/workflows/{type}/runs", role: .submitter, deadline: .requestAndWait) { request, context in
            try await server!.startRun(request, context)
        }
        book.add(.get, "/v1/runs", role: .reader) { request, _ in
            try await server!.listRuns(QueryParameters(request))
        }
        book.add(.get, "/v1/runs/{id}", role: .reader) { _, context in
            try JSONResponse.ok(RunJSON.description(try await server!.client.describe(try context.parameter("id"))))
        }
        book.add(.get, "/v1/runs/{id}/result", role: .reader, deadline: .requestAndWait) { request, context in
            let server = server!
            let run = try await server.findRun(try context.parameter("id"))
            let wait = try parseWait(QueryParameters(request)["wait"], maximum: server.options.maximumWait) ?? .zero
            return try await server.answer(run, waitingUpTo: wait, replayed: false)
        }
        book.add(.get, "/v1/runs/{id}/history", role: .reader, deadline: .stream) { request, context in
            try await server!.history(request, context)
        }
        book.add(.get, "/v1/runs/{id}/export", role: .reader) { _, context in
            try await server!.export(try context.parameter("id"))
        }
        book.add(.post, "/v1/runs/{id}/signals/{name}", role: .submitter) { request, context in
            let server = server!
            let body = try await server.jsonBody(request, context, empty: Data("null".utf8)).data
            let runID = try await server.client.signal(try context.parameter("id"), name: try context.parameter("name"), json: body)
            return try JSONResponse.ok(["runID": runID, "signal": try context.parameter("name")], status: .accepted)
        }
        book.add(.post, "/v1/runs/{id}/queries/{name}", role: .reader) { _, context in
            let server = server!
            let name = try context.parameter("name")
            let run = try await server.findRun(try context.parameter("id"))
            guard server.hasCode else {
                throw Problem(.notImplemented, "unknownWorkflowType", "this server has no workflow code, so it cannot answer queries: serve the journal with the application's own executable (APP serve), which has the code of \(run.workflowType)")
            }
            do {
                let answer = try await server.client.query(run.runID, name: name)
                return try JSONResponse.ok(["runID": run.runID, "query": name, "result": RunJSON.value(answer)])
            } catch let error as DurableError where error.code == .unknownWorkflowType {
                throw Problem(.notImplemented, "unknownWorkflowType", "this server has no code of workflow \(run.workflowType), so it cannot answer the query: \(error)")
            }
        }
        book.add(.post, "/v1/runs/{id}/cancel", role: .operator) { request, context in
            let server = server!
            let reason = try await server.reason(request, context, default: "cancelled over HTTP by \(context.identity?.name ?? "?")")
            let runID = try await server.client.cancel(try context.parameter("id"), reason: reason)
            return try JSONResponse.ok(["runID": runID, "requested": "cancel"], status: .accepted)
        }
        book.add(.post, "/v1/runs/{id}/terminate", role: .operator) { request, context in
            let server = server!
            let reason = try await server.reason(request, context, default: "terminated over HTTP by \(context.identity?.name ?? "?")")
            let runID = try await server.client.terminate(try context.parameter("id"), reason: reason)
            return try JSONResponse.ok(["runID": runID, "requested": "terminate"], status: .accepted)
        }
        book.add(.post, "/v1/runs/{id}/reset", role: .operator) { request, context in
            let server = server!
            let body = try await server.jsonObject(request, context)
            guard let index = body["toEvent"] as? Int, index >= 0, Set(body.keys).isSubset(of: ["toEvent", "reason"]) else {
                throw Problem.badRequest("the body must be {\"toEvent\": INDEX, \"reason\": TEXT}, with the index of an event that starts an activation")
            }
            let reason = try Self.reason(in: body, default: "reset over HTTP by \(context.identity?.name ?? "?")")
            let report = try await server.worker.reset(try context.parameter("id"), toEvent: index, reason: reason)
            return try JSONResponse.ok([
                "sourceRunID": report.sourceRunID, "newRunID": report.newRunID, "workflowID": report.workflowID,
                "eventsKept": report.eventsKept, "requeued": report.requeued,
            ] as [String: Any])
        }
    }

    // MARK: - Starting runs

    /// `POST /v1/workflows/{type}/runs` with `{"input": …, "workflowID": …, "idReusePolicy": …}`.
    func startRun(_ request: Request, _ context: ServerContext) async throws -> Response {
        let type = try context.parameter("type")
        let query = QueryParameters(request)
        let wait = try parseWait(query["wait"], maximum: options.maximumWait)
        let body = try await jsonObject(request, context)
        let unknown = Set(body.keys).subtracting(["input", "workflowID", "idReusePolicy"])
        guard unknown.isEmpty else {
            throw Problem.badRequest("unknown member(s) \(unknown.sorted().joined(separator: ", ")) in the body; it holds input, workflowID and idReusePolicy")
        }
        let input = try RunJSON.data(body["input"] ?? NSNull())
        var workflowID = try body["workflowID"].map { value -> String in
            guard let text = value as? String else { throw Problem.badRequest("workflowID must be a string") }
            return text
        }
        let policy = try body["idReusePolicy"].map { value -> WorkflowIDReusePolicy in
            guard let text = value as? String, let policy = WorkflowIDReusePolicy(rawValue: text) else {
                throw Problem.badRequest("idReusePolicy must be one of \(WorkflowIDReusePolicy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return policy
        } ?? .allowDuplicateFailedOnly
        try await checkWorkflowType(type, input: input)

        // A repeated request with the same Idempotency-Key (from the same token) gets the same run. With
        // no workflow ID in the body, the key makes one, and a run of that ID is the first request's (the
        // same type and input) or the key's reuse for another request (refused). With a workflow ID, the
        // newest run of that ID with the same type and input is the first request's; any other run of
        // the ID is left to the reuse policy, as without a key.
        var replayed: RunRecord?
        if let key = request.headers[.idempotencyKey] {
            guard !key.isEmpty, key.utf8.count <= 255 else { throw Problem.badRequest("Idempotency-Key must be 1 to 255 bytes") }
            let derived = workflowID == nil
            if derived {
                let digest = SHA256.hash(data: Data("\(context.identity?.name ?? "")\n\(key)".utf8))
                workflowID = "idem-" + digest.prefix(16).lowercaseHex
            }
            if let existing = try await client.journal.findRun(workflowID!) {
                let first = try await client.journal.history(existing, from: 0).first
                if existing.workflowType == type, first?.data == input {
                    replayed = existing
                } else if derived {
                    throw Problem(.unprocessableContent, "idempotencyKeyReused", "Idempotency-Key '\(key)' was used for another request (workflow \(existing.workflowType), run \(existing.runID)); use a new key for a new request")
                }
            }
        }
        let run: RunRecord
        var existing = replayed != nil
        if let replayed {
            run = replayed
        } else {
            // Not waiting, a new run is answered 202: its audit entry is written with it, in its
            // transaction (one commit, not two); an open run of the ID is answered otherwise, and the
            // audit middleware records that answer.
            let answersAtOnce = (wait ?? .zero) == .zero
            let audit = answersAtOnce && context.auditSlip != nil ? context.auditDraft(request, status: 202, problem: nil) : nil
            let started = try await client.submit(workflowType: type, input: input, id: workflowID, idReuse: policy, audit: audit)
            if !started.existing && answersAtOnce {
                if audit != nil { context.auditSlip?.markRecorded() }
                // Just recorded, pending: answered from what the submit knows, without reading it back.
                return Self.accepted(runID: started.runID, workflowID: workflowID ?? started.runID, workflowType: type)
            }
            existing = started.existing
            run = try await findRun(started.runID)
            guard run.workflowType == type else {
                throw JournalError(.workflowIDInUse(workflowID: run.workflowID, runID: run.runID))
            }
        }
        var response = try await answer(run, waitingUpTo: wait ?? .zero, replayed: replayed != nil, existing: existing, afterStart: true)
        if replayed != nil { response.headers[.idempotentReplayed] = "true" }
        return response
    }

    /// Refuses a workflow type no worker runs: with the application's code, by its registrations (and
    /// the input by the workflow's input type); without it, by the types workers recorded in the journal.
    func checkWorkflowType(_ type: String, input: Data) async throws {
        if hasCode {
            try worker.validate(workflowType: type, input: input)
            return
        }
        let (known, names) = try await knownTypes.contains(type, client: client)
        guard known else {
            throw DurableError(.unknownWorkflowType(type, known: names))
        }
    }

    /// 200 with the outcome when the run has ended (waiting up to `wait` for it), else 202 with its
    /// status and `Location`.
    /// `afterStart`: the run was just recorded, so a wait the server cannot take on now (too many
    /// waiters) is answered 202 rather than 503, which a client would retry, starting it again.
    func answer(
        _ run: RunRecord, waitingUpTo wait: Duration, replayed: Bool, existing: Bool = false, afterStart: Bool = false
    ) async throws -> Response {
        var summary: [String: Any] = [
            "runID": run.runID, "workflowID": run.workflowID, "workflowType": run.workflowType,
        ]
        var outcome: RunOutcome?
        if !run.status.isOpen {
            // Read from its last event: a closed run's outcome is recorded, and waiting for it (through
            // a worker of this process still tearing the run down) could outlast the request.
            outcome = try await client.closedOutcome(run)
        } else if wait > .zero {
            do {
                outcome = try await self.outcome(of: run.runID, within: wait)
            } catch let problem as Problem where problem.code == "tooManyWaiters" && afterStart {
                outcome = nil
            }
        }
        guard let outcome else {
            let current = try await client.journal.findRun(run.runID) ?? run
            summary["status"] = current.status.rawValue
            if existing { summary["existing"] = true }
            return try JSONResponse.ok(summary, status: .accepted, headers: [.location: "/v1/runs/\(run.runID)"])
        }
        summary["status"] = (try await client.journal.findRun(run.runID) ?? run).status.rawValue
        summary.merge(RunJSON.outcome(outcome)) { _, new in new }
        if existing { summary["existing"] = true }
        return try JSONResponse.ok(summary, headers: [.location: "/v1/runs/\(run.runID)"])
    }

    /// The 202 of a run just recorded, its small body written directly (the common answer of a start,
    /// so without `JSONSerialization`): the members of ``answer(_:waitingUpTo:replayed:existing:afterStart:)``'s 202.
    static func accepted(runID: String, workflowID: String, workflowType: String) -> Response {
        var body = ByteBuffer()
        body.writeString("{\"runID\":")
        body.writeJSONString(runID)
        body.writeString(",\"status\":\"pending\",\"workflowID\":")
        body.writeJSONString(workflowID)
        body.writeString(",\"workflowType\":")
        body.writeJSONString(workflowType)
        body.writeString("}")
        return Response(
            status: .accepted, headers: [.contentType: "application/json", .location: "/v1/runs/\(runID)"],
            body: .init(byteBuffer: body))
    }

    /// A run's export file (`GET /v1/runs/{id}/export`, and the console's link to it), as an attachment
    /// named by its run ID (ASCII letters, digits, `-`, `_` and `.` only).
    func export(_ id: String, headers extra: HTTPFields = [:]) async throws -> Response {
        let (run, events) = try await client.history(id)
        var headers = extra
        headers[.contentType] = "application/json"
        headers[.contentDisposition] = "attachment; filename=\"\(Self.exportFileName(run.runID)).json\""
        return Response(
            status: .ok, headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: try HistoryExport(run: run, events: events).encoded())))
    }

    /// A run ID as a file name: ASCII letters, digits, `-`, `_` and `.` kept, anything else `_`, at most
    /// 100 characters.
    static func exportFileName(_ runID: String) -> String {
        String(runID.unicodeScalars.map { scalar -> Character in
            let kept = scalar.isASCII
                && (CharacterSet.alphanumerics.contains(scalar) || "-_.".unicodeScalars.contains(scalar))
            return kept ? Character(scalar) : "_"
        }.prefix(100))
    }

    func findRun(_ id: String) async throws -> RunRecord {
        guard let run = try await client.journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        return run
    }

    // MARK: - Listing

    /// `GET /v1/runs`: the filters of `runs list`, newest first (or oldest), a page at a time; the
    /// page's `nextCursor` asks for the next one.
    func listRuns(_ query: QueryParameters) async throws -> Response {
        var filter = RunFilter(limit: try query.integer("limit", in: 1...1_000) ?? 100)
        if let statuses = query.values["status"] {
            filter.statuses = try statuses.split(separator: ",", omittingEmptySubsequences: false).map { name in
                guard let status = RunStatus(rawValue: String(name)) else {
                    throw Problem.badRequest("status must be one or more of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
                }
                return status
            }
        }
        filter.workflowType = query["type"]
        filter.workflowIDPrefix = query["idPrefix"]
        filter.startedAfter = try query.time("startedAfter")
        filter.startedBefore = try query.time("startedBefore")
        switch query.values["order"] ?? "newest" {
        case "newest": filter.oldestFirst = false
        case "oldest": filter.oldestFirst = true
        case let other: throw Problem.badRequest("order must be newest or oldest, not '\(other)'")
        }
        if let cursor = query["cursor"] {
            guard try await client.journal.findRun(cursor)?.runID == cursor else {
                throw Problem.badRequest("cursor '\(cursor)' names no run (it may have been pruned); start again without a cursor")
            }
            filter.afterRunID = cursor
        }
        let runs = try await client.runs(filter)
        let next: Any = runs.count == filter.limit ? runs.last?.runID ?? NSNull() : NSNull()
        return try JSONResponse.ok(["runs": runs.map(RunJSON.run), "nextCursor": next] as [String: Any])
    }

    // MARK: - Bodies

    /// The request's body, which must be JSON, parsed once: its bytes and its value. `empty` stands
    /// for an empty body when given.
    func jsonBody(_ request: Request, _ context: ServerContext, empty: Data? = nil) async throws -> (data: Data, value: Any) {
        var request = request
        let buffer = try await request.collectBody(upTo: context.maxUploadSize)
        var data = Data(buffer.readableBytesView)
        if data.isEmpty, let empty { data = empty }
        do {
            return (data, try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
        } catch {
            throw Problem.badRequest("the body is not valid JSON")
        }
    }

    /// The request's body as a JSON object (`{}` when empty).
    func jsonObject(_ request: Request, _ context: ServerContext) async throws -> [String: Any] {
        guard let object = try await jsonBody(request, context, empty: Data("{}".utf8)).value as? [String: Any] else {
            throw Problem.badRequest("the body must be a JSON object")
        }
        return object
    }

    /// `{"reason": TEXT}` from the body, or `default` without one.
    func reason(_ request: Request, _ context: ServerContext, default fallback: String) async throws -> String {
        let body = try await jsonObject(request, context)
        guard Set(body.keys).isSubset(of: ["reason"]) else { throw Problem.badRequest("the body holds only a reason: {\"reason\": TEXT}") }
        return try Self.reason(in: body, default: fallback)
    }

    /// The body's `reason`: a string of 1 to 4096 bytes, or `default` when absent.
    static func reason(in body: [String: Any], default fallback: String) throws -> String {
        guard let value = body["reason"] else { return fallback }
        guard let reason = value as? String, !reason.isEmpty, reason.utf8.count <= 4_096 else {
            throw Problem.badRequest("reason must be a string of 1 to 4096 bytes")
        }
        return reason
    }
}

extension ServerContext {
    /// A path parameter, percent-decoded.
    func parameter(_ name: String) throws -> String {
        guard let value = parameters.get(name) else { throw Problem.badRequest("missing path parameter \(name)") }
        return value.contains("%") ? value.removingPercentEncoding ?? value : value
    }
}

extension ByteBuffer {
    /// `text` as a JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8.
    mutating func writeJSONString(_ text: String) {
        writeInteger(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): writeString("\\\"")
            case UInt8(ascii: "\\"): writeString("\\\\")
            case 0x0A: writeString("\\n")
            case 0x0D: writeString("\\r")
            case 0x09: writeString("\\t")
            case 0..<0x20: writeString("\\u00" + (byte < 0x10 ? "0" : "") + String(byte, radix: 16))
            default: writeInteger(byte)
            }
        }
        writeInteger(UInt8(ascii: "\""))
    }
}
