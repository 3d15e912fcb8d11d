import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension Console {
    /// The most runs the retrying filter reads the history of for one page, and for one CSV export.
    static let retryingScanLimit = 2_000

    /// The runs of a search, a page at a time, with the facts of each; `next` is the cursor of the next page.
    /// Without `facts` (and without the retrying filter, which needs them), no history is read and
    /// every run's facts are empty. The retrying filter reads at most `scanLimit` open runs.
    func search(
        _ search: RunSearch, facts readFacts: Bool = true, scanLimit: Int = Self.retryingScanLimit
    ) async throws -> (runs: [(RunRecord, RunFacts)], next: String?, scanned: Int) {
        let journal = server.client.journal
        var filter = search.filter()
        if let cursor = search.cursor {
            guard try await journal.findRun(cursor)?.runID == cursor else {
                throw Problem.badRequest("cursor '\(cursor)' names no run (it may have been pruned); start again without one")
            }
            filter.afterRunID = cursor
        }
        if filter.statuses == [] { return ([], nil, 0) }
        func facts(_ run: RunRecord) async throws -> RunFacts {
            guard readFacts || search.retrying else { return RunFacts([], open: false) }
            let events = (try? await journal.history(run, from: 0)) ?? []
            return RunFacts(events, open: run.status.isOpen)
        }
        guard search.retrying else {
            filter.limit = search.limit
            let runs = try await journal.runs(filter)
            var rows: [(RunRecord, RunFacts)] = []
            for run in runs { rows.append((run, try await facts(run))) }
            return (rows, runs.count == search.limit ? runs.last?.runID : nil, runs.count)
        }
        // Retrying runs are found by reading the histories of open runs, a batch at a time.
        var rows: [(RunRecord, RunFacts)] = []
        var scanned = 0
        var last: String?
        filter.limit = 200
        while true {
            let batch = try await journal.runs(filter)
            for run in batch {
                if rows.count == search.limit || scanned >= scanLimit { return (rows, last, scanned) }
                scanned += 1
                last = run.runID
                let facts = try await facts(run)
                if facts.retrying { rows.append((run, facts)) }
            }
            guard batch.count == 200, let end = batch.last?.runID else { return (rows, nil, scanned) }
            filter.afterRunID = end
        }
    }


    /// `GET /ui/runs`.
    func runsPage(_ call: Call) async throws -> Response {
        let search = try RunSearch(call.query)
        let counts = try await server.client.countRuns(search.filter(withStatus: false))
        let (rows, next, scanned) = try await self.search(search)
        let operate = call.viewer?.may(Self.actionRole) == true
        let table = rows.isEmpty ? "<p class=\"notice\">No runs match.</p>" : RunsPage.table(rows, operate: operate)
        var pager = ""
        if search.cursor != nil { pager += "<a href=\"/ui/runs\(HTML.escape(search.query(["cursor": nil])))\">First page</a>" }
        if let next { pager += "<a href=\"/ui/runs\(HTML.escape(search.query(["cursor": next])))\" rel=\"next\">Next page</a>" }
        let scanNote = search.retrying
            ? HTML.paragraph(HTML.muted("Retrying: open runs with a pending activity past its first attempt or with a failure "
                + "recorded; \(scanned) open run(s) read for this page (at most \(Self.retryingScanLimit))."))
            : ""
        let csv = HTML.escape("/ui/runs.csv" + search.query(["cursor": nil, "limit": nil]))
        let body = """
            <h1>Runs</h1>
            \(RunsPage.filters(search))
            <div id="runs-live" data-live>
            \(RunsPage.counts(counts, search))
            \(scanNote)
            \(table)
            <div class="pager">\(pager)<a href="\(csv)" download>Export this search (CSV)</a>
            <span id="refreshed" class="muted" aria-live="polite"></span></div>
            </div>
            <p id="autorefresh" class="live-toggle" hidden><label><input type="checkbox"> Refresh every 5 s</label></p>
            """
        return page(call, title: "Runs", body: body, bodyAttributes: " data-refresh=\"5000\"")
    }

    /// `GET /ui/runs.csv`: every run of a search (up to 10,000), as CSV: the runs' records (no history
    /// is read, except by the retrying filter, whose runs also get their last failure). The retrying
    /// filter reads at most ``retryingScanLimit`` open runs in all; when it stops there with runs left,
    /// the answer says so in a `Durable-Scan-Stopped` header and a last `#` line.
    func runsCSV(_ call: Call) async throws -> Response {
        var search = try RunSearch(call.query)
        search.limit = 500
        var lines = ["runID,workflowID,workflowType,status,createdAt,closedAt,leaseOwner,error"
            + (search.retrying ? ",lastFailure" : "")]
        var count = 0
        var scannedInAll = 0
        var stopped = false
        while count < 10_000 {
            let budget = Self.retryingScanLimit - scannedInAll
            let (rows, next, scanned) = try await self.search(search, facts: false, scanLimit: budget)
            for (run, facts) in rows {
                var fields = [
                    run.runID, run.workflowID, run.workflowType, run.status.rawValue, RunJSON.time(run.createdAt),
                    run.closedAt.map(RunJSON.time) ?? "", run.leaseOwner ?? "", run.error ?? "",
                ]
                if search.retrying { fields.append(facts.lastFailure ?? "") }
                lines.append(fields.map(Self.csvField).joined(separator: ","))
            }
            count += rows.count
            scannedInAll += scanned
            guard let next else { break }
            if search.retrying && scannedInAll >= Self.retryingScanLimit {
                stopped = true
                break
            }
            search.cursor = next
        }
        if stopped {
            lines.append("# the retrying filter stopped after reading \(scannedInAll) open runs (its bound): "
                + "there may be more retrying runs; narrow the search (type or workflow ID prefix or times)")
        }
        var headers = Self.securityHeaders()
        headers[.contentType] = "text/csv; charset=utf-8"
        headers[.contentDisposition] = "attachment; filename=\"durable-runs.csv\""
        if stopped { headers[HTTPField.Name("Durable-Scan-Stopped")!] = String(scannedInAll) }
        let text = lines.joined(separator: "\r\n") + "\r\n"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// A CSV field: quoted when it needs to be, and a leading `=`, `+`, `-` or `@` defused for spreadsheets.
    static func csvField(_ text: String) -> String {
        var text = text
        if let first = text.first, "=+-@\t\r".contains(first) { text = "'" + text }
        guard text.contains(where: { ",\"\r\n".contains($0) }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
