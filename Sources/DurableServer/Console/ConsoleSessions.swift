import Crypto
import Foundation
import Synchronization

/// A signed-in console user: the caller its token named, the CSRF token of its forms, and when it ends.
struct ConsoleSession: Sendable {
    var caller: Caller
    /// Put in every form of the session's pages and checked on every POST.
    var csrfToken: String
    var expires: Date
}

/// The console's sessions, in memory only: a random 256-bit session ID (the cookie's value) maps to the
/// caller whose token signed in. The raw token is kept nowhere; the table holds the SHA-256 of each
/// session ID, not the ID. Sessions end after ``lifetime``, at logout, and when the server restarts.
final class ConsoleSessions: Sendable {
    static let cookieName = "durable_session"
    /// The double-submit cookie of the login form (it has no session yet to hold a CSRF token).
    static let loginCookieName = "durable_login"
    let lifetime: TimeInterval
    let capacity: Int
    private let table = Mutex<[String: ConsoleSession]>([:])

    init(lifetime: TimeInterval = 8 * 3600, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// 32 random bytes as 64 lowercase hexadecimal digits.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(format: "%016llx", generator.next() as UInt64) }.joined()
    }

    private static func key(_ sessionID: String) -> String {
        SHA256.hash(data: Data(sessionID.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Starts a session for `caller`; returns its ID (for the cookie).
    func start(_ caller: Caller, now: Date = Date()) -> String {
        let id = Self.randomToken()
        let session = ConsoleSession(caller: caller, csrfToken: Self.randomToken(), expires: now.addingTimeInterval(lifetime))
        table.withLock { table in
            if table.count >= capacity {
                table = table.filter { $0.value.expires > now }
                // Still full: the session nearest its end makes room.
                if table.count >= capacity, let oldest = table.min(by: { $0.value.expires < $1.value.expires })?.key {
                    table[oldest] = nil
                }
            }
            table[Self.key(id)] = session
        }
        return id
    }

    /// The live session with this ID, if any.
    func session(_ id: String?, now: Date = Date()) -> ConsoleSession? {
        guard let id, id.utf8.count == 64 else { return nil }
        let key = Self.key(id)
        return table.withLock { table in
            guard let session = table[key] else { return nil }
            guard session.expires > now else {
                table[key] = nil
                return nil
            }
            return session
        }
    }

    /// Ends a session.
    func end(_ id: String?) {
        guard let id else { return }
        let key = Self.key(id)
        _ = table.withLock { $0.removeValue(forKey: key) }
    }

    /// Whether two tokens are equal, compared in full whatever their content.
    static func same(_ a: String?, _ b: String) -> Bool {
        guard let a else { return false }
        return equalInConstantTime(Array(a.utf8), Array(b.utf8))
    }
}
