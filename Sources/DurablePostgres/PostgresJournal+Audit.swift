package import DurableJournal
import Foundation
import PostgresNIO

extension PostgresJournal {
    /// The columns of `audit` read by ``auditEntry(_:)``.
    static let auditColumns = "seq, time, actor, source, action, target, outcome, detail, hash"

    /// Appends the entry in its own transaction, committed with `synchronous_commit = on` whatever the
    /// journal's durability. An advisory lock held until the commit keeps other appends (from any
    /// process) out between reading the last entry and inserting the next, so that the chain stays
    /// one line.
    package func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry {
        try await inTransaction { connection in
            try await Self.insertAudit([draft], schema: self.s, connection, logger: self.logger)[0]
        }
    }

    /// Inserts the entries, in order, after the last one, inside the caller's transaction, and has that
    /// transaction commit with `synchronous_commit = on`. The advisory lock held until the commit
    /// keeps other appends (from any process) out between reading the last entry and inserting.
    static func insertAudit(
        _ drafts: [AuditDraft], schema s: String, _ connection: PostgresConnection, logger: Logger
    ) async throws -> [AuditEntry] {
        let last = try await lockAudit(schema: s, connection, logger: logger)
        return try await insertAudit(drafts, after: last, schema: s, connection, logger: logger)
    }

    /// Inserts the entries, in order, after `last` (the log's last entry, read under the lock of
    /// ``lockAudit(schema:_:logger:)`` in the caller's transaction).
    static func insertAudit(
        _ drafts: [AuditDraft], after last: AuditEntry?, schema s: String, _ connection: PostgresConnection, logger: Logger
    ) async throws -> [AuditEntry] {
        var previous = last
        let now = Date()
        var entries: [AuditEntry] = []
        for draft in drafts {
            let entry = AuditChain.entry(
                draft, seq: (previous?.seq ?? 0) + 1, time: now, previous: previous?.hash ?? AuditChain.start)
            try await insertAuditRow(entry, schema: s, connection, logger: logger)
            entries.append(entry)
            previous = entry
        }
        return entries
    }

    /// Appends another journal's entries as they are, after checking that they continue this log.
    package func importAudit(_ entries: [AuditEntry]) async throws {
        guard !entries.isEmpty else { return }
        try await inTransaction { connection in
            let last = try await Self.lockAudit(schema: self.s, connection, logger: self.logger)
            try AuditChain.checkContinuation(entries, after: last)
            for entry in entries { try await Self.insertAuditRow(entry, schema: self.s, connection, logger: self.logger) }
        }
    }

    /// Has the caller's transaction commit with `synchronous_commit = on` and hold the audit log's
    /// advisory lock until then; returns the log's last entry (`nil` for an empty log).
    static func lockAudit(schema s: String, _ connection: PostgresConnection, logger: Logger) async throws -> AuditEntry? {
        try await connection.query("SET LOCAL synchronous_commit = on", logger: logger)
        try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\("durable-audit:" + s)))", logger: logger)
        let last = try await connection.query("""
            SELECT \(unescaped: auditColumns) FROM \(unescaped: s).audit ORDER BY seq DESC LIMIT 1
            """, logger: logger).collect()
        return try last.first.map(auditEntry)
    }

    private static func insertAuditRow(_ entry: AuditEntry, schema s: String, _ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            INSERT INTO \(unescaped: s).audit (\(unescaped: auditColumns))
            VALUES (\(entry.seq), \(entry.time.journalMillis), \(entry.actor), \(entry.source), \(entry.action),
                \(entry.target), \(entry.outcome), \(entry.detail), \(entry.hash))
            """, logger: logger)
    }

    package func auditEntries(after cursor: Int64?, limit: Int, newestFirst: Bool) async throws -> [AuditEntry] {
        let cursor = cursor ?? (newestFirst ? Int64.max : 0)
        let limit = Int64(max(0, limit))
        let query: PostgresQuery = newestFirst
            ? "SELECT \(unescaped: Self.auditColumns) FROM \(unescaped: s).audit WHERE seq < \(cursor) ORDER BY seq DESC LIMIT \(limit)"
            : "SELECT \(unescaped: Self.auditColumns) FROM \(unescaped: s).audit WHERE seq > \(cursor) ORDER BY seq LIMIT \(limit)"
        return try await rows(query).map(Self.auditEntry)
    }

    package func auditEntries(target: String, limit: Int) async throws -> [AuditEntry] {
        try await rows("""
            SELECT \(unescaped: Self.auditColumns) FROM \(unescaped: s).audit WHERE target = \(target)
            ORDER BY seq LIMIT \(Int64(max(0, limit)))
            """).map(Self.auditEntry)
    }

    /// An audit row of ``auditColumns``.
    /// - Throws: ``JournalError`` `damaged` naming the entry when its time is out of range.
    static func auditEntry(_ row: PostgresRow) throws -> AuditEntry {
        let (seq, millis, actor, source, action, target, outcome, detail, hash) = try row.decode(
            (Int64, Int64, String, String, String, String, String, String?, String).self)
        guard let time = Date(checkedJournalMillis: millis) else {
            throw JournalError(.damagedAudit(seq: "\(seq)", reason: "column time holds \(millis), out of range"))
        }
        return AuditEntry(
            seq: seq, time: time, actor: actor, source: source, action: action, target: target, outcome: outcome,
            detail: detail, hash: hash)
    }
}
