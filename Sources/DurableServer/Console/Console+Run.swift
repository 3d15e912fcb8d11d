import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension Console {
    /// `GET /ui/runs/{id}`: a run by run ID (or the newest run of a workflow ID).
    func runPage(_ call: Call) async throws -> Response {
        // One read of the history: the description is made from it, and the page shows it.
        let (description, events) = try await server.client.describeWithHistory(try call.context.parameter("id"))
        let run = description.run
        let parts = RunPage(description: description, events: events, now: Date())
        let operate = call.viewer?.may(Self.actionRole) == true
        let flash = call.query["done"].flatMap(ConsoleAction.init(rawValue:)).map {
            "<p class=\"notice\" role=\"status\">\(HTML.escape($0.done))</p>"
        } ?? ""
        func section(_ id: String, _ title: String, live: Bool = true, _ content: String) -> String {
            "<section id=\"\(id)\"\(live ? " data-live" : "") aria-labelledby=\"h-\(id)\"><h2 id=\"h-\(id)\">\(title)</h2>\(content)</section>"
        }
        let sameID = HTML.escape("/ui/runs" + HTML.queryString([("idPrefix", run.workflowID)]))
        let liveState = run.status.isOpen
            ? " · <span id=\"live-state\" class=\"muted\" aria-live=\"polite\" hidden>connecting…</span>" : ""
        let body = """
            \(flash)
            <h1>\(HTML.escape(run.workflowType)) <span class="mono">\(HTML.escape(run.workflowID))</span></h1>
            <p><a href="/ui/runs">← All runs</a> · <a href="\(sameID)">Runs of this workflow ID</a>\(liveState)</p>
            \(section("summary", "Summary", parts.summary()))
            \(section("timeline", "Timeline", parts.timeline()))
            \(section("pending", "Pending activities", parts.pending()))
            \(operate ? section("actions", "Actions", live: false, parts.actions(csrfField: csrfField(call))) : "")
            \(section("signals", "Signals", parts.signals()))
            \(section("queries", "Queries", live: false, parts.queries(hasCode: server.hasCode, csrfField: csrfField(call))))
            \(section("children", "Children", parts.children()))
            \(section("lineage", "Model lineage", parts.lineage()))
            \(section("history", "Event history", parts.history()))
            \(run.status.isOpen ? "<p id=\"autorefresh\" class=\"live-toggle\" hidden><label><input type=\"checkbox\"> Also refresh every 10 s</label></p>" : "")
            """
        var attributes = ""
        if run.status.isOpen {
            // The stream starts after the last event this page shows; the page is also redrawn every
            // 10 s, for what changes without an event (how long until the next attempt).
            let after = events.last.map { "?after=\($0.index)" } ?? ""
            let kinds = EventKind.allCases.map(\.name).joined(separator: " ")
            attributes = " data-refresh=\"10000\" data-events=\"\(parts.url)/events\(after)\" data-event-kinds=\"\(kinds)\""
        }
        return page(call, title: "\(run.workflowType) \(run.workflowID)", body: body, bodyAttributes: attributes)
    }

    /// `GET /ui/runs/{id}/export`: the run's export file, as `GET /v1/runs/{id}/export` answers it.
    func export(_ call: Call) async throws -> Response {
        try await server.export(try call.context.parameter("id"), headers: Self.securityHeaders())
    }
}
