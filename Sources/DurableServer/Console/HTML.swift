import Foundation

/// The console's HTML building blocks. Every piece of text that is not a literal of this module goes
/// through ``HTML/escape(_:)`` (as element text and as attribute values alike), and every piece of a
/// URL through ``HTML/path(_:)`` or ``HTML/query(_:)`` first.
enum HTML {
    /// `text` with `&`, `<`, `>`, `"` and `'` replaced by character references: safe as element
    /// text and inside a quoted attribute value.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count + 16)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\0": out += "\u{FFFD}"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// Characters left as they are in a path segment or a query value.
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `text` percent-encoded as one path segment (a `/` in it too).
    static func path(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    /// `text` percent-encoded as a query value.
    static func query(_ text: String) -> String { path(text) }

    /// A query string (`?a=1&b=2`, or "" for none) from pairs whose value is not empty.
    static func queryString(_ pairs: [(String, String?)]) -> String {
        let parts = pairs.compactMap { name, value in value.flatMap { $0.isEmpty ? nil : "\(query(name))=\(query($0))" } }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    /// The console page of a run.
    static func runURL(_ runID: String) -> String { "/ui/runs/\(path(runID))" }

    /// A link to a run (its text escaped).
    static func runLink(_ runID: String, text: String? = nil) -> String {
        "<a class=\"run\" href=\"\(escape(runURL(runID)))\">\(escape(text ?? runID))</a>"
    }

    /// JSON data pretty-printed (text that is not JSON as it is).
    static func prettyJSON(_ data: Data?) -> String {
        guard let data else { return "null" }
        guard let value = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
              let pretty = try? RunJSON.data(value, pretty: true)
        else { return String(decoding: data, as: UTF8.self) }
        return String(decoding: pretty, as: UTF8.self)
    }

    /// A `<pre>` block of pretty JSON.
    static func jsonBlock(_ data: Data?, label: String) -> String {
        "<pre class=\"json\" tabindex=\"0\" aria-label=\"\(escape(label))\">\(escape(prettyJSON(data)))</pre>"
    }

    /// A time as the journal keeps it (UTC, milliseconds), in a `<time>` element.
    static func time(_ date: Date?) -> String {
        guard let date else { return "—" }
        let text = RunJSON.time(date)
        return "<time datetime=\"\(escape(text))\">\(escape(text.replacingOccurrences(of: "T", with: " ")))</time>"
    }

    /// A duration in words: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`, `3 d 4 h`.
    static func duration(_ seconds: Double) -> String {
        let seconds = max(0, seconds)
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let whole = Int(seconds)
        if whole < 3600 { return "\(whole / 60) min \(whole % 60) s" }
        if whole < 86_400 { return "\(whole / 3600) h \((whole % 3600) / 60) min" }
        return "\(whole / 86_400) d \((whole % 86_400) / 3600) h"
    }

    /// "in 3.0 s" or "3.0 s ago" from `now`.
    static func relative(_ date: Date, now: Date = Date()) -> String {
        let delta = date.timeIntervalSince(now)
        return delta >= 0 ? "in \(duration(delta))" : "\(duration(-delta)) ago"
    }

    /// Text (already HTML) in the muted style.
    static func muted(_ html: String) -> String { "<span class=\"muted\">\(html)</span>" }

    /// A paragraph of HTML.
    static func paragraph(_ html: String) -> String { "<p>\(html)</p>" }

    /// A table in a box that scrolls sideways on narrow screens: header texts (literals) and row HTML.
    static func table(_ headers: [String], _ rows: [String], class name: String? = nil) -> String {
        let head = headers.map { "<th scope=\"col\">\(escape($0))</th>" }.joined()
        return "<div class=\"scroll\"><table\(name.map { " class=\"\($0)\"" } ?? "")><thead><tr>\(head)</tr></thead>"
            + "<tbody>\(rows.joined())</tbody></table></div>"
    }

    /// A run ID short enough for a table cell: in full up to 24 characters, else its first 8 and last
    /// 6 (a UUID's start alone would not tell a child run, `PARENT8-child-SEQ-…`, from its parent).
    static func shortID(_ id: String) -> String {
        id.count <= 24 ? id : "\(id.prefix(8))…\(id.suffix(6))"
    }

    /// A status as a badge.
    static func status(_ status: String) -> String {
        "<span class=\"status status-\(escape(status))\">\(escape(status))</span>"
    }
}
