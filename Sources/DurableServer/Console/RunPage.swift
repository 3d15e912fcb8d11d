import Durable
import DurableJournal
import Foundation

/// The sections of a run's console page, each as HTML (every value escaped), from the run's
/// description and history.
struct RunPage {
    let description: RunDescription
    let events: [HistoryEvent]
    let now: Date
    var run: RunRecord { description.run }
    /// The run page's URL, escaped for an attribute.
    var url: String { HTML.escape(HTML.runURL(run.runID)) }

    /// The most events the history table and its JSON show (the export file has them all).
    static let historyRows = 2_000
    /// The most bytes of an input or result shown (the export file has them all).
    static let maximumPayload = 64 * 1024

    /// An input or result: pretty JSON, or its first ``maximumPayload`` bytes as they are, with a note
    /// and the export file's link, when it is larger.
    func payload(_ data: Data?, label: String) -> String {
        guard let data, data.count > Self.maximumPayload else { return HTML.jsonBlock(data, label: label) }
        let head = String(decoding: data.prefix(Self.maximumPayload), as: UTF8.self)
        return """
            <pre class="json" tabindex="0" aria-label="\(HTML.escape(label)) (cut)">\(HTML.escape(head))…</pre>
            <p class="muted">The first \(Self.maximumPayload / 1024) KiB of \(data.count) bytes; \
            <a href="\(url)/export" download>the export file</a> has it all.</p>
            """
    }

    func summary() -> String {
        let (result, failure, continuedAs) = RunJSON.parts(of: description.outcome)
        let error = run.error.map { " " + HTML.muted(HTML.escape($0)) } ?? ""
        let closed = run.closedAt.map { HTML.time($0) + " (after \(HTML.duration($0.timeIntervalSince(run.createdAt))))" } ?? "—"
        let lease = run.leaseOwner.map { owner in
            HTML.escape(owner) + (run.leaseExpiresAt.map { " " + HTML.muted("until " + HTML.time($0)) } ?? "")
        } ?? "none"
        var html = """
            <dl class="summary">
            <dt>Status</dt><dd>\(HTML.status(run.status.rawValue))\(error)</dd>
            <dt>Workflow type</dt><dd>\(HTML.escape(run.workflowType))</dd>
            <dt>Workflow ID</dt><dd class="mono">\(HTML.escape(run.workflowID))</dd>
            <dt>Run ID</dt><dd class="mono">\(HTML.escape(run.runID))</dd>
            <dt>Started</dt><dd>\(HTML.time(run.createdAt))</dd>
            <dt>Closed</dt><dd>\(closed)</dd>
            <dt>Events</dt><dd>\(description.eventCount)</dd>
            <dt>Lease holder</dt><dd class="mono">\(lease)</dd>
            """
        if let parent = description.parent {
            html += "<dt>Parent</dt><dd class=\"mono\">\(HTML.runLink(parent.parentRunID)) (its #\(parent.parentSeq))</dd>"
        }
        if let continuedAs { html += "<dt>Continued as</dt><dd class=\"mono\">\(HTML.runLink(continuedAs))</dd>" }
        html += "</dl>"
        if let error = description.historyError {
            html += "<p class=\"error\" role=\"alert\">The history cannot be read: \(HTML.escape("\(error)"))</p>"
        }
        html += "<div class=\"grid2\"><div><h3>Input</h3>\(payload(description.input, label: "input"))</div>"
        if let failure {
            html += "<div><h3>Failure</h3><p class=\"error\">\(HTML.escape(failure.type)): \(HTML.escape(failure.message))</p></div>"
        } else if description.outcome != nil, continuedAs == nil {
            html += "<div><h3>Result</h3>\(payload(result, label: "result"))</div>"
        }
        return html + "</div>"
    }

