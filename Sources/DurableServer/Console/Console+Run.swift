import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension Console {
    /// The most events the history table lists (the export file has them all).
    static let historyRows = 2_000

    /// `GET /ui/runs/{id}`: a run by run ID (or the newest run of a workflow ID).
    func runPage(_ call: Call) async throws -> Response {
        let description = try await server.client.describe(try call.context.parameter("id"))
        let run = description.run
        let events = description.historyError == nil ? (try await server.client.journal.history(run, from: 0)) : []
        let now = Date()
        let operate = call.viewer?.may(Self.actionRole) == true
        let url = HTML.escape(HTML.runURL(run.runID))

        var flash = ""
        if let done = call.query["done"].flatMap(ConsoleAction.init(rawValue:)) {
            flash = "<p class=\"notice\" role=\"status\">\(HTML.escape(done.done))</p>"
        }

        // Summary.
        let (result, failure, continuedAs) = RunJSON.parts(of: description.outcome)
        var summary = """
            <dl class="summary">
            <dt>Status</dt><dd>\(HTML.status(run.status.rawValue))\(run.error.map { " <span class=\"muted\">\(HTML.escape($0))</span>" } ?? "")</dd>
            <dt>Workflow type</dt><dd>\(HTML.escape(run.workflowType))</dd>
            <dt>Workflow ID</dt><dd class="mono">\(HTML.escape(run.workflowID))</dd>
            <dt>Run ID</dt><dd class="mono">\(HTML.escape(run.runID))</dd>
            <dt>Started</dt><dd>\(HTML.time(run.createdAt))</dd>
            <dt>Closed</dt><dd>\(run.closedAt.map { HTML.time($0) + " (after \(HTML.duration($0.timeIntervalSince(run.createdAt))))" } ?? "—")</dd>
            <dt>Events</dt><dd>\(description.eventCount)</dd>
            <dt>Lease holder</dt><dd class="mono">\(run.leaseOwner.map { HTML.escape($0) + (run.leaseExpiresAt.map { " <span class=\"muted\">until \(HTML.time($0))</span>" } ?? "") } ?? "none")</dd>
            """
        if let parent = description.parent {
            summary += "<dt>Parent</dt><dd class=\"mono\">\(HTML.runLink(parent.parentRunID)) (its #\(parent.parentSeq))</dd>"
        }
        if let continuedAs { summary += "<dt>Continued as</dt><dd class=\"mono\">\(HTML.runLink(continuedAs))</dd>" }
        summary += "</dl>"
        if let error = description.historyError {
            summary += "<p class=\"error\" role=\"alert\">The history cannot be read: \(HTML.escape("\(error)"))</p>"
        }
        summary += "<div class=\"grid2\"><div><h3>Input</h3>\(HTML.jsonBlock(description.input, label: "input"))</div>"
        if let failure {
            summary += "<div><h3>Failure</h3><p class=\"error\">\(HTML.escape(failure.type)): \(HTML.escape(failure.message))</p></div>"
        } else if description.outcome != nil, continuedAs == nil {
            summary += "<div><h3>Result</h3>\(HTML.jsonBlock(result, label: "result"))</div>"
        }
        summary += "</div>"

        // Actions.
        var actions = ""
        if operate {
            let confirm = HTML.runURL(run.runID) + "/confirm"
            if run.status.isOpen {
                let awaited = (description.awaitedSignals ?? []).map { "<option value=\"\(HTML.escape($0))\"></option>" }.joined()
                actions += """
                    <div class="actions"><a class="button secondary" href="\(HTML.escape(confirm))?action=cancel">Cancel…</a>\
                    <a class="button danger" href="\(HTML.escape(confirm))?action=terminate">Terminate…</a></div>
                    <form class="action" method="post" action="\(HTML.escape(confirm))" aria-label="Send a signal">
                    \(csrfField(call))<input type="hidden" name="action" value="signal">
                    <label for="signal-name">Signal name</label>
                    <input type="text" id="signal-name" name="name" required list="awaited-signals" value="\(HTML.escape(description.awaitedSignals?.first ?? ""))">
                    <datalist id="awaited-signals">\(awaited)</datalist>
                    <label for="signal-input">Input (JSON; empty for null)</label>
                    <textarea id="signal-input" name="input" spellcheck="false"></textarea>
                    <div><button type="submit">Send signal…</button></div></form>
                    """
            }
            let points = Self.resetPoints(events)
            if points.isEmpty {
                actions += "<p class=\"muted\">Reset: the run has no activation to reset to yet (only its start).</p>"
            } else {
                let options = points.reversed().map { "<option value=\"\($0.index)\">\(HTML.escape(Self.describe($0)))</option>" }.joined()
                actions += """
                    <form class="action" method="get" action="\(HTML.escape(confirm))" aria-label="Reset the run">
                    <input type="hidden" name="action" value="reset">
                    <label for="reset-to">Reset to (activation boundaries only: the new run replays the events before it)</label>
                    <select id="reset-to" name="toEvent">\(options)</select>
                    <div><button type="submit" class="danger">Reset…</button></div></form>
                    """
            }
        }

        // Pending activities.
        let pending = description.pendingActivities
        var pendingHTML = ""
        if pending.isEmpty {
            pendingHTML = "<p class=\"muted\">None.</p>"
        } else {
            var rows = ""
            for activity in pending {
                let next: String
                if let due = activity.nextRetryAt {
                    next = due > now ? "attempt \(activity.attempts + 1) \(HTML.time(due)) (\(HTML.escape(HTML.relative(due, now: now))))"
                        : "attempt \(activity.attempts + 1) due since \(HTML.time(due)), running or about to"
                } else {
                    next = activity.attempts == 0 ? "first attempt running or queued" : "—"
                }
                let failureText = activity.lastFailure.map {
                    "<span class=\"failure\"><strong>\(HTML.escape($0.type))</strong>: \(HTML.escape($0.message))</span>"
                        + ($0.retryable == false ? " <span class=\"muted\">(not retryable)</span>" : "")
                } ?? "<span class=\"muted\">none</span>"
                let beat = activity.lastHeartbeat.map { "<pre class=\"json\">\(HTML.escape(HTML.prettyJSON(Data($0.utf8))))</pre>" } ?? "<span class=\"muted\">none</span>"
                let attempt = activity.lastAttempt
                var worker = [String]()
                if let pid = attempt?.pid { worker.append("pid \(pid)") }
                if let owner = run.leaseOwner { worker.append(HTML.escape(owner)) }
                var slot = [String]()
                if let name = attempt?.slot { slot.append(HTML.escape(name)) }
                if let cold = attempt?.cold { slot.append(cold ? "cold" : "warm") }
                if let warm = attempt?.warmUpMs { slot.append("warm-up \(HTML.escape(HTML.duration(warm / 1000)))") }
                rows += """
                    <tr class="pending-activity" data-seq="\(activity.seq)"><td>#\(activity.seq) \(HTML.escape(activity.activityType))\
                    \(activity.cancelRequested ? " <span class=\"muted\">(cancel requested)</span>" : "")</td>
                    <td>\(activity.attempts)</td><td>\(next)</td><td>\(failureText)</td><td>\(beat)</td>
                    <td class="mono">\(worker.isEmpty ? "—" : worker.joined(separator: "<br>"))</td><td>\(slot.isEmpty ? "—" : slot.joined(separator: ", "))</td></tr>
                    """
            }
            pendingHTML = """
                <div class="scroll"><table><thead><tr><th scope="col">Activity</th><th scope="col">Attempts recorded</th>\
                <th scope="col">Next attempt</th><th scope="col">Last failure</th><th scope="col">Last heartbeat</th>\
                <th scope="col">Worker</th><th scope="col">Slot</th></tr></thead><tbody>\(rows)</tbody></table></div>
                """
        }

        // Signals.
        var signals = "<dl class=\"summary\"><dt>Waits for</dt><dd>"
        if let awaited = description.awaitedSignals {
            signals += awaited.isEmpty ? "none now" : awaited.map { "<code>\(HTML.escape($0))</code>" }.joined(separator: ", ")
        } else {
            signals += run.status == .running
                ? "<span class=\"muted\">unknown: this server has no code of \(HTML.escape(run.workflowType)) to replay the run with</span>"
                : "<span class=\"muted\">nothing (the run is not running)</span>"
        }
        signals += "</dd><dt>Queued, not yet delivered</dt><dd>"
        signals += description.queuedSignals.isEmpty ? "none" : description.queuedSignals.map { "<code>\(HTML.escape($0))</code>" }.joined(separator: ", ")
        signals += "</dd><dt>Received</dt><dd>"
        let received = events.filter { $0.kind == .signalReceived }
        signals += received.isEmpty ? "none" : received.map { "<code>\(HTML.escape($0.name ?? "?"))</code> at \(HTML.time($0.time))" }.joined(separator: "<br>")
        signals += "</dd></dl>"
        if !description.rejectedSignals.isEmpty {
            signals += "<h3>Rejected (input did not decode)</h3><ul>" + description.rejectedSignals.map {
                "<li><code>\(HTML.escape($0.name))</code> at \(HTML.time($0.time)): \(HTML.escape($0.reason))</li>"
            }.joined() + "</ul>"
        }

        // Queries.
        let queries = server.hasCode ? """
            <form class="action" method="post" action="\(url)/query" aria-label="Run a query">\(csrfField(call))
            <label for="query-name">Query name</label><input type="text" id="query-name" name="name" required>
            <div><button type="submit">Run query</button></div></form>
            """ : "<p class=\"muted\">Queries need the workflow's code: this server has none (serve the journal with the application's own executable, APP serve).</p>"

        // Children.
        var children = ""
        if description.children.isEmpty {
            children = "<p class=\"muted\">None.</p>"
        } else {
            children = "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Type</th><th scope=\"col\">Workflow ID</th><th scope=\"col\">Run</th><th scope=\"col\">State</th></tr></thead><tbody>"
                + description.children.map {
                    "<tr><td>\($0.seq)</td><td>\(HTML.escape($0.workflowType))</td><td class=\"id\">\(HTML.escape($0.workflowID))</td><td class=\"id\">\(HTML.runLink($0.runID))</td><td>\(HTML.status($0.state))</td></tr>"
                }.joined() + "</tbody></table></div>"
        }

        // History.
        var history = "<div class=\"scroll\"><table class=\"history\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time</th><th scope=\"col\">Kind</th><th scope=\"col\">Seq</th><th scope=\"col\">Attempt</th><th scope=\"col\">Name</th><th scope=\"col\">Details</th></tr></thead><tbody>"
        for event in events.prefix(Self.historyRows) {
            var detail = ""
            if let failure = event.failure { detail = "\(failure)" } else if let data = event.data { detail = String(decoding: data.prefix(160), as: UTF8.self) }
            if event.encryptedData != nil { detail = "(encrypted)" }
            history += "<tr><td>\(event.index)</td><td>\(HTML.time(event.time))</td><td>\(HTML.escape(event.kind.name))</td><td>\(event.seq == 0 ? "" : String(event.seq))</td><td>\(event.attempt == 0 ? "" : String(event.attempt))</td><td>\(HTML.escape(event.name ?? ""))</td><td class=\"mono\">\(HTML.escape(detail))</td></tr>"
        }
        history += "</tbody></table></div>"
        if events.count > Self.historyRows { history += "<p class=\"muted\">The first \(Self.historyRows) of \(events.count) events; the export file has them all.</p>" }
        let fullJSON = (try? RunJSON.data(["run": RunJSON.run(run), "events": events.prefix(Self.historyRows).map(RunJSON.event)] as [String: Any], pretty: true)) ?? Data()
        history += """
            <details><summary>Full JSON\(events.count > Self.historyRows ? " (the first \(Self.historyRows) events)" : "")</summary><pre class="json" tabindex="0">\(HTML.escape(String(decoding: fullJSON, as: UTF8.self)))</pre></details>
            <p><a href="\(url)/export" download>Download the export file</a> <span class="muted">(what <code>durable replay --file</code> reads)</span></p>
            """

        let timeline = ConsoleTimeline(run: run, events: events, now: now)
        let legend = """
            <div class="legend" aria-hidden="true"><span class="lg-completed">activity completed</span><span class="lg-pending">activity open</span>\
            <span class="lg-failed">activity failed</span><span class="lg-attempt">failed attempt</span><span class="lg-timer">timer</span>\
            <span class="lg-child">child run</span><span class="lg-signal">signal</span></div>
            """
        let body = """
            \(flash)
            <h1>\(HTML.escape(run.workflowType)) <span class="mono">\(HTML.escape(run.workflowID))</span></h1>
            <p><a href="/ui/runs">← All runs</a> · <a href="/ui/runs\(HTML.escape(HTML.queryString([("idPrefix", run.workflowID)])))">Runs of this workflow ID</a>\
            \(run.status.isOpen ? " · <span id=\"live-state\" class=\"muted\" aria-live=\"polite\" hidden>connecting…</span>" : "")</p>
            <section id="summary" data-live aria-labelledby="h-summary"><h2 id="h-summary">Summary</h2>\(summary)</section>
            <section id="timeline" data-live aria-labelledby="h-timeline"><h2 id="h-timeline">Timeline</h2>
            <p class="muted">Activities, timers and child runs as bars from start to end (open ones to now); red dots are failed attempts, blue diamonds signals. Focus or click one for its details.</p>
            \(legend)<div class="timeline-wrap">\(timeline.svg())</div>
            \(timeline.rows.count > ConsoleTimeline.maximumRows ? "<p class=\"muted\">The first \(ConsoleTimeline.maximumRows) of \(timeline.rows.count) rows.</p>" : "")
            <p id="timeline-detail" class="timeline-detail" aria-live="polite"></p></section>
            <section id="pending" data-live aria-labelledby="h-pending"><h2 id="h-pending">Pending activities</h2>\(pendingHTML)</section>
            \(actions.isEmpty ? "" : "<section aria-labelledby=\"h-actions\"><h2 id=\"h-actions\">Actions</h2>\(actions)</section>")
            <section id="signals" data-live aria-labelledby="h-signals"><h2 id="h-signals">Signals</h2>\(signals)</section>
            <section aria-labelledby="h-queries"><h2 id="h-queries">Queries</h2>\(queries)</section>
            <section id="children" data-live aria-labelledby="h-children"><h2 id="h-children">Children</h2>\(children)</section>
            <section id="history" data-live aria-labelledby="h-history"><h2 id="h-history">Event history</h2>\(history)</section>
            \(run.status.isOpen ? "<p id=\"autorefresh\" class=\"live-toggle\" hidden><label><input type=\"checkbox\"> Also refresh every 10 s</label></p>" : "")
            """
        var attributes = ""
        if run.status.isOpen {
            // The stream starts after the last event this page shows.
            let after = events.last.map { "?after=\($0.index)" } ?? ""
            // Also redrawn every 10 s, for what changes without an event (when the next attempt is due).
            attributes = " data-refresh=\"10000\" data-events=\"\(url)/events\(after)\" data-event-kinds=\"\(EventKind.allCases.map(\.name).joined(separator: " "))\""
        }
        return page(call, title: "\(run.workflowType) \(run.workflowID)", body: body, bodyAttributes: attributes)
    }

    /// `GET /ui/runs/{id}/export`: the run's export file, as `GET /v1/runs/{id}/export` answers it.
    func export(_ call: Call) async throws -> Response {
        let (run, events) = try await server.client.history(try call.context.parameter("id"))
        let file = String(run.runID.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }.prefix(100))
        var headers = Self.securityHeaders()
        headers[.contentType] = "application/json"
        headers[.contentDisposition] = "attachment; filename=\"\(file).json\""
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try HistoryExport(run: run, events: events).encoded())))
    }
}
