import Foundation

/// A form body (`application/x-www-form-urlencoded`): the first value of each name.
struct FormBody {
    let values: [String: String]

    init(_ text: String) {
        var values: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String {
                let plus = part.replacingOccurrences(of: "+", with: " ")
                return plus.removingPercentEncoding ?? plus
            }
            let name = decode(parts[0])
            if values[name] == nil { values[name] = parts.count > 1 ? decode(parts[1]) : "" }
        }
        self.values = values
    }

    subscript(_ name: String) -> String? { values[name] }
}
