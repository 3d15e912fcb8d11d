import Foundation
import Durable
import DurableJournal
import HTTPTypes
import Logging
import Hummingbird
import Synchronization

/// What `POST /v1/events` does with each event name: start a workflow, or signal a run, whose
/// workflow ID is made from the event by a template.
///
/// A template is text with `{id}` (the event's ID), `{name}`, or `{data.PATH}` (a string or number in
/// the event's data, `PATH` a dotted member path) in it: `claim-{data.claimId}`. As a file (`serve
/// --events FILE`):
///
/// ```json
/// {
///   "claim.submitted": {"start": "ClaimIntake", "workflowID": "claim-{data.claimId}"},
///   "claim.reviewed": {"signal": "review", "workflowID": "claim-{data.claimId}"}
/// }
/// ```
public struct EventRoutes: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Start a run of the workflow type, with the event's data as its input.
        case start(workflowType: String)
        /// Send the signal, with the event's data as its value.
        case signal(name: String)
    }

    public struct Route: Sendable, Equatable {
        public var action: Action
        /// The workflow ID template.
        public var workflowID: String

        public init(_ action: Action, workflowID: String) {
            self.action = action
            self.workflowID = workflowID
        }

        public static func start(_ workflowType: String, workflowID: String) -> Route {
            Route(.start(workflowType: workflowType), workflowID: workflowID)
        }

        public static func signal(_ name: String, workflowID: String) -> Route {
            Route(.signal(name: name), workflowID: workflowID)
        }
    }

    public var routes: [String: Route]

    public init(_ routes: [String: Route] = [:]) { self.routes = routes }

    /// Reads a route table file.
    /// - Throws: ``EventRoutesError`` naming the file and the entry that is wrong.
    public static func load(_ path: String) throws -> EventRoutes {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw EventRoutesError(description: "event route file \(path) cannot be read: \(error.localizedDescription)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw EventRoutesError(description: "event route file \(path) is not a JSON object of event names")
        }
        var routes: [String: Route] = [:]
        for (name, value) in object {
            guard let entry = value as? [String: Any], let template = entry["workflowID"] as? String, !template.isEmpty,
                  Set(entry.keys).isSubset(of: ["start", "signal", "workflowID"])
            else {
                throw EventRoutesError(description: "event route file \(path): '\(name)' must be {\"start\": TYPE or \"signal\": NAME, \"workflowID\": TEMPLATE}")
            }
            switch (entry["start"] as? String, entry["signal"] as? String) {
            case (let type?, nil) where !type.isEmpty: routes[name] = .start(type, workflowID: template)
            case (nil, let signal?) where !signal.isEmpty: routes[name] = .signal(signal, workflowID: template)
            default:
                throw EventRoutesError(description: "event route file \(path): '\(name)' needs either \"start\" or \"signal\", not both")
            }
            if let problem = Template(template).problem {
                throw EventRoutesError(description: "event route file \(path): '\(name)': \(problem)")
            }
        }
        return EventRoutes(routes)
    }
}

public struct EventRoutesError: Error, CustomStringConvertible {
    public var description: String
}

/// A workflow ID template, filled from one event.
struct Template {
    let text: String

    init(_ text: String) { self.text = text }

    /// What is wrong with the template itself, if anything.
    var problem: String? {
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else { return "a '{' in '\(text)' is not closed" }
            let field = rest[rest.index(after: open)..<close]
            guard field == "id" || field == "name" || field.hasPrefix("data.") && field.count > 5 else {
                return "'{\(field)}' in '\(text)' is none of {id}, {name}, {data.PATH}"
            }
            rest = rest[rest.index(after: close)...]
        }
        return nil
    }

    /// The template with its fields filled from the event.
    /// - Throws: a 422 problem naming a field the event does not have (or has as neither string nor number).
    func fill(id: String, name: String, data: Any?) throws -> String {
        var result = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            result += rest[..<open]
            let field = String(rest[rest.index(after: open)..<close])
            switch field {
            case "id": result += id
            case "name": result += name
            default:
                var value: Any? = data
                for member in field.dropFirst(5).split(separator: ".") {
                    value = (value as? [String: Any])?[String(member)]
                }
                switch value {
                case let text as String where !text.isEmpty: result += text
                case let number as NSNumber where !(number is Bool) && "\(number)" != "true" && "\(number)" != "false": result += "\(number)"
                default:
                    throw Problem(.unprocessableContent, "badEvent", "event '\(id)' (\(name)) has no string or number at \(field) for the workflow ID template '\(text)'")
                }
            }
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }
}

extension DurableServer {
    static func addEventRoutes(to book: inout RouteBook, server: DurableServer?) {
        book.add(.post, "/v1/events", role: .submitter) { request, context in
            try await server!.intake(request, context)
        }
    }

    /// An event as posted: `{"name": …, "id": …, "data": …}`.
    struct PostedEvent {
        var name: String
        var id: String
        var data: Any?
        var route: EventRoutes.Route
        var workflowID: String
    }

