import Foundation

/// How much a commit must survive before it is acknowledged.
public enum Durability: String, Sendable, CaseIterable, Codable {
    /// Every commit is on disk before its callers resume: SQLite WAL with `synchronous=FULL`;
    /// PostgreSQL with `synchronous_commit=on`. Survives process crashes and power loss. The default.
    case full
    /// Commits reach the operating system (SQLite: WAL with `synchronous=NORMAL`, fsynced at
    /// checkpoints) or the server (PostgreSQL: `synchronous_commit=off`, flushed by the server within
    /// a fraction of a second). Survives a crash or SIGKILL of the worker; a power loss (or a crash
    /// of the database server) can lose the last commits, never corrupt the journal.
    case fast
}

/// Which journal to open and how it is written: a SQLite file (the default: one file, no server) or
/// a PostgreSQL database (several hosts).
///
/// ```swift
/// let local = JournalConfiguration.sqlite(path: "claims.sqlite")
/// let shared = JournalConfiguration.postgres(url: "postgres://durable@db.internal:5432/claims")
/// let either = JournalConfiguration(ProcessInfo.processInfo.environment["DURABLE_JOURNAL"] ?? "durable.sqlite")
/// ```
public struct JournalConfiguration: Sendable, Equatable {
    /// The kinds of storage a journal can live in.
    public enum Backend: String, Sendable, Equatable {
        case sqlite
        case postgres
    }

    /// A file path (SQLite) or a `postgres://` / `postgresql://` URL
    /// (`postgres://user:password@host:port/database?schema=durable&sslmode=disable`).
    public var location: String
    public var durability: Durability
    /// Create the journal when it does not exist (a SQLite file, also in an empty file; PostgreSQL:
    /// the schema's tables). `false`: the location must hold a journal already (not be missing, an
    /// empty file or another database), and nothing is created. Inspection commands set it to `false`
    /// so that a mistyped location is reported instead of silently creating an empty journal.
    public var createIfMissing: Bool
    /// The keys that encrypt payloads at rest and decrypt them (see ``PayloadKeys``).
    ///
    /// `nil` (the default) takes them from the environment when the journal is opened: a key file
    /// named by `DURABLE_PAYLOAD_KEYS_FILE`, or one key in `DURABLE_PAYLOAD_KEY` (`ID:BASE64`); with
    /// neither set, payloads are written in clear. So workers and the `durable` command pick keys up
    /// without code or flags. ``PayloadKeys/empty`` means no keys whatever the environment says.
    public var payloadKeys: PayloadKeys?
    /// The size in bytes above which a payload is stored out of line: an event's payload whose stored
    /// frame (compressed, and encrypted when there are payload keys) is larger goes to the journal's
    /// blob table, content-addressed by the SHA-256 of its bytes, and the event's row holds a
    /// reference to it (`Docs/operations.md`, "Large payloads"). From 1,024 to
    /// ``DurableLimits/maximumPayloadBytes`` (16 MiB: nothing is stored out of line).
    ///
    /// `nil` (the default) takes it from `DURABLE_LARGE_PAYLOAD_BYTES` when the journal is opened, else
    /// ``defaultLargePayloadBytes`` (64 KiB).
    public var largePayloadBytes: Int?
    /// ``largePayloadBytes`` when neither the configuration nor the environment sets it: 65,536.
    public static let defaultLargePayloadBytes = 64 * 1024
    /// The values ``largePayloadBytes`` may take.
    public static let largePayloadBytesRange = 1_024...DurableLimits.maximumPayloadBytes
    /// The environment variable that sets ``largePayloadBytes`` when the configuration does not.
    public static let largePayloadBytesVariable = "DURABLE_LARGE_PAYLOAD_BYTES"
    /// What reads do with a payload encrypted with a key not held: fail (the default), or return it
    /// marked as encrypted (showing a history) or keep every encrypted payload as stored (exporting).
    package var encryptedPayloads: EncryptedPayloadReading = .requireKey

