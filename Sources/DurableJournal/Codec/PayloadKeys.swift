import Crypto
public import Foundation

/// The keys that encrypt payloads at rest (AES-256-GCM), by key ID, and which one encrypts new payloads.
///
/// Payloads (workflow and activity inputs and results, failures, signals, heartbeat details) are
/// encrypted one by one; each stored payload names the ID of its key, so keys can rotate: add a new
/// key, make it current, and keep the old ones for as long as payloads written with them are kept.
/// Run and workflow IDs, type and activity names, event kinds, times, statuses and activity options
/// stay in clear, so that listings and `durable history` work without the keys.
///
/// ```swift
/// var configuration = JournalConfiguration.sqlite(path: "claims.sqlite")
/// configuration.payloadKeys = try PayloadKeys.read(file: "/etc/durable/payload-keys")
/// // or: try PayloadKeys(keys: ["2026-01": keyBytes], current: "2026-01")
/// ```
///
/// A key file holds one key a line, `ID:BASE64` (32 bytes, e.g. `openssl rand -base64 32`), with `#`
/// comments. The last key listed encrypts new payloads unless a line `current=ID` names another.
/// It must not be readable by other users (mode 600 or 640).
public struct PayloadKeys: Sendable, Equatable, CustomStringConvertible {
    /// The environment variable naming a key file.
    public static let fileVariable = "DURABLE_PAYLOAD_KEYS_FILE"
    /// The environment variable holding one key inline, `ID:BASE64`.
    public static let inlineVariable = "DURABLE_PAYLOAD_KEY"

    private var keys: [String: SymmetricKey]
    /// The ID of the key that encrypts new payloads; `nil` to write payloads in clear (the keys then
    /// only decrypt).
    public private(set) var currentKeyID: String?

    /// No keys: payloads are written in clear, and encrypted ones cannot be read.
    public static let empty = PayloadKeys(checked: [:], current: nil)

    private init(checked keys: [String: SymmetricKey], current: String?) {
        self.keys = keys
        self.currentKeyID = current
    }

    /// Keys by ID, each 32 bytes.
    /// - Parameter current: the key that encrypts new payloads (`nil`: decrypt only).
    /// - Throws: ``JournalError`` `badPayloadKeys` for an ID that is not 1 to 64 letters, digits, `.`,
    ///   `_` or `-`, a key that is not 32 bytes, or a current ID that is not among the keys.
    public init(keys: [String: Data], current: String?) throws {
        try self.init(keys: keys, current: current, source: "code")
    }

    private init(keys: [String: Data], current: String?, source: String) throws {
        func bad(_ reason: String) -> JournalError { JournalError(.badPayloadKeys(source: source, reason: reason)) }
        var checked: [String: SymmetricKey] = [:]
        for (id, bytes) in keys {
            guard Self.isValidID(id) else { throw bad("key ID '\(id)' is not 1 to 64 letters, digits, '.', '_' or '-'") }
            guard bytes.count == 32 else { throw bad("key '\(id)' is \(bytes.count) bytes; AES-256 keys are 32 bytes") }
            checked[id] = SymmetricKey(data: bytes)
        }
        if let current, checked[current] == nil { throw bad("the current key '\(current)' is not among the keys") }
        self.init(checked: checked, current: current)
    }

    /// The IDs of the keys held, sorted.
    public var keyIDs: [String] { keys.keys.sorted() }

    /// Whether there are no keys.
    public var isEmpty: Bool { keys.isEmpty }

    /// The key IDs and which is current; never the keys.
    public var description: String {
        guard !keys.isEmpty else { return "no payload keys" }
        return "payload keys \(keyIDs.joined(separator: ", "))" + (currentKeyID.map { " (new payloads: \($0))" } ?? " (decrypt only)")
    }

    public static func == (lhs: PayloadKeys, rhs: PayloadKeys) -> Bool {
        guard lhs.currentKeyID == rhs.currentKeyID, lhs.keys.count == rhs.keys.count else { return false }
        return lhs.keys.allSatisfy { id, key in rhs.keys[id] == key }
    }

    /// The key of an ID.
    func key(_ id: String) -> SymmetricKey? { keys[id] }

    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    // MARK: - Loading

    /// Parses key-file text: `ID:BASE64` lines, `#` comments, blank lines, an optional `current=ID`
    /// (else the last key is current).
    /// - Parameter source: names the text in errors (a file path).
    /// - Throws: ``JournalError`` `badPayloadKeys` naming the line.
    public static func parse(_ text: String, source: String) throws -> PayloadKeys {
        func bad(_ reason: String) -> JournalError { JournalError(.badPayloadKeys(source: source, reason: reason)) }
        var keys: [String: Data] = [:]
        var last: String?
        var current: String?
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("current=") {
                current = String(line.dropFirst("current=".count)).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let colon = line.firstIndex(of: ":") else {
                throw bad("line \(number + 1) is neither ID:BASE64 nor current=ID")
            }
            let id = String(line[..<colon])
            guard let bytes = Data(base64Encoded: String(line[line.index(after: colon)...])) else {
                throw bad("line \(number + 1): the key of '\(id)' is not base64")
            }
            guard keys.updateValue(bytes, forKey: id) == nil else { throw bad("key ID '\(id)' appears twice") }
            last = id
        }
        guard last != nil else { throw bad("no keys (lines ID:BASE64)") }
        return try PayloadKeys(keys: keys, current: current ?? last, source: source)
    }

    /// Reads a key file (see ``parse(_:source:)``).
    /// - Throws: ``JournalError`` `badPayloadKeys` when the file cannot be read, is readable or
    ///   writable by other users, or holds no valid keys.
    public static func read(file path: String) throws -> PayloadKeys {
        func bad(_ reason: String) -> JournalError { JournalError(.badPayloadKeys(source: path, reason: reason)) }
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw bad("cannot be read (\(error.localizedDescription))")
        }
        if let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o006 != 0 {
            throw bad("is readable or writable by other users (mode \(String(mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("cannot be read") }
        return try parse(String(decoding: data, as: UTF8.self), source: path)
    }

    /// The keys the environment names: a key file in `DURABLE_PAYLOAD_KEYS_FILE`, or one key inline
    /// in `DURABLE_PAYLOAD_KEY` (`ID:BASE64`); `nil` when neither is set.
    /// - Throws: ``JournalError`` `badPayloadKeys` when both are set, or the keys cannot be used.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> PayloadKeys? {
        let file = environment[fileVariable].flatMap { $0.isEmpty ? nil : $0 }
        let inline = environment[inlineVariable].flatMap { $0.isEmpty ? nil : $0 }
        switch (file, inline) {
        case (nil, nil):
            return nil
        case (let file?, nil):
            return try read(file: file)
        case (nil, let inline?):
            guard !inline.contains("\n") else {
                throw JournalError(.badPayloadKeys(source: inlineVariable, reason: "holds one key, ID:BASE64, on one line"))
            }
            return try parse(inline, source: inlineVariable)
        case (_?, _?):
            throw JournalError(.badPayloadKeys(
                source: "the environment", reason: "set \(fileVariable) or \(inlineVariable), not both"))
        }
    }
}
