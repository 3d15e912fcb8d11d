public import Foundation

/// What a caller asks the journal to record in its audit log: who did what to which target, from
/// where, and how it ended. The journal gives it its number and time (``AuditEntry``).
///
/// ```swift
/// try await client.recordAudit(AuditDraft(
///     actor: "token:alice", source: "http 10.0.0.7:51234", action: "POST /v1/runs/claim-1042/cancel",
///     target: "claim-1042", outcome: "202", detail: "reason: duplicate claim"))
/// ```
///
/// Fields longer than ``DurableLimits/maximumAuditFieldBytes`` (``detail``:
/// ``DurableLimits/maximumAuditDetailBytes``) are clipped when the entry is written, ending in `…`,
/// and NUL characters are written as U+FFFD: an action is never left unaudited because of what a
/// caller sent.
public struct AuditDraft: Sendable, Equatable {
    /// Who acted: `token:<name>` for the HTTP API, `user:<OS user>` for the command line.
    public var actor: String
    /// From where: `cli pid 4242 on build-7`, `http 127.0.0.1:51234`.
    public var source: String
    /// What was done: `submit`, `signal`, `cancel`, `terminate`, `reset`, `prune`, `copy`, or an HTTP
    /// request line such as `POST /v1/workflows/ClaimIntake/runs`.
    public var action: String
    /// What it was done to: a workflow or run ID, or a journal's location.
    public var target: String
    /// How it ended: `ok`, an error code (`runNotFound`) or an HTTP status (`201`).
    public var outcome: String
    /// A short note: a signal's name, a reason, counts.
    public var detail: String?

    public init(actor: String, source: String, action: String, target: String, outcome: String, detail: String? = nil) {
        self.actor = actor
        self.source = source
        self.action = action
        self.target = target
        self.outcome = outcome
        self.detail = detail
    }

    /// The draft as it is written: each field clipped to its limit, NUL characters replaced.
    package var clipped: AuditDraft {
        let field = DurableLimits.maximumAuditFieldBytes
        return AuditDraft(
            actor: Self.clip(actor, to: field), source: Self.clip(source, to: field), action: Self.clip(action, to: field),
            target: Self.clip(target, to: field), outcome: Self.clip(outcome, to: field),
            detail: detail.map { Self.clip($0, to: DurableLimits.maximumAuditDetailBytes) })
    }

    /// `text` with NUL written as U+FFFD (PostgreSQL's `text` cannot hold NUL), cut at a Unicode
    /// scalar so that it ends in `…` within `limit` bytes of UTF-8 when it is longer.
    static func clip(_ text: String, to limit: Int) -> String {
        let text = text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
        guard text.utf8.count > limit else { return text }
        var kept = String.UnicodeScalarView()
        var bytes = 0
        for scalar in text.unicodeScalars {
            bytes += UTF8.width(scalar)
            if bytes > limit - 3 { break }  // "…" is 3 bytes
            kept.append(scalar)
        }
        return String(kept) + "…"
    }
}

/// One entry of a journal's append-only audit log (see `Docs/operations.md`, "Audit log").
///
/// Entries are numbered 1, 2, 3, … in the order they were committed (``seq``) and chained: each
/// one's ``hash`` covers its fields and the hash of the entry before it, so that an entry changed,
/// removed or inserted afterwards breaks the chain, which `durable journal check` verifies.
///
/// Its JSON (the command line's and the HTTP API's) has these fields, always all of them:
/// `seq` (number), `time` (ISO 8601 with milliseconds, UTC), `actor`, `source`, `action`, `target`,
/// `outcome` (strings), `detail` (string or null), `hash` (64 lowercase hex digits).
public struct AuditEntry: Sendable, Equatable, Codable {
    /// The entry's number: 1 for the first, then one more for each.
    public var seq: Int64
    /// When the journal recorded it (milliseconds, as every journal time).
    public var time: Date
    public var actor: String
    public var source: String
    public var action: String
    public var target: String
    public var outcome: String
    public var detail: String?
    /// SHA-256 of the previous entry's hash and this entry's fields, in lowercase hex (see
    /// ``AuditChain``).
    public var hash: String

    package init(
        seq: Int64, time: Date, actor: String, source: String, action: String, target: String, outcome: String,
        detail: String?, hash: String
    ) {
        self.seq = seq
        self.time = time
        self.actor = actor
        self.source = source
        self.action = action
        self.target = target
        self.outcome = outcome
        self.detail = detail
        self.hash = hash
    }

    private enum CodingKeys: String, CodingKey {
        case seq, time, actor, source, action, target, outcome, detail, hash
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let text = try container.decode(String.self, forKey: .time)
        guard let time = HistoryExport.parseTime(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: .time, in: container, debugDescription: "'\(text)' is not an ISO 8601 time")
        }
        self.init(
            seq: try container.decode(Int64.self, forKey: .seq), time: time,
            actor: try container.decode(String.self, forKey: .actor), source: try container.decode(String.self, forKey: .source),
            action: try container.decode(String.self, forKey: .action), target: try container.decode(String.self, forKey: .target),
            outcome: try container.decode(String.self, forKey: .outcome),
            detail: try container.decodeIfPresent(String.self, forKey: .detail),
            hash: try container.decode(String.self, forKey: .hash))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(seq, forKey: .seq)
        try container.encode(HistoryExport.timeText(time), forKey: .time)
        try container.encode(actor, forKey: .actor)
        try container.encode(source, forKey: .source)
        try container.encode(action, forKey: .action)
        try container.encode(target, forKey: .target)
        try container.encode(outcome, forKey: .outcome)
        try container.encode(detail, forKey: .detail)  // null when absent: the same fields every time
        try container.encode(hash, forKey: .hash)
    }
}