    /// The operator's actions: cancel and terminate (links to their confirmation pages), the signal
    /// form and the reset form, which offers only activation boundaries.
    func actions(csrfField: String) -> String {
        let confirm = HTML.escape(HTML.runURL(run.runID) + "/confirm")
        let preview = HTML.escape(HTML.runURL(run.runID) + "/preview")
        var html = ""
        if run.status.isOpen {
            let awaited = description.awaitedSignals ?? []
            let options = awaited.map { "<option value=\"\(HTML.escape($0))\"></option>" }.joined()
            html += """
                <div class="actions"><a class="button secondary" href="\(confirm)?action=cancel">Cancel…</a>\
                <a class="button danger" href="\(confirm)?action=terminate">Terminate…</a></div>
                <form class="action" method="post" action="\(preview)" aria-label="Send a signal">
                \(csrfField)<input type="hidden" name="action" value="signal">
                <label for="signal-name">Signal name</label>
                <input type="text" id="signal-name" name="name" required list="awaited-signals" \
                value="\(HTML.escape(awaited.first ?? ""))">
                <datalist id="awaited-signals">\(options)</datalist>
                <label for="signal-input">Input (JSON; empty for null)</label>
                <textarea id="signal-input" name="input" spellcheck="false"></textarea>
                <div><button type="submit">Send signal…</button></div></form>
                """
        }
        let points = events.resetPoints
        guard !points.isEmpty else {
            return html + HTML.paragraph(HTML.muted("Reset: the run has no activation to reset to yet (only its start)."))
        }
        let options = points.reversed().map {
            "<option value=\"\($0.index)\">\(HTML.escape(Console.describe($0)))</option>"
        }.joined()
        return html + """
            <form class="action" method="get" action="\(confirm)" aria-label="Reset the run">
            <input type="hidden" name="action" value="reset">
            <label for="reset-to">Reset to (activation boundaries only: the new run replays the events before it)</label>
            <select id="reset-to" name="toEvent">\(options)</select>
            <div><button type="submit" class="danger">Reset…</button></div></form>
            """
    }

    /// Each pending activity: attempts, the next attempt, the last failure, heartbeat, worker and slot.
    func pending() -> String {
        let pending = description.pendingActivities
        guard !pending.isEmpty else { return HTML.paragraph(HTML.muted("None.")) }
        let rows = pending.map { activity -> String in
            let next: String
            if let due = activity.nextRetryAt {
                next = due > now
                    ? "attempt \(activity.attempts + 1) \(HTML.time(due)) (\(HTML.escape(HTML.relative(due, now: now))))"
                    : "attempt \(activity.attempts + 1) due since \(HTML.time(due)), running or about to"
            } else {
                next = activity.attempts == 0 ? "first attempt running or queued" : "—"
            }
            let failure = activity.lastFailure.map {
                "<span class=\"failure\"><strong>\(HTML.escape($0.type))</strong>: \(HTML.escape($0.message))</span>"
                    + ($0.retryable == false ? " " + HTML.muted("(not retryable)") : "")
            } ?? HTML.muted("none")
            let beat = activity.lastHeartbeat.map {
                "<pre class=\"json\">\(HTML.escape(HTML.prettyJSON(Data($0.utf8))))</pre>"
            } ?? HTML.muted("none")
            let attempt = activity.lastAttempt
            var worker = [String]()
            if let pid = attempt?.pid { worker.append("pid \(pid)") }
            if let owner = run.leaseOwner { worker.append(HTML.escape(owner)) }
            var slot = [String]()
            if let name = attempt?.slot { slot.append(HTML.escape(name)) }
            if let cold = attempt?.cold { slot.append(cold ? "cold" : "warm") }
            if let warm = attempt?.warmUpMs { slot.append("warm-up \(HTML.escape(HTML.duration(warm / 1000)))") }
            let cancel = activity.cancelRequested ? " " + HTML.muted("(cancel requested)") : ""
            return """
                <tr class="pending-activity" data-seq="\(activity.seq)">\
                <td>#\(activity.seq) \(HTML.escape(activity.activityType))\(cancel)</td><td>\(activity.attempts)</td>\
                <td>\(next)</td><td>\(failure)</td><td>\(beat)</td>\
                <td class="mono">\(worker.isEmpty ? "—" : worker.joined(separator: "<br>"))</td>\
                <td>\(slot.isEmpty ? "—" : slot.joined(separator: ", "))</td></tr>
                """
        }
        return HTML.table(
            ["Activity", "Attempts recorded", "Next attempt", "Last failure", "Last heartbeat", "Worker", "Slot"], rows)
    }

