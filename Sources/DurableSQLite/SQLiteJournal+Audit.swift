package import DurableJournal
import Foundation
import GRDB

extension SQLiteJournal {
    /// The columns of `audit` read by ``auditRow(_:)``.
    static let auditColumns = "seq, time, actor, source, action, target, outcome, detail, hash, sum"

    /// Appends the entry through the audit group writer: with the entries of other callers that
    /// arrived meanwhile, in one `IMMEDIATE` transaction synced whatever the journal's durability
    /// (see ``appendAudit(_:)-([AuditDraft])``). Returns once that transaction has committed.
    package func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry {
        try await auditWriter.append(draft) { [self] drafts in try appendAudit(drafts) }
    }

    /// Appends the entries, in order, in one `IMMEDIATE` transaction, synced whatever the journal's
    /// durability: the write lock, taken before the last entry is read, keeps other processes'
    /// appends out until these are committed, so that the chain stays one line.
    func appendAudit(_ drafts: [AuditDraft]) throws -> [AuditEntry] {
        try writeDurably { db in try Self.insertAudit(drafts, db) }
    }

    /// Inserts the entries, in order, after the last one, inside the caller's `IMMEDIATE` transaction
    /// (whose write lock keeps other processes' appends out until it commits).
    static func insertAudit(_ drafts: [AuditDraft], _ db: Database) throws -> [AuditEntry] {
        let previous = try lastAudit(db)
        var (seq, hash) = (previous?.seq ?? 0, previous?.hash ?? AuditChain.start)
        let now = Date()
        return try drafts.map { draft in
            seq += 1
            let entry = AuditChain.entry(draft, seq: seq, time: now, previous: hash)
            try insertAuditRow(entry, db)
            hash = entry.hash
            return entry
        }
    }

    /// Appends another journal's entries as they are, after checking that they continue this log.
    package func importAudit(_ entries: [AuditEntry]) async throws {
        guard !entries.isEmpty else { return }
        try await offloaded { [self] in
            try writeDurably { db in
                try AuditChain.checkContinuation(entries, after: try Self.lastAudit(db))
                for entry in entries { try Self.insertAuditRow(entry, db) }
            }
        }
    }

    /// The log's last entry (inside the caller's `IMMEDIATE` transaction), `nil` for an empty log.
    /// - Throws: ``JournalError`` `damaged` when its row does not match its checksum.
    private static func lastAudit(_ db: Database) throws -> AuditEntry? {
        let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT \(auditColumns) FROM audit ORDER BY seq DESC LIMIT 1"))
        let previous = try last.map { try auditRow($0) }
        if let damage = previous?.damage { throw damage }
        return previous?.entry
    }

    private static func insertAuditRow(_ entry: AuditEntry, _ db: Database) throws {
        let insert = try db.cachedStatement(sql: "INSERT INTO audit (\(auditColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        try insert.execute(arguments: [
            entry.seq, entry.time.journalMillis, entry.actor, entry.source, entry.action, entry.target, entry.outcome,
            entry.detail, entry.hash, RowChecksum.audit(entry),
        ])
    }

    /// Audit transactions committed since the journal was opened (for tests and benchmarks).
    package var auditCommitCount: Int { auditWriter.commitCount }

    package func auditEntries(after cursor: Int64?, limit: Int, newestFirst: Bool) async throws -> [AuditEntry] {
        let sql = "SELECT \(Self.auditColumns) FROM audit "
            + (newestFirst ? "WHERE seq < ? ORDER BY seq DESC LIMIT ?" : "WHERE seq > ? ORDER BY seq LIMIT ?")
        let cursor: Int64 = cursor ?? (newestFirst ? .max : 0)
        let arguments: StatementArguments = [cursor, max(0, limit)]
        return try await read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                let (entry, damage) = try Self.auditRow(row)
                if let damage { throw damage }
                return entry
            }
        }
    }

    package func auditEntries(target: String, limit: Int) async throws -> [AuditEntry] {
        try await read { db in
            try Row.fetchAll(
                db, sql: "SELECT \(Self.auditColumns) FROM audit WHERE target = ? ORDER BY seq LIMIT ?",
                arguments: [target, max(0, limit)]
            ).map { row in
                let (entry, damage) = try Self.auditRow(row)
                if let damage { throw damage }
                return entry
            }
        }
    }

    /// An audit row of ``auditColumns``, and the damage its row checksum shows (`nil`: none).
    /// - Throws: ``JournalError`` `damaged` naming the entry for a value of the wrong type or range.
    static func auditRow(_ row: Row) throws -> (entry: AuditEntry, damage: JournalError?) {
        let label = switch (row[0] as DatabaseValue).storage {
        case .int64(let seq): "\(seq)"
        default: "with seq \(StoredRow.storageClass(row[0]))"
        }
        let stored = StoredRow(row: row) { JournalError(.damagedAudit(seq: label, reason: $0)) }
        let entry = AuditEntry(
            seq: try stored.integer(0, "seq"), time: try stored.time(1, "time"), actor: try stored.text(2, "actor"),
            source: try stored.text(3, "source"), action: try stored.text(4, "action"), target: try stored.text(5, "target"),
            outcome: try stored.text(6, "outcome"), detail: try stored.optionalText(7, "detail"), hash: try stored.text(8, "hash"))
        let sum = try stored.optionalInteger(9, "sum")
        guard sum != RowChecksum.audit((0...8).map(stored.value)) else { return (entry, nil) }
        return (entry, JournalError(.damagedAudit(
            seq: label, reason: (sum == nil ? "the row has no checksum" : "the row does not match its checksum")
                + " (the stored bytes changed after they were written)")))
    }
}
