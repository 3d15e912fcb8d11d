import Crypto
import DurableJournal
public import Foundation

/// What a token may do. Each role may do what the roles below it may.
///
/// | role | may |
/// |---|---|
/// | `reader` | list, show, follow and export runs, ask queries, read `/metrics` |
/// | `submitter` | start runs, post events, send signals |
/// | `operator` | cancel, terminate and reset runs |
/// | `admin` | read the audit log |
public enum Role: String, Sendable, Codable, CaseIterable, Comparable {
    case reader, submitter, `operator`, admin

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// The tokens a server accepts, as stored in its token file: a name, a role and the SHA-256 of the
/// token. The token itself is stored nowhere; `durable auth add` prints it once.
///
/// The file is JSON: `{"tokens": [{"name": "portal", "role": "submitter", "sha256": "9f86…"}]}`.
public struct TokenFile: Sendable, Codable, Equatable {
    public struct Entry: Sendable, Codable, Equatable {
        public var name: String
        public var role: Role
        /// The SHA-256 of the token, 64 lowercase hexadecimal digits.
        public var sha256: String
        /// When it was added (informational).
        public var created: String?
    }

    public var tokens: [Entry]

    public init(tokens: [Entry] = []) { self.tokens = tokens }

    /// Reads a token file.
    /// - Throws: ``TokenFileError`` naming the file and what is wrong with it.
    public static func load(_ path: String) throws -> TokenFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenFileError(path: path, reason: FileManager.default.fileExists(atPath: path)
                ? "cannot be read (\(error.localizedDescription))" : "does not exist (create it with `durable auth add NAME --role ROLE --file \(path)`)")
        }
        let file: TokenFile
        do {
            file = try JSONDecoder().decode(TokenFile.self, from: data)
        } catch {
            throw TokenFileError(path: path, reason: "is not a token file: \(error)")
        }
        var names = Set<String>()
        for entry in file.tokens {
            guard entry.sha256.count == 64, entry.sha256.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw TokenFileError(path: path, reason: "the sha256 of token '\(entry.name)' is not 64 lowercase hex digits")
            }
            guard !entry.name.isEmpty, entry.name.utf8.count <= 200 else {
                throw TokenFileError(path: path, reason: "a token name is empty or longer than 200 bytes")
            }
            guard names.insert(entry.name).inserted else {
                throw TokenFileError(path: path, reason: "the name '\(entry.name)' appears twice")
            }
        }
        return file
    }

    /// Makes a new token for `name` and returns it with the file that holds its hash.
    /// - Throws: ``TokenFileError`` when the name is taken or not a valid name.
    public func adding(name: String, role: Role, now: Date = Date()) throws -> (token: String, file: TokenFile) {
        guard !name.isEmpty, name.utf8.count <= 200, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }) else {
            throw TokenFileError(path: nil, reason: "a token name is 1 to 200 letters, digits, '-', '_', '.' or '@'")
        }
        guard !tokens.contains(where: { $0.name == name }) else {
            throw TokenFileError(path: nil, reason: "a token named '\(name)' exists already")
        }
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &random) }
        let token = "dur_" + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        var file = self
        file.tokens.append(Entry(name: name, role: role, sha256: Self.hash(token), created: ISO8601DateFormatter().string(from: now)))
        return (token, file)
    }

    /// The SHA-256 of a token, as stored.
    public static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).lowercaseHex
    }
}

/// A token file that cannot be used.
public struct TokenFileError: Error, CustomStringConvertible {
    public var path: String?
    public var reason: String
    public var description: String { path.map { "token file \($0) \(reason)" } ?? reason }
}

/// Who made a request: the token's name and role.
public struct Caller: Sendable, Equatable {
    public var name: String
    public var role: Role
}

/// Checks presented tokens against the stored hashes.
struct TokenVerifier: Sendable {
    private let entries: [(digest: [UInt8], caller: Caller)]

    init(_ file: TokenFile) {
        entries = file.tokens.map { entry in
            (Array(stride(from: 0, to: 64, by: 2).map { offset -> UInt8 in
                let start = entry.sha256.index(entry.sha256.startIndex, offsetBy: offset)
                return UInt8(entry.sha256[start...entry.sha256.index(after: start)], radix: 16) ?? 0
            }), Caller(name: entry.name, role: entry.role))
        }
    }

    /// The caller a token belongs to, or `nil`. Every stored hash is compared in full, with no early
    /// exit, so that the time taken says nothing about how close a guess was.
    func caller(presenting token: String) -> Caller? {
        let digest = Array(SHA256.hash(data: Data(token.utf8)))
        var found: Caller?
        for entry in entries where equalInConstantTime(digest, entry.digest) { found = entry.caller }
        return found
    }
}

/// Whether two byte strings are equal, every byte compared whatever the content (no early exit), so
/// that the time taken says nothing about how close they are. (Their lengths are not secret.)
func equalInConstantTime(_ x: [UInt8], _ y: [UInt8]) -> Bool {
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for index in 0..<x.count { difference |= x[index] ^ y[index] }
    return difference == 0
}
