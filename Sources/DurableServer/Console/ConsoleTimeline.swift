import DurableJournal
import Foundation

/// A run's history drawn as an SVG timeline: one row per activity, timer and child run (a bar from its
/// start to its end, or to now while it is open), failed attempts as marks on their activity's bar, and
/// signals as marks on a row of their own, over a time axis from the run's start.
struct ConsoleTimeline {
    enum Kind: String { case activity, timer, child }

    struct Mark {
        var time: Date
        var kind: String
        var detail: String
    }

    struct Row {
        var kind: Kind
        var seq: Int
        var label: String
        var start: Date
        var end: Date?
        var state: String
        var attempts = 0
        var marks: [Mark] = []
        /// Failed attempts past ``ConsoleTimeline/maximumMarks``, counted, not marked.
        var unmarked = 0
        var detail: String
    }

    var rows: [Row] = []
    var signals: [Mark] = []
    /// Signals past ``maximumSignals``, counted, not marked.
    var unmarkedSignals = 0
    var start: Date
    var end: Date
    var open: Bool

    static let maximumRows = 300
    /// The most failed attempts marked on one activity's bar (the rest are counted in its detail).
    static let maximumMarks = 50
    /// The most signals marked on the signals row (the rest are counted in its label).
    static let maximumSignals = 200

    init(run: RunRecord, events: [HistoryEvent], now: Date = Date()) {
        start = events.first?.time ?? run.createdAt
        open = run.status.isOpen
        var last = events.last?.time ?? start
        if let closed = run.closedAt { last = max(last, closed) }
        end = open ? max(now, last) : last
        if end.timeIntervalSince(start) < 0.001 { end = start.addingTimeInterval(0.001) }
        var index: [String: Int] = [:]
        func key(_ kind: Kind, _ seq: Int) -> String { "\(kind.rawValue)-\(seq)" }
        for event in events {
            switch event.kind {
            case .activityScheduled:
                index[key(.activity, event.seq)] = rows.count
                rows.append(Row(
                    kind: .activity, seq: event.seq, label: "#\(event.seq) \(event.name ?? "?")", start: event.time, state: "pending",
                    detail: "activity #\(event.seq) \(event.name ?? "?") scheduled at \(RunJSON.time(event.time))"))
            case .activityAttemptFailed, .activityCompleted, .activityFailed, .activityCancelled:
                guard let row = index[key(.activity, event.seq)] else { continue }
                rows[row].attempts = max(rows[row].attempts, event.attempt)
                if event.kind == .activityAttemptFailed {
                    guard rows[row].marks.count < Self.maximumMarks else {
                        rows[row].unmarked += 1
                        continue
                    }
                    rows[row].marks.append(Mark(
                        time: event.time, kind: "attempt-failed",
                        detail: "\(rows[row].label): attempt \(event.attempt) failed at \(RunJSON.time(event.time)): \(event.failure.map { "\($0)" } ?? "?")"))
                    continue
                }
                rows[row].end = event.time
                rows[row].state = event.kind == .activityCompleted ? "completed" : event.kind == .activityFailed ? "failed" : "cancelled"
                let failure = event.failure.map { ": \($0)" } ?? ""
                rows[row].detail = "\(rows[row].label) \(rows[row].state) after \(max(1, event.attempt)) attempt(s), "
                    + "\(HTML.duration(event.time.timeIntervalSince(rows[row].start)))\(failure)"
            case .timerStarted:
                index[key(.timer, event.seq)] = rows.count
                let due = event.timerDue.map { " due \(RunJSON.time($0))" } ?? ""
                rows.append(Row(
                    kind: .timer, seq: event.seq, label: "#\(event.seq) timer", start: event.time, state: "waiting",
                    detail: "timer #\(event.seq) started at \(RunJSON.time(event.time))\(due)"))
            case .timerFired, .timerCancelled:
                guard let row = index[key(.timer, event.seq)] else { continue }
                rows[row].end = event.time
                rows[row].state = event.kind == .timerFired ? "fired" : "cancelled"
                rows[row].detail = "\(rows[row].label) \(rows[row].state) at \(RunJSON.time(event.time)), after \(HTML.duration(event.time.timeIntervalSince(rows[row].start)))"
            case .childStarted:
                index[key(.child, event.seq)] = rows.count
                rows.append(Row(
                    kind: .child, seq: event.seq, label: "#\(event.seq) child \(event.name ?? "?")", start: event.time, state: "running",
                    detail: "child run #\(event.seq) of \(event.name ?? "?") started at \(RunJSON.time(event.time))"))
            case .childClosed:
                guard let row = index[key(.child, event.seq)] else { continue }
                rows[row].end = event.time
                let outcome = event.data.flatMap { try? JSONDecoder().decode(ChildOutcome.self, from: $0) }
                rows[row].state = Self.childState(outcome?.status)
                rows[row].detail = "\(rows[row].label) \(rows[row].state) at \(RunJSON.time(event.time))"
            case .signalReceived:
                guard signals.count < Self.maximumSignals else {
                    unmarkedSignals += 1
                    continue
                }
                signals.append(Mark(time: event.time, kind: "signal", detail: "signal \(event.name ?? "?") received at \(RunJSON.time(event.time))"))
            default:
                break
            }
        }
    }

