import DurableJournal
import Foundation

/// The pieces of the runs page, as HTML (every value escaped).
enum RunsPage {
    /// The search form: the filters of `runs list` and the retrying filter, as a GET form.
    static func filters(_ search: RunSearch) -> String {
        func option(_ value: String, _ text: String, _ selected: Bool) -> String {
            "<option value=\"\(HTML.escape(value))\"\(selected ? " selected" : "")>\(HTML.escape(text))</option>"
        }
        func text(_ label: String, _ name: String, _ value: String?) -> String {
            "<label>\(label)<input type=\"text\" name=\"\(name)\" value=\"\(HTML.escape(value ?? ""))\"></label>"
        }
        func time(_ label: String, _ name: String, _ value: Date?) -> String {
            // A datetime-local field's value: YYYY-MM-DDTHH:MM (read back as UTC).
            let local = value.map { String(RunJSON.time($0).prefix(16)) } ?? ""
            return "<label>\(label)<input type=\"datetime-local\" name=\"\(name)\" value=\"\(HTML.escape(local))\"></label>"
        }
        let statuses = option("", "any", search.status == nil)
            + RunStatus.allCases.map { option($0.rawValue, $0.rawValue, search.status == $0) }.joined()
        let order = option("newest", "newest first", !search.oldestFirst) + option("oldest", "oldest first", search.oldestFirst)
        return """
            <form class="filters" method="get" action="/ui/runs" role="search" aria-label="Filter runs">
            <label>Status<select name="status">\(statuses)</select></label>
            \(text("Workflow type", "type", search.type))
            \(text("Workflow ID prefix", "idPrefix", search.idPrefix))
            \(time("Started after (UTC)", "startedAfter", search.startedAfter))
            \(time("Started before (UTC)", "startedBefore", search.startedBefore))
            <label>Order<select name="order">\(order)</select></label>
            <label class="check"><input type="checkbox" name="retrying" value="1"\(search.retrying ? " checked" : "")> \
            Retrying only</label>
            <button type="submit">Search</button> <a href="/ui/runs">Clear</a>
            </form>
            """
    }

    /// The counts by status of the search's other filters, each a link that filters by its status.
    static func counts(_ counts: [RunStatus: Int], _ search: RunSearch) -> String {
        func item(_ status: RunStatus?, _ count: Int) -> String {
            let href = HTML.escape("/ui/runs" + search.query(["status": status?.rawValue, "cursor": nil]))
            let style = status.map { "status status-\($0.rawValue)" } ?? "status"
            return "<li><a href=\"\(href)\"><span class=\"\(style)\">\(status?.rawValue ?? "all") \(count)</span></a></li>"
        }
        let items = [item(nil, counts.values.reduce(0, +))]
            + RunStatus.allCases.compactMap { status in counts[status].flatMap { $0 > 0 ? item(status, $0) : nil } }
        return "<ul class=\"counts\" aria-label=\"Runs by status\">\(items.joined())</ul>"
    }

    /// The runs of a page, with their facts, and (for operators) cancel and terminate links.
    static func table(_ rows: [(RunRecord, RunFacts)], operate: Bool) -> String {
        var headers = ["Workflow ID", "Type", "Status", "Run", "Started", "Closed", "Links"]
        if operate { headers.append("Actions") }
        let head = headers.enumerated().map { index, name in
            "<th scope=\"col\"\((3...5).contains(index) ? " class=\"wide\"" : "")>\(name)</th>"
        }.joined()
        return """
            <div class="scroll"><table class="runs"><caption class="muted">\(rows.count) run(s) on this page</caption>\
            <thead><tr>\(head)</tr></thead><tbody>\(rows.map { row($0.0, $0.1, operate: operate) }.joined())</tbody></table></div>
            """
    }

    static func row(_ run: RunRecord, _ facts: RunFacts, operate: Bool) -> String {
        let url = HTML.escape(HTML.runURL(run.runID))
        var status = HTML.status(run.status.rawValue)
        if facts.retrying {
            let why = HTML.escape(facts.lastFailure ?? "an activity is past its first attempt")
            status += " <span class=\"status status-retrying\" title=\"\(why)\">retrying</span>"
        }
        var links: [String] = []
        if let parent = facts.parent { links.append("parent " + HTML.runLink(parent, text: HTML.shortID(parent))) }
        if facts.children > 0 {
            links.append("<a href=\"\(url)#children\">\(facts.children) child\(facts.children == 1 ? "" : "ren")</a>")
        }
        var actions = ""
        if operate {
            let confirm = HTML.escape(HTML.runURL(run.runID) + "/confirm?action=")
            actions = run.status.isOpen ? """
                <td><div class="actions"><a class="button small secondary" href="\(confirm)cancel">Cancel</a>\
                <a class="button small danger" href="\(confirm)terminate">Terminate</a></div></td>
                """ : "<td></td>"
        }
        let closed = run.closedAt.map {
            HTML.time($0) + " " + HTML.muted("(\(HTML.duration($0.timeIntervalSince(run.createdAt))))")
        } ?? "—"
        let failure = facts.lastFailure.map { "<div class=\"muted\">\(HTML.escape(String($0.prefix(200))))</div>" } ?? ""
        return """
            <tr data-run="\(HTML.escape(run.runID))"><td class="id"><a href="\(url)">\(HTML.escape(run.workflowID))</a>\(failure)</td>\
            <td>\(HTML.escape(run.workflowType))</td><td>\(status)</td>\
            <td class="id wide" title="\(HTML.escape(run.runID))">\(HTML.escape(HTML.shortID(run.runID)))</td><td class="wide">\(HTML.time(run.createdAt))</td>\
            <td class="wide">\(closed)</td><td>\(links.joined(separator: "<br>"))</td>\(actions)</tr>
            """
    }
}
