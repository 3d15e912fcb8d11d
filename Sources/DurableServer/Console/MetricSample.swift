import Foundation

/// One series of a Prometheus text exposition: its name, labels and value.
struct MetricSample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double

    /// The samples of a text exposition (comments and lines that do not parse are skipped).
    static func parse(_ text: String) -> [MetricSample] {
        var samples: [MetricSample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            var labels: [String: String] = [:]
            let name: Substring
            if let brace = series.firstIndex(of: "{"), series.hasSuffix("}") {
                name = series[..<brace]
                var rest = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                // name="value" pairs, values with \" and \\ escapes.
                while let equals = rest.firstIndex(of: "="), rest[rest.index(after: equals)...].first == "\"" {
                    let key = String(rest[..<equals]).trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                    var value = ""
                    var index = rest.index(equals, offsetBy: 2)
                    var escaped = false
                    while index < rest.endIndex {
                        let character = rest[index]
                        if escaped { value.append(character == "n" ? "\n" : character); escaped = false }
                        else if character == "\\" { escaped = true }
                        else if character == "\"" { break }
                        else { value.append(character) }
                        index = rest.index(after: index)
                    }
                    labels[key] = value
                    rest = index < rest.endIndex ? rest[rest.index(after: index)...] : ""
                }
            } else {
                name = series
            }
            samples.append(MetricSample(name: String(name), labels: labels, value: value))
        }
        return samples
    }
}