    /// The signals the run waits for, those queued, received and rejected.
    func signals() -> String {
        func names(_ names: [String]) -> String { names.map { "<code>\(HTML.escape($0))</code>" }.joined(separator: ", ") }
        let waits: String
        if let awaited = description.awaitedSignals {
            waits = awaited.isEmpty ? "none now" : names(awaited)
        } else if run.status == .running {
            waits = HTML.muted("unknown: this server has no code of \(HTML.escape(run.workflowType)) to replay the run with")
        } else {
            waits = HTML.muted("nothing (the run is not running)")
        }
        let received = events.filter { $0.kind == .signalReceived }.map {
            "<code>\(HTML.escape($0.name ?? "?"))</code> at \(HTML.time($0.time))"
        }
        var html = """
            <dl class="summary"><dt>Waits for</dt><dd>\(waits)</dd>
            <dt>Queued, not yet delivered</dt><dd>\(description.queuedSignals.isEmpty ? "none" : names(description.queuedSignals))</dd>
            <dt>Received</dt><dd>\(received.isEmpty ? "none" : received.joined(separator: "<br>"))</dd></dl>
            """
        if !description.rejectedSignals.isEmpty {
            html += "<h3>Rejected (input did not decode)</h3><ul>" + description.rejectedSignals.map {
                "<li><code>\(HTML.escape($0.name))</code> at \(HTML.time($0.time)): \(HTML.escape($0.reason))</li>"
            }.joined() + "</ul>"
        }
        return html
    }

    /// The query form, or why there is none.
    func queries(hasCode: Bool, csrfField: String) -> String {
        guard hasCode else {
            return HTML.paragraph(HTML.muted(
                "Queries need the workflow's code: this server has none (serve the journal with the application's own executable, APP serve)."))
        }
        return """
            <form class="action" method="post" action="\(url)/query" aria-label="Run a query">\(csrfField)
            <label for="query-name">Query name</label><input type="text" id="query-name" name="name" required>
            <div><button type="submit">Run query</button></div></form>
            """
    }

    func children() -> String {
        guard !description.children.isEmpty else { return HTML.paragraph(HTML.muted("None.")) }
        return HTML.table(["#", "Type", "Workflow ID", "Run", "State"], description.children.map {
            """
            <tr><td>\($0.seq)</td><td>\(HTML.escape($0.workflowType))</td><td class="id">\(HTML.escape($0.workflowID))</td>\
            <td class="id">\(HTML.runLink($0.runID))</td><td>\(HTML.status($0.state))</td></tr>
            """
        })
    }

