import DurableJournal
import Foundation
import GRDB

/// Payloads stored out of line (format 11, ``OutOfLinePayload``): `blobs` holds each stored frame once
/// under its SHA-256; `blob_refs` says which runs refer to it, so that deleting runs can delete the
/// blobs no run refers to any more.
extension SQLiteJournal {
    static let outOfLineTables = """
        CREATE TABLE IF NOT EXISTS blobs (
            digest     BLOB PRIMARY KEY,
            data       BLOB NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS blob_refs (
            run    INTEGER NOT NULL,
            digest BLOB NOT NULL,
            PRIMARY KEY (run, digest)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS blob_refs_digest ON blob_refs(digest);
        """

    /// Stores a payload moved out of line by an event of the run with key `key` (once per address;
    /// the run's reference to it once per run), in the caller's transaction.
    static func storeOutOfLine(_ payload: OutOfLinePayload, run key: Int64, _ db: Database, now: Int64) throws {
        try db.cachedStatement(sql: "INSERT INTO blobs (digest, data, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING")
            .execute(arguments: [payload.digest, payload.frame, now])
        try db.cachedStatement(sql: "INSERT INTO blob_refs (run, digest) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .execute(arguments: [key, payload.digest])
    }

    /// Finds stored payloads by address in `db` (a reference's check is ``JournalPayloads``').
    static func outOfLine(_ db: Database) -> OutOfLineLookup {
        { digest in
            try Data.fetchOne(db.cachedStatement(sql: "SELECT data FROM blobs WHERE digest = ?"), arguments: [digest])
        }
    }

    /// Deletes the references of the runs with these keys, then the blobs no run refers to any more.
    /// - Returns: how many blobs were deleted.
    static func deleteOutOfLine(ofRuns list: String, _ db: Database) throws -> Int {
        try db.execute(sql: "DELETE FROM blob_refs WHERE run IN (\(list))")
        guard db.changesCount > 0 else { return 0 }
        try db.execute(sql: "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob_refs.digest = blobs.digest)")
        return db.changesCount
    }

    /// The blobs and their bytes, for `stats`.
    static func outOfLineTotals(_ db: Database) throws -> (count: Int, bytes: Int) {
        let row = try Row.fetchOne(db, sql: "SELECT count(*), coalesce(sum(length(data)), 0) FROM blobs")
        return (row?[0] ?? 0, row?[1] ?? 0)
    }

    /// Checks every blob against its address and that some run refers to it; `problem` gets a line
    /// for each one that does not hold.
    /// - Returns: how many blobs were checked.
    static func checkOutOfLine(_ db: Database, problem: (String) -> Void) throws -> Int {
        var checked = 0
        let blobs = try Row.fetchCursor(db, sql: "SELECT digest, data FROM blobs")
        while let row = try blobs.next() {
            checked += 1
            guard case .blob(let digest) = (row[0] as DatabaseValue).storage, digest.count == 32 else {
                problem("a payload stored out of line has an address that is not a SHA-256 (\(StoredRow.storageClass(row[0])))")
                continue
            }
            guard case .blob(let data) = (row[1] as DatabaseValue).storage, OutOfLinePayload.matches(data, digest: digest) else {
                problem(OutOfLinePayload.mismatch(digest))
                continue
            }
        }
        let unreferenced = try Int.fetchOne(db, sql: """
            SELECT count(*) FROM blobs WHERE NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob_refs.digest = blobs.digest)
            """) ?? 0
        let dangling = try Int.fetchOne(db, sql: "SELECT count(*) FROM blob_refs WHERE run NOT IN (SELECT id FROM runs)") ?? 0
        OutOfLinePayload.orphanProblems(unreferenced: unreferenced, dangling: dangling).forEach(problem)
        return checked
    }
}
