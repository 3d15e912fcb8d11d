import Foundation

/// One line from a worker's stdout, scanned once.
struct WireMessage {
    enum Response {
        case heartbeat(Data)
        case partialOutput(Data)
        case output(Data)
        case error(ApplicationError)
        case malformed(String)
    }

    private struct WireError: Decodable {
        var type: String?
        var message: String?
        var nonRetryable: Bool?
    }

    /// `"ready": true` in a JSON object.
    let isReady: Bool
    /// Why the line cannot be a response at all, if it cannot.
    let problem: String?
    private let id: Int?
    private let output: Data?
    private let errorJSON: Data?
    private let heartbeat: Data?
    private let partial: Data?

    /// Nil for a blank line.
    init?(_ line: UnsafeBufferPointer<UInt8>) {
        guard line.contains(where: { !JSONText.isWhitespace($0) }) else { return nil }
        var isReady = false
        var id: Int?
        var hasID = false
        var output: Data?
        var errorJSON: Data?
        var heartbeat: Data?
        var partial: Data?
        if let members = JSONText.objectMembers(line) {
            for (key, value) in members {
                let keyBytes = line[key]
                let valueBytes = UnsafeBufferPointer(rebasing: line[value])
                if keyBytes.elementsEqual("id".utf8) {
                    hasID = true
                    id = JSONText.integer(valueBytes)
                } else if keyBytes.elementsEqual("output".utf8) {
                    output = Data(valueBytes)
                } else if keyBytes.elementsEqual("error".utf8) {
                    errorJSON = Data(valueBytes)
                } else if keyBytes.elementsEqual("heartbeat".utf8) {
                    heartbeat = Data(valueBytes)
                } else if keyBytes.elementsEqual("partial".utf8) {
                    partial = Data(valueBytes)
                } else if keyBytes.elementsEqual("ready".utf8) {
                    isReady = valueBytes.elementsEqual("true".utf8)
                }
            }
            let kinds = [output, errorJSON, heartbeat, partial].count { $0 != nil }
            problem =
                if !hasID { "no id" }
                else if id == nil { "the id is not an integer" }
                else if kinds == 0 { "neither output, error, heartbeat nor partial" }
                else if kinds > 1 { "more than one of output, error, heartbeat and partial" }
                else { nil }
        } else {
            problem = "not a JSON object"
        }
        self.isReady = isReady
        self.id = id
        self.output = output
        self.errorJSON = errorJSON
        self.heartbeat = heartbeat
        self.partial = partial
    }

    func response(for expectedID: Int) -> Response {
        if let problem { return .malformed(problem) }
        if id != expectedID { return .malformed("id \(id.map(String.init) ?? "?") instead of \(expectedID)") }
        if let output { return .output(output) }
        if let heartbeat { return .heartbeat(heartbeat) }
        if let partial { return .partialOutput(partial) }
        guard let errorJSON, let wire = try? JSONDecoder().decode(WireError.self, from: errorJSON) else {
            return .malformed("the error is not an object with string type and message and boolean nonRetryable")
        }
        return .error(
            ApplicationError(
                wire.message ?? "", type: wire.type ?? "ApplicationError", nonRetryable: wire.nonRetryable ?? false))
    }

    /// The line for messages, quoted and cut to about 200 characters.
    static func quote(_ line: UnsafeBufferPointer<UInt8>) -> String {
        let text = String(decoding: line.prefix(200), as: UTF8.self)
        return "\"" + text + (line.count > 200 ? "…\"" : "\"")
    }
}

extension WorkerRequest {
    /// Why a request cannot be sent: its input or heartbeat details are not valid JSON.
    struct Invalid: Error {
        let problem: String
    }

    /// The request's line, with `input` and the heartbeat details embedded verbatim.
    ///
    /// - Throws: ``Invalid`` when `input` or `heartbeatDetails` is not one valid JSON value.
    func line() throws(Invalid) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(input.count + (heartbeatDetails?.count ?? 0) + 80
            + activity.utf8.count + idempotencyKey.utf8.count)
        line.append(contentsOf: #"{"id":"#.utf8)
        line.append(contentsOf: String(id).utf8)
        line.append(contentsOf: #","activity":"#.utf8)
        JSONText.appendString(activity, to: &line)
        line.append(contentsOf: #","attempt":"#.utf8)
        line.append(contentsOf: String(attempt).utf8)
        line.append(contentsOf: #","key":"#.utf8)
        JSONText.appendString(idempotencyKey, to: &line)
        line.append(contentsOf: #","input":"#.utf8)
        guard JSONText.appendValue(input, to: &line) else { throw Invalid(problem: "input is not valid JSON") }
        if let heartbeatDetails {
            line.append(contentsOf: #","heartbeat":"#.utf8)
            guard JSONText.appendValue(heartbeatDetails, to: &line) else {
                throw Invalid(problem: "heartbeat details are not valid JSON")
            }
        }
        line.append(contentsOf: "}\n".utf8)
        return line
    }
}
