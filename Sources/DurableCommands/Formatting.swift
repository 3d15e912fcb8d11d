import Durable
import DurableServer
import Foundation

enum Format {
    /// ISO 8601 in UTC with milliseconds, as the journal keeps them.
    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        return HistoryExport.timeText(date)
    }

    static func duration(from start: Date, to end: Date?) -> String {
        let seconds = (end ?? Date()).timeIntervalSince(start)
        if seconds < 1 { return "\(Int(seconds * 1000)) ms" }
        if seconds < 120 { return String(format: "%.1f s", seconds) }
        return String(format: "%.1f min", seconds / 60)
    }

    /// `812 B`, `3.4 KiB`, `12.0 MiB`.
    static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    /// JSON bytes as one line, cut to `limit` characters.
    static func payload(_ data: Data?, limit: Int = 60) -> String {
        guard let data else { return "" }
        return clipped(String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\n", with: " ").escaped, to: limit)
    }

    /// Text cut to `limit` characters, ending in `…` when it was longer.
    static func clipped(_ text: String, to limit: Int) -> String {
        text.count > limit ? String(text.prefix(limit - 1)) + "…" : text
    }

    /// A fixed-width table with a header row; the cells are printed ``Swift/String/escaped``.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let rows = rows.map { $0.map(\.escaped) }
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func printJSON(_ value: Any) throws {
        print(String(decoding: try RunJSON.data(value, pretty: true), as: UTF8.self))
    }

    /// One JSON object on one line (JSON lines).
    static func printJSONLine(_ value: Any) throws {
        print(String(decoding: try RunJSON.data(value), as: UTF8.self))
    }
}

extension String {
    /// The text as it may be printed to a terminal: control characters and other invisible or
    /// layout-changing ones written visibly (`\e`, `\n`, `\r`, `\t`, otherwise `\u{7}`). IDs, names and
    /// messages from the journal go through this in every human-readable output; JSON output escapes
    /// them as JSON does. Escaping escaped text changes nothing.
    ///
    /// ```swift
    /// "evil\u{1B}[31mRED\u{07}".escaped  // evil\e[31mRED\u{7}
    /// ```
    var escaped: String {
        if unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) { return self }
        var text = ""
        for scalar in unicodeScalars {
            switch scalar {
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case "\u{1B}": text += "\\e"
            default:
                if scalar.isPrintable {
                    text.unicodeScalars.append(scalar)
                } else {
                    text += "\\u{" + String(scalar.value, radix: 16) + "}"
                }
            }
        }
        return text
    }
}

extension Unicode.Scalar {
    /// Not a control, format (bidirectional overrides, zero-width characters other than the joiner
    /// emoji use), separator, private-use, surrogate or unassigned code point.
    fileprivate var isPrintable: Bool {
        switch properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned: false
        case .format: self == "\u{200D}"
        default: true
        }
    }
}