    /// `POST /v1/events` with one event or an array of at most 100. Every event is checked first (a
    /// bad one refuses the request, and nothing is done); then each is carried out in order, and a
    /// repeated event ID does nothing again: its answer is the first one's.
    func intake(_ request: Request, _ context: ServerContext) async throws -> Response {
        let parsed = try await jsonBody(request, context).value
        let list: [Any] = (parsed as? [Any]) ?? [parsed]
        guard (1...100).contains(list.count) else {
            throw Problem.badRequest("post 1 to 100 events at a time, not \(list.count)")
        }
        let events = try list.enumerated().map { position, item -> PostedEvent in
            guard let object = item as? [String: Any], let name = object["name"] as? String, let id = object["id"] as? String,
                  !name.isEmpty, !id.isEmpty, id.utf8.count <= 255, Set(object.keys).isSubset(of: ["name", "id", "data"])
            else {
                throw Problem.badRequest("event \(position) must be {\"name\": TEXT, \"id\": TEXT (1 to 255 bytes), \"data\": JSON}")
            }
            guard let route = options.eventRoutes.routes[name] else {
                let known = options.eventRoutes.routes.keys.sorted()
                throw Problem(.unprocessableContent, "unknownEvent", "no route for event name '\(name)'"
                    + (known.isEmpty ? "; this server has no event routes (serve --events FILE)" : "; routed names: \(known.joined(separator: ", "))"))
            }
            let workflowID = try Template(route.workflowID).fill(id: id, name: name, data: object["data"])
            return PostedEvent(name: name, id: id, data: object["data"], route: route, workflowID: workflowID)
        }
        var results: [[String: Any]] = []
        for event in events {
            results.append(try await handle(event, caller: context.identity?.name ?? "", peer: context.peer))
        }
        return try JSONResponse.ok(["results": results], status: .accepted)
    }

    /// Carries out one event once: a repeated event ID answers what the first one did. An event is
    /// handled once it is recorded in the audit log with the target `event:ID` (a signal in the same
    /// transaction as its record, a start after it); an event that failed is not, and may be posted
    /// again.
    func handle(_ event: PostedEvent, caller: String, peer: String) async throws -> [String: Any] {
        let key = "event:\(event.id)"
        guard let claim = eventsInFlight.claim(key) else {
            return ["id": event.id, "name": event.name, "outcome": "duplicate", "workflowID": event.workflowID,
                    "detail": "an event with this ID is being handled now"]
        }
        defer { withExtendedLifetime(claim) {} }
        // Only the intake's own entries count (its actions start with "event "): a request that merely
        // names `event:ID` as a run ID is audited with that target too.
        if let first = try await client.auditLog(target: key, limit: 100).first(where: { $0.action.hasPrefix("event ") }) {
            return ["id": event.id, "name": event.name, "outcome": "duplicate", "workflowID": event.workflowID,
                    "first": AuditJSON.entry(first)]
        }
        let data = try RunJSON.data(event.data ?? NSNull())
        var result: [String: Any] = ["id": event.id, "name": event.name, "workflowID": event.workflowID]
        let action: String
        do {
            switch event.route.action {
            case .start(let type):
                action = "event start \(type)"
                try await checkWorkflowType(type, input: data)
                let (runID, existing) = try await client.submit(workflowType: type, input: data, id: event.workflowID)
                result["outcome"] = existing ? "existing" : "started"
                result["runID"] = runID
            case .signal(let name):
                // The signal and its record in one transaction, unless another server recorded the
                // event meanwhile: once, however many servers it is posted to.
                let entry = AuditDraft(
                    actor: "token:\(caller)", source: "http \(peer)", action: "event signal \(name)", target: key,
                    outcome: "signalled", detail: nil)
                let workflowID = event.workflowID
                switch try await client.signal(
                    workflowID, name: name, json: data, target: key, unlessRecordedAs: "event ",
                    recording: { run in
                        var entry = entry
                        entry.detail = "workflow \(workflowID) run \(run.runID)"
                        return entry
                    })
                {
                case .sent(let run, _):
                    result["runID"] = run.runID
                    result["outcome"] = "signalled"
                case .recordedBefore(let first):
                    result["outcome"] = "duplicate"
                    result["first"] = AuditJSON.entry(first)
                }
                return result
            }
        } catch {
            let problem = Problem.from(error)
            result["outcome"] = "failed"
            result["error"] = ["code": problem.code, "status": problem.status.code, "detail": problem.detail] as [String: Any]
            return result  // not recorded with the key: the same event may be posted again once the cause is fixed
        }
        // The record that the event was handled: what a repeated post of its ID finds. The event took
        // effect already, so a failure here is logged and answered, not thrown.
        do {
            try await client.recordAudit(AuditDraft(
                actor: "token:\(caller)", source: "http \(peer)", action: action, target: key,
                outcome: result["outcome"] as? String ?? "ok",
                detail: "workflow \(event.workflowID) run \(result["runID"] as? String ?? "?")"))
        } catch {
            logger.error("event \(event.id) was handled but not recorded in the audit log, so posting it again would handle it again: \(error)")
            result["detail"] = "handled, but not recorded: posting this event ID again would handle it again"
        }
        return result
    }
}

/// The event IDs being handled now, so that two posts of one event at once do it once.
final class InFlightKeys: Sendable {
    private let keys = Mutex(Set<String>())

    /// A claim on `key`, released when the claim goes away; `nil` when another request holds it.
    func claim(_ key: String) -> Claim? {
        keys.withLock { $0.insert(key).inserted } ? Claim(owner: self, key: key) : nil
    }

    final class Claim: Sendable {
        let owner: InFlightKeys
        let key: String
        init(owner: InFlightKeys, key: String) {
            self.owner = owner
            self.key = key
        }
        deinit { _ = owner.keys.withLock { $0.remove(key) } }
    }
}
