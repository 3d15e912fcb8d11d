import DurableJournal
import Foundation
import Logging
import PostgresNIO

/// Payloads stored out of line (format 5, ``OutOfLinePayload``): `blobs` holds each stored frame once
/// under its SHA-256; `blob_refs` says which runs refer to it, so that deleting runs can delete the
/// blobs no run refers to any more.
extension PostgresSchema {
    /// The frames are LZ4 frames already (or encrypted): `STORAGE EXTERNAL` keeps them out of the row
    /// without PostgreSQL trying to compress them again.
    static func outOfLineTables(_ s: String) -> [String] {
        [
            "CREATE TABLE IF NOT EXISTS \(s).blobs (digest bytea PRIMARY KEY, data bytea NOT NULL, created_at bigint NOT NULL)",
            "ALTER TABLE \(s).blobs ALTER COLUMN data SET STORAGE EXTERNAL",
            "CREATE TABLE IF NOT EXISTS \(s).blob_refs (run_id text NOT NULL, digest bytea NOT NULL, PRIMARY KEY (run_id, digest))",
            "CREATE INDEX IF NOT EXISTS blob_refs_digest ON \(s).blob_refs (digest)",
        ]
    }
}

extension PostgresWriter {
    /// Stores the payloads the events moved out of line (``EventDraft/outOfLine``) for the run, in the
    /// caller's transaction. An existing blob's row is locked (a no-op update) until the transaction
    /// ends, so that a concurrent prune, which skips locked blobs, cannot delete it under the new
    /// reference.
    static func storeOutOfLine(
        _ events: [EventDraft], runID: String, schema s: String, now: Int64, _ connection: PostgresConnection, logger: Logger
    ) async throws {
        for payload in events.compactMap(\.outOfLine) {
            try await connection.query("""
                INSERT INTO \(unescaped: s).blobs (digest, data, created_at) VALUES (\(payload.digest), \(payload.frame), \(now))
                ON CONFLICT (digest) DO UPDATE SET created_at = \(unescaped: s).blobs.created_at
                """, logger: logger)
            try await connection.query("""
                INSERT INTO \(unescaped: s).blob_refs (run_id, digest) VALUES (\(runID), \(payload.digest)) ON CONFLICT DO NOTHING
                """, logger: logger)
        }
    }
}

extension PostgresJournal {
    /// The stored frames that these stored payloads refer to (those that are references), by address.
    func outOfLine(referencedBy stored: [Data?], _ connection: PostgresConnection) async throws -> [Data: Data] {
        var found: [Data: Data] = [:]
        for case let frame? in stored where PayloadCodec.isReference(frame) {
            guard let digest = try? PayloadCodec.reference(frame).digest, found[digest] == nil else { continue }
            let rows = try await connection.query(
                "SELECT data FROM \(unescaped: s).blobs WHERE digest = \(digest)", logger: logger).collect()
            if let data = try rows.first?.decode(Data.self) { found[digest] = data }
        }
        return found
    }

    /// Every stored frame a run refers to, by address (for a packed history).
    func outOfLine(ofRun runID: String, _ connection: PostgresConnection) async throws -> [Data: Data] {
        var found: [Data: Data] = [:]
        let rows = try await connection.query("""
            SELECT b.digest, b.data FROM \(unescaped: s).blob_refs r JOIN \(unescaped: s).blobs b ON b.digest = r.digest
            WHERE r.run_id = \(runID)
            """, logger: logger)
        for try await (digest, data) in rows.decode((Data, Data).self) { found[digest] = data }
        return found
    }

    /// Deletes the references of these runs, then the blobs they referred to that no run refers to any
    /// more, skipping those a writer holds locked (it is adding a reference). In the caller's transaction.
    static func deleteOutOfLine(ofRuns keys: [String], schema s: String, _ connection: PostgresConnection, logger: Logger) async throws {
        let digests = try await connection.query(
            "DELETE FROM \(unescaped: s).blob_refs WHERE run_id = ANY(\(keys)) RETURNING digest", logger: logger
        ).collect().map { try $0.decode(Data.self) }
        for digest in Set(digests) {
            try await connection.query("""
                DELETE FROM \(unescaped: s).blobs WHERE digest IN (
                    SELECT digest FROM \(unescaped: s).blobs b WHERE b.digest = \(digest)
                        AND NOT EXISTS (SELECT 1 FROM \(unescaped: s).blob_refs r WHERE r.digest = b.digest)
                    FOR UPDATE SKIP LOCKED)
                """, logger: logger)
        }
    }

    /// Checks every blob against its address and that some run refers to it.
    /// - Returns: how many blobs were checked.
    func checkOutOfLine(problem: (String) -> Void) async throws -> Int {
        var checked = 0
        var mismatched: [Data] = []
        try await withConnection { connection in
            let rows = try await connection.query("SELECT digest, data FROM \(unescaped: self.s).blobs", logger: self.logger)
            for try await (digest, data) in rows.decode((Data, Data).self) {
                checked += 1
                if !OutOfLinePayload.matches(data, digest: digest) { mismatched.append(digest) }
            }
        }
        mismatched.prefix(100).map(OutOfLinePayload.mismatch).forEach(problem)
        let row = try await rows("""
            SELECT (SELECT count(*) FROM \(unescaped: s).blobs b
                        WHERE NOT EXISTS (SELECT 1 FROM \(unescaped: s).blob_refs r WHERE r.digest = b.digest)),
                   (SELECT count(*) FROM \(unescaped: s).blob_refs r
                        WHERE NOT EXISTS (SELECT 1 FROM \(unescaped: s).runs WHERE runs.run_id = r.run_id))
            """).first
        guard let (unreferenced, dangling) = try row?.decode((Int64, Int64).self) else { return checked }
        OutOfLinePayload.orphanProblems(unreferenced: Int(unreferenced), dangling: Int(dangling)).forEach(problem)
        return checked
    }
}