    /// A child's state as its bar's class: a ``RunStatus`` raw value, else `closed` (the value is
    /// decoded from the event's data, which a class attribute must not take as it is).
    static func childState(_ status: String?) -> String {
        status.flatMap(RunStatus.init(rawValue:))?.rawValue ?? "closed"
    }

    /// The SVG element (every text escaped).
    func svg() -> String {
        let width = 1000.0, left = 250.0, right = 985.0, top = 30.0, rowHeight = 24.0
        let shown = Array(rows.prefix(Self.maximumRows))
        let rowCount = shown.count + (signals.isEmpty ? 0 : 1)
        let height = top + Double(max(rowCount, 1)) * rowHeight + 10
        let span = end.timeIntervalSince(start)
        func x(_ date: Date) -> Double { left + (right - left) * min(1, max(0, date.timeIntervalSince(start) / span)) }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }
        func label(_ text: String) -> String { HTML.escape(text.count > 34 ? String(text.prefix(33)) + "…" : text) }
        var svg = """
            <svg class="timeline" viewBox="0 0 \(f(width)) \(f(height))" role="group" aria-label="Timeline of the run: \
            \(shown.count) row(s) from \(HTML.escape(RunJSON.time(start))), \(HTML.escape(HTML.duration(span))) shown">
            <g class="axis">
            """
        for tick in 0...5 {
            let position = left + (right - left) * Double(tick) / 5
            svg += "<line x1=\"\(f(position))\" y1=\"\(f(top - 8))\" x2=\"\(f(position))\" y2=\"\(f(height - 6))\"></line>"
            svg += "<text x=\"\(f(position))\" y=\"\(f(top - 12))\" text-anchor=\"\(tick == 0 ? "start" : tick == 5 ? "end" : "middle")\">+\(HTML.escape(HTML.duration(span * Double(tick) / 5)))</text>"
        }
        svg += "</g>"
        for (number, row) in shown.enumerated() {
            let y = top + Double(number) * rowHeight
            let startX = x(row.start)
            let endX = max(startX + 3, x(row.end ?? end))
            let state = row.end == nil ? "\(row.state) open" : row.state
            var detail = row.detail
            if row.end == nil { detail += " (open: \(HTML.duration(end.timeIntervalSince(row.start))) so far)" }
            if row.kind == .activity && row.attempts > 0 { detail += "; \(row.attempts) attempt(s) recorded" }
            if row.unmarked > 0 {
                detail += "; the failed attempts after the first \(Self.maximumMarks) are not marked (\(row.unmarked) more)"
            }
            svg += "<g class=\"row\" data-kind=\"\(row.kind.rawValue)\" data-seq=\"\(row.seq)\">"
            svg += "<text class=\"label\" x=\"4\" y=\"\(f(y + 12))\">\(label(row.label))</text>"
            svg += """
                <rect class="bar \(row.kind.rawValue) \(HTML.escape(state))" data-seq="\(row.seq)" data-attempts="\(row.attempts)" \
                x="\(f(startX))" y="\(f(y + 2))" width="\(f(endX - startX))" height="14" rx="2" tabindex="0" \
                aria-label="\(HTML.escape(detail))" data-detail="\(HTML.escape(detail))"><title>\(HTML.escape(detail))</title></rect>
                """
            for mark in row.marks {
                svg += """
                    <circle class="\(mark.kind)" cx="\(f(x(mark.time)))" cy="\(f(y + 9))" r="5" tabindex="0" \
                    aria-label="\(HTML.escape(mark.detail))" data-detail="\(HTML.escape(mark.detail))"><title>\(HTML.escape(mark.detail))</title></circle>
                    """
            }
            svg += "</g>"
        }
        if !signals.isEmpty {
            let y = top + Double(shown.count) * rowHeight
            let title = unmarkedSignals > 0 ? "signals (+\(unmarkedSignals) not marked)" : "signals"
            svg += "<g class=\"row\" data-kind=\"signals\"><text class=\"label\" x=\"4\" y=\"\(f(y + 12))\">\(title)</text>"
            for mark in signals {
                let cx = x(mark.time), cy = y + 9
                svg += """
                    <polygon class="signal" points="\(f(cx)),\(f(cy - 7)) \(f(cx + 7)),\(f(cy)) \(f(cx)),\(f(cy + 7)) \(f(cx - 7)),\(f(cy))" \
                    tabindex="0" aria-label="\(HTML.escape(mark.detail))" data-detail="\(HTML.escape(mark.detail))"><title>\(HTML.escape(mark.detail))</title></polygon>
                    """
            }
            svg += "</g>"
        }
        if open {
            svg += "<line class=\"now\" x1=\"\(f(right))\" y1=\"\(f(top - 6))\" x2=\"\(f(right))\" y2=\"\(f(height - 4))\"><title>now</title></line>"
        }
        return svg + "</svg>"
    }
}
