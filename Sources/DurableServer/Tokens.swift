import Crypto
import DurableJournal
public import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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

    /// Whether a token of this name and role is in the file.
    func accepts(_ caller: Caller) -> Bool {
        entries.contains { $0.caller == caller }
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

/// The tokens a server accepts now: those of ``ServerOptions/tokens``, read again from
/// ``ServerOptions/tokenFilePath`` when that file changes, so that `auth add` and `auth remove` take
/// effect without a restart.
///
/// A request looks at the file's identity (device, inode, size, modification time) at most once a
/// second; only a change reads it. A file that cannot be read or is not a token file leaves the
/// tokens as they were, with an error in the log, until it changes again.
final class TokenStore: Sendable {
    private struct Stamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var seconds: Int
        var nanoseconds: Int

        init?(_ path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            seconds = info.st_mtim.tv_sec
            nanoseconds = info.st_mtim.tv_nsec
        }
    }

    private struct State {
        var file: TokenFile
        var verifier: TokenVerifier
        /// The file as last looked at; `nil` before the first look, or when it could not be seen.
        var stamp: Stamp?
        /// The last look found no file.
        var missing = false
        var checkedAt: ContinuousClock.Instant
    }

    private let path: String?
    private let logger: Logger
    private let state: Mutex<State>
    static let interval: Duration = .seconds(1)

    init(_ file: TokenFile, path: String?, logger: Logger) {
        self.path = path
        self.logger = logger
        // The file was read just before: the first look after `interval` reads it again only if it
        // changed since (a change in between is not missed: the stamp starts unknown).
        state = Mutex(State(file: file, verifier: TokenVerifier(file), stamp: nil, checkedAt: .now))
    }

    /// The caller a token belongs to, or `nil`.
    func caller(presenting token: String) -> Caller? {
        current().caller(presenting: token)
    }

    /// Whether a token named as `caller` is, with its role, still in the file (a console session
    /// started with a token that has been removed, or given another role, ends).
    func accepts(_ caller: Caller) -> Bool {
        current().accepts(caller)
    }

    private func current() -> TokenVerifier {
        guard let path else { return state.withLock { $0.verifier } }
        let now = ContinuousClock.now
        return state.withLock { state in
            guard now - state.checkedAt >= Self.interval else { return state.verifier }
            state.checkedAt = now
            let stamp = Stamp(path)
            if stamp != nil && stamp == state.stamp { return state.verifier }
            // A file that cannot be seen is looked for every second, and reported once.
            let missingAgain = stamp == nil && state.missing
            state.stamp = stamp
            state.missing = stamp == nil
            do {
                let file = try TokenFile.load(path)
                if file != state.file {
                    logger.notice("\(Self.changes(from: state.file, to: file, path: path))")
                    state.file = file
                    state.verifier = TokenVerifier(file)
                }
            } catch {
                if !missingAgain { logger.error("\(error); the server keeps the \(state.file.tokens.count) token(s) it had") }
            }
            return state.verifier
        }
    }

    /// What changed, by name and role (never a hash).
    static func changes(from old: TokenFile, to new: TokenFile, path: String) -> String {
        let before = Dictionary(old.tokens.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.tokens.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var parts: [String] = []
        let added = after.keys.filter { before[$0] == nil }.sorted()
        let removed = before.keys.filter { after[$0] == nil }.sorted()
        let changed = after.keys.filter { before[$0] != nil && before[$0] != after[$0] }.sorted()
        if !added.isEmpty { parts.append("added \(added.joined(separator: ", "))") }
        if !removed.isEmpty { parts.append("removed \(removed.joined(separator: ", "))") }
        if !changed.isEmpty { parts.append("changed \(changed.joined(separator: ", "))") }
        return "token file \(path) read again: \(new.tokens.count) token(s)" + (parts.isEmpty ? "" : " (\(parts.joined(separator: "; ")))")
    }
}