    /// A journal at `location`: PostgreSQL for a `postgres://` or `postgresql://` URL, else a SQLite
    /// file at that path.
    public init(
        _ location: String, durability: Durability = .full, createIfMissing: Bool = true, payloadKeys: PayloadKeys? = nil
    ) {
        self.location = location
        self.durability = durability
        self.createIfMissing = createIfMissing
        self.payloadKeys = payloadKeys
    }

    /// The configuration with ``payloadKeys`` and ``largePayloadBytes`` taken from the environment
    /// when it names none, and ``largePayloadBytes`` checked.
    /// - Throws: ``JournalError`` `badPayloadKeys` when the environment's keys cannot be used,
    ///   `invalidSetting` when ``largePayloadBytes`` is out of its range.
    public func resolvingPayloadKeys() throws -> JournalConfiguration {
        try resolving(ProcessInfo.processInfo.environment)
    }

    /// ``resolvingPayloadKeys()`` with `environment` for the process's.
    package func resolving(_ environment: [String: String]) throws -> JournalConfiguration {
        var resolved = self
        if payloadKeys == nil { resolved.payloadKeys = try PayloadKeys.fromEnvironment(environment) ?? PayloadKeys.empty }
        let expected = "a number of bytes from \(Self.largePayloadBytesRange.lowerBound) to \(Self.largePayloadBytesRange.upperBound)"
        if let bytes = largePayloadBytes {
            guard Self.largePayloadBytesRange.contains(bytes) else {
                throw JournalError(.invalidSetting(name: "largePayloadBytes", value: String(bytes), expected: expected))
            }
        } else if let text = environment[Self.largePayloadBytesVariable], !text.isEmpty {
            guard let bytes = Int(text), Self.largePayloadBytesRange.contains(bytes) else {
                throw JournalError(.invalidSetting(name: Self.largePayloadBytesVariable, value: text, expected: expected))
            }
            resolved.largePayloadBytes = bytes
        }
        return resolved
    }

    /// A SQLite journal at `path`.
    public static func sqlite(path: String, durability: Durability = .full) -> JournalConfiguration {
        JournalConfiguration(path, durability: durability)
    }

    /// A PostgreSQL journal: `postgres://user[:password]@host[:port]/database[?schema=NAME]`. The
    /// journal's tables live in the schema given (default `durable`), created on first use.
    public static func postgres(url: String, durability: Durability = .full) -> JournalConfiguration {
        JournalConfiguration(url, durability: durability)
    }

    public var backend: Backend {
        let lower = location.lowercased()
        return lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") ? .postgres : .sqlite
    }

    /// The location for messages and logs: a URL's password replaced by `***`.
    public var displayLocation: String {
        guard backend == .postgres, let scheme = location.range(of: "://"),
            let at = location[scheme.upperBound...].firstIndex(of: "@"),
            let colon = location[scheme.upperBound..<at].firstIndex(of: ":")
        else { return location }
        return String(location[..<location.index(after: colon)]) + "***" + String(location[at...])
    }

    /// A new journal file of its own in a temporary directory, `fast` durability: for tests, and for
    /// replaying history files. The directory is `/dev/shm` (memory-backed) when it is writable.
    /// Delete it with ``removeFiles()``.
    public static func temporary() -> JournalConfiguration {
        let shm = "/dev/shm"
        let directory = FileManager.default.isWritableFile(atPath: shm) ? shm : NSTemporaryDirectory()
        let name = "durable-\(UUID().uuidString.lowercased()).sqlite"
        return JournalConfiguration((directory as NSString).appendingPathComponent(name), durability: .fast)
    }

    /// Deletes a SQLite journal's file with its write-ahead log and shared-memory files (nothing
    /// for PostgreSQL).
    public func removeFiles() {
        guard backend == .sqlite else { return }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: location + suffix) }
    }
}