    /// Which model served each ended attempt, with the SHA-256 of its input and output (the table of
    /// `durable lineage`); attempts of activities that serve no model are left out.
    func lineage() -> String {
        let attempts = LineageAttempt.all(in: events).filter { $0.details?.model != nil }
        guard !attempts.isEmpty else { return HTML.paragraph(HTML.muted("No attempt of this run recorded a model.")) }
        func hash(_ value: String?) -> String {
            guard let value else { return "" }
            return "<span class=\"mono\" title=\"\(HTML.escape(value))\">\(HTML.escape(String(value.prefix(12))))</span>"
        }
        let rows = attempts.map { attempt -> String in
            let details = attempt.details
            let slot = (details?.slot ?? "") + (details?.cold.map { $0 ? " (cold)" : " (warm)" } ?? "")
            let metadata = (details?.modelMetadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            return """
                <tr><td>\(attempt.event.index)</td><td>\(attempt.event.seq)</td><td>\(HTML.escape(attempt.activityType))</td>\
                <td>\(attempt.event.attempt)</td><td>\(HTML.escape(attempt.outcome))</td>\
                <td>\(HTML.escape(details?.modelLabel ?? ""))</td><td>\(hash(details?.weightsSHA256))</td>\
                <td>\(hash(details?.inputSHA256))</td><td>\(hash(details?.outputSHA256))</td><td>\(HTML.escape(slot))</td>\
                <td class="mono">\(HTML.escape(metadata.joined(separator: ", ")))</td></tr>
                """
        }
        return HTML.table(["#", "Seq", "Activity", "Attempt", "Outcome", "Model", "Weights", "Input", "Output", "Slot", "Metadata"], rows)
            + HTML.paragraph(HTML.muted("SHA-256, the first 12 hex digits (hover for all). Child runs show their own; "
                + "<code>durable lineage</code> follows them."))
    }

    /// The history as a compact table and as JSON, and the export file's link.
    func history() -> String {
        let shown = events.prefix(Self.historyRows)
        let verdicts = PartialOutputVerdicts(events, runClosed: !run.status.isOpen)
        let rows = shown.map { event -> String in
            var detail = ""
            if let failure = event.failure {
                detail = "\(failure)"
            } else if let data = event.data {
                detail = String(decoding: data.prefix(160), as: UTF8.self)
            }
            if event.encryptedData != nil { detail = "(encrypted)" }
            if verdicts.isDiscarded(event) { detail = "(discarded) " + detail }
            return """
                <tr><td>\(event.index)</td><td>\(HTML.time(event.time))</td><td>\(HTML.escape(event.kind.name))</td>\
                <td>\(event.seq == 0 ? "" : String(event.seq))</td><td>\(event.attempt == 0 ? "" : String(event.attempt))</td>\
                <td>\(HTML.escape(event.name ?? ""))</td><td class="mono">\(HTML.escape(detail))</td></tr>
                """
        }
        var html = HTML.table(["#", "Time", "Kind", "Seq", "Attempt", "Name", "Details"], rows, class: "history")
        let cut = events.count > Self.historyRows
        if cut {
            html += HTML.paragraph(HTML.muted("The first \(Self.historyRows) of \(events.count) events; the export file has them all."))
        }
        let json = (try? RunJSON.data(
            ["run": RunJSON.run(run), "events": RunJSON.events(shown, of: run, in: events)] as [String: Any], pretty: true)) ?? Data()
        return html + """
            <details><summary>Full JSON\(cut ? " (the first \(Self.historyRows) events)" : "")</summary>\
            <pre class="json" tabindex="0">\(HTML.escape(String(decoding: json, as: UTF8.self)))</pre></details>
            <p><a href="\(url)/export" download>Download the export file</a> \
            \(HTML.muted("(what <code>durable replay --file</code> reads)"))</p>
            """
    }

    /// The timeline drawing with its legend.
    func timeline() -> String {
        let timeline = ConsoleTimeline(run: run, events: events, now: now)
        let more = timeline.rows.count > ConsoleTimeline.maximumRows
            ? HTML.paragraph(HTML.muted("The first \(ConsoleTimeline.maximumRows) of \(timeline.rows.count) rows.")) : ""
        return """
            <p class="muted">Activities, timers and child runs as bars from start to end (open ones to now); red dots are \
            failed attempts, blue diamonds signals. Focus or click one for its details.</p>
            <div class="legend" aria-hidden="true"><span class="lg-completed">activity completed</span>\
            <span class="lg-pending">activity open</span><span class="lg-failed">activity failed</span>\
            <span class="lg-attempt">failed attempt</span><span class="lg-timer">timer</span>\
            <span class="lg-child">child run</span><span class="lg-signal">signal</span></div>
            <div class="timeline-wrap">\(timeline.svg())</div>\(more)
            <p id="timeline-detail" class="timeline-detail" aria-live="polite"></p>
            """
    }
}
