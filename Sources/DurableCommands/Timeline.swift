import Durable
import Foundation

/// A run's activities, timers and child runs drawn as bars on one time axis, with their durations:
/// where the time of a run went, at a glance (`durable history <id> --timeline`).
struct Timeline {
    struct Span {
        var kind: String
        var label: String
        var start: Date
        var end: Date
        var note: String
        var fill: Character
    }

    let run: RunRecord
    let spans: [Span]
    let origin: Date
    let finish: Date

    init(run: RunRecord, events: [HistoryEvent], now: Date) {
        self.run = run
        origin = events.first?.time ?? run.createdAt
        let open = run.status.isOpen
        finish = open ? max(now, events.last?.time ?? now) : (events.last?.time ?? origin)
        var spans: [Int: Span] = [:]
        var order: [Int] = []
        var attempts: [Int: Int] = [:]
        for event in events {
            switch event.kind {
            case .activityScheduled:
                spans[event.seq] = Span(kind: "activity", label: "\(event.name ?? "?") #\(event.seq)", start: event.time,
                                        end: finish, note: open ? "running" : "never finished", fill: "█")
                order.append(event.seq)
            case .timerStarted:
                let due = event.timerDue.map { " (due \(Format.time($0)))" } ?? ""
                spans[event.seq] = Span(kind: "timer", label: "#\(event.seq)", start: event.time, end: finish,
                                        note: "waiting" + due, fill: "░")
                order.append(event.seq)
            case .childStarted:
                spans[event.seq] = Span(kind: "child", label: "\(event.name ?? "?") #\(event.seq)", start: event.time,
                                        end: finish, note: "running", fill: "▒")
                order.append(event.seq)
            case .signalReceived where !(event.name ?? "").hasPrefix("durable."):
                let key = -event.index - 1  // marks have no sequence number; negative keys stay apart
                spans[key] = Span(kind: "signal", label: event.name ?? "?", start: event.time, end: event.time,
                                  note: "received", fill: "◆")
                order.append(key)
            case .signalRejected:
                let key = -event.index - 1
                let reason = event.data.map { String(decoding: $0, as: UTF8.self) } ?? ""
                spans[key] = Span(kind: "signal", label: event.name ?? "?", start: event.time, end: event.time,
                                  note: "rejected: " + reason, fill: "✗")
                order.append(key)
            case .activityAttemptFailed:
                attempts[event.seq] = max(attempts[event.seq] ?? 0, event.attempt)
            case .activityCompleted, .activityFailed, .activityCancelled, .timerFired, .timerCancelled, .childClosed:
                guard var span = spans[event.seq] else { continue }
                span.end = event.time
                let state: String = switch event.kind {
                case .activityCompleted, .childClosed: ""
                case .activityFailed: "failed"
                case .activityCancelled, .timerCancelled: "cancelled"
                default: "fired"
                }
                let tries = max(event.attempt, attempts[event.seq] ?? 0)
                span.note = [state, tries > 1 ? "\(tries) attempts" : ""].filter { !$0.isEmpty }.joined(separator: ", ")
                spans[event.seq] = span
            default: break
            }
        }
        self.spans = order.compactMap { spans[$0] }.map { span in
            var span = span
            (span.label, span.note) = (span.label.escaped, span.note.escaped)  // names and reasons from the journal
            return span
        }
    }

    func render(width: Int) -> String {
        let total = max(finish.timeIntervalSince(origin), 0.001)
        let state = run.status.isOpen ? "\(run.status.rawValue), so far" : run.status.rawValue
        var lines = ["run \(run.runID.escaped)  \(run.workflowType.escaped)  \(state): \(Self.duration(total)) from start to "
                     + (run.status.isOpen ? "now" : "end")]
        guard !spans.isEmpty else { return (lines + ["(no activities, timers, child runs or signals)"]).joined(separator: "\n") }
        let labelWidth = min(28, spans.map(\.label.count).max() ?? 0)
        let axisEnd = Self.duration(total)
        lines.append(String(repeating: " ", count: 10 + labelWidth + 1) + "|0"
                     + String(repeating: " ", count: max(1, width - 1 - axisEnd.count)) + axisEnd + "|")
        for span in spans {
            let from = Int((span.start.timeIntervalSince(origin) / total * Double(width)).rounded(.down))
            let to = max(from + 1, Int((span.end.timeIntervalSince(origin) / total * Double(width)).rounded(.up)))
            let bar = String(repeating: " ", count: min(from, width - 1))
                + String(repeating: span.fill, count: max(1, min(to, width) - min(from, width - 1)))
            let label = span.label.count > labelWidth ? String(span.label.prefix(labelWidth - 1)) + "…" : span.label
            let duration = Self.duration(span.end.timeIntervalSince(span.start))
            lines.append(span.kind.padded(10) + label.padded(labelWidth + 1) + "|"
                         + bar.padding(toLength: width, withPad: " ", startingAt: 0) + "| "
                         + duration + (span.note.isEmpty ? "" : "  " + span.note))
        }
        return lines.joined(separator: "\n")
    }

    static func duration(_ seconds: TimeInterval) -> String {
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds < 120 { return String(format: "%.2f s", seconds) }
        if seconds < 7_200 { return String(format: "%.1f min", seconds / 60) }
        if seconds < 172_800 { return String(format: "%.1f h", seconds / 3_600) }
        return String(format: "%.1f d", seconds / 86_400)
    }
}
