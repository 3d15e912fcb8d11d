import DurableJournal
import Foundation
import GRDB

/// Checked reads of one stored row: every column is read as its storage class and range, never
/// through a conversion that traps. A value of the wrong type (TEXT in an integer column, a BLOB
/// for a name), or out of range (a time past year 9999), throws the error `corrupt` makes,
/// naming the column.
struct StoredRow {
    let row: Row
    let corrupt: (String) -> JournalError

    func value(_ index: Int) -> DatabaseValue { row[index] }

    private func wrongType(_ index: Int, _ column: String, expected: String) -> JournalError {
        corrupt("column \(column) holds \(Self.storageClass(value(index))), not \(expected)")
    }

    static func storageClass(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .null: "NULL"
        case .int64(let v): "the INTEGER \(v)"
        case .double(let v): "the REAL \(v)"
        case .string(let s): "TEXT '\(s.prefix(40))'"
        case .blob(let d): "a BLOB of \(d.count) bytes"
        }
    }

    func optionalInteger(_ index: Int, _ column: String, in range: ClosedRange<Int64>? = nil) throws -> Int64? {
        switch value(index).storage {
        case .null: return nil
        case .int64(let v):
            if let range, !range.contains(v) { throw corrupt("column \(column) holds \(v), out of range") }
            return v
        default: throw wrongType(index, column, expected: "an integer")
        }
    }

    func integer(_ index: Int, _ column: String, in range: ClosedRange<Int64>? = nil) throws -> Int64 {
        guard let v = try optionalInteger(index, column, in: range) else { throw wrongType(index, column, expected: "an integer") }
        return v
    }

    /// An integer that fits the given range, as an `Int`.
    func int(_ index: Int, _ column: String, in range: ClosedRange<Int64>) throws -> Int {
        Int(try integer(index, column, in: range))
    }

    /// A stored time (ms since 1970, years 1970 through 9999).
    func time(_ index: Int, _ column: String) throws -> Date {
        Date(journalMillis: try integer(index, column, in: Date.journalMillisRange))
    }

    func optionalTime(_ index: Int, _ column: String) throws -> Date? {
        try optionalInteger(index, column, in: Date.journalMillisRange).map(Date.init(journalMillis:))
    }

    func optionalText(_ index: Int, _ column: String) throws -> String? {
        switch value(index).storage {
        case .null: return nil
        case .string(let s): return s
        default: throw wrongType(index, column, expected: "text")
        }
    }

    func text(_ index: Int, _ column: String) throws -> String {
        guard let s = try optionalText(index, column) else { throw wrongType(index, column, expected: "text") }
        return s
    }

    func optionalBlob(_ index: Int, _ column: String) throws -> Data? {
        switch value(index).storage {
        case .null: return nil
        case .blob(let d): return d
        default: throw wrongType(index, column, expected: "a blob")
        }
    }

    func blob(_ index: Int, _ column: String) throws -> Data {
        guard let d = try optionalBlob(index, column) else { throw wrongType(index, column, expected: "a blob") }
        return d
    }
}

extension SQLiteJournal {
    /// The largest event index, sequence number and attempt a journal holds.
    static let countRange: ClosedRange<Int64> = 0...Int64(Int32.max)

    static let runColumns =
        "id, run_id, workflow_id, workflow_type, status, created_at, updated_at, closed_at, seed, error, lease_owner, lease_expires_at, sum"

    /// A row of ``runColumns``: the run's key in this file and its record.
    /// - Throws: ``JournalError`` `corruptRun` for a value of the wrong type or range, `damaged`
    ///   when the row's checksum does not match.
    static func runRow(_ row: Row) throws -> (key: Int64, run: RunRecord) {
        let label: String = switch (row[1] as DatabaseValue).storage {
        case .string(let s): s
        default: "with key \(StoredRow.storageClass(row[0]))"
        }
        let stored = StoredRow(row: row) { JournalError(.corruptRun(runID: label, reason: $0)) }
        let key = try stored.integer(0, "id")
        let runID = try stored.text(1, "run_id")
        let statusText = try stored.text(4, "status")
        guard let status = RunStatus(rawValue: statusText) else {
            throw JournalError(.corruptRun(runID: runID, reason: "unknown status '\(statusText.prefix(40))'"))
        }
        let run = RunRecord(
            runID: runID, workflowID: try stored.text(2, "workflow_id"), workflowType: try stored.text(3, "workflow_type"),
            status: status, createdAt: try stored.time(5, "created_at"), updatedAt: try stored.time(6, "updated_at"),
            closedAt: try stored.optionalTime(7, "closed_at"), seed: UInt64(bitPattern: try stored.integer(8, "seed")),
            error: try stored.optionalText(9, "error"), leaseOwner: try stored.optionalText(10, "lease_owner"),
            leaseExpiresAt: try stored.optionalTime(11, "lease_expires_at"))
        let sum = try stored.optionalInteger(12, "sum")
        if sum != RowChecksum.run([1, 2, 3, 5, 8, 9].map(stored.value)) {
            throw JournalError(.damaged(
                runID: runID, row: "run record",
                reason: sum == nil ? "the row has no checksum" : "the row does not match its checksum"))
        }
        return (key, run)
    }

    static func runRecord(_ row: Row) throws -> RunRecord { try runRow(row).run }

    /// The columns of `events` read by ``event(_:key:runID:)``.
    static let eventColumns = "idx, kind, time, seq, attempt, name, data, meta, sum"

    /// An event row of ``eventColumns`` of the run with key `key`, its payload decoded.
    /// - Throws: ``JournalError`` `corruptEvent` for a value of the wrong type or range or an
    ///   unreadable payload, `damaged` when the row's checksum does not match.
    /// A payload stored out of line is read from `db`.
    static func event(
        _ row: Row, key: Int64, runID: String, label: Int, payloads: JournalPayloads, _ db: Database
    ) throws -> HistoryEvent {
        let stored = StoredRow(row: row) { JournalError(.corruptEvent(runID: runID, index: label, reason: $0)) }
        let index = try stored.int(0, "idx", in: countRange)
        let eventStored = StoredRow(row: row) { JournalError(.corruptEvent(runID: runID, index: index, reason: $0)) }
        let kindValue = try eventStored.integer(1, "kind")
        guard let kind = Int(exactly: kindValue).flatMap(EventKind.init(rawValue:)) else {
            throw JournalError(.corruptEvent(runID: runID, index: index, reason: "unknown event kind \(kindValue)"))
        }
        let time = try eventStored.time(2, "time")
        let seq = try eventStored.int(3, "seq", in: countRange)
        let attempt = try eventStored.int(4, "attempt", in: countRange)
        let name = try eventStored.optionalText(5, "name")
        let framed = try eventStored.optionalBlob(6, "data")
        let meta = try eventStored.optionalBlob(7, "meta")
        let sum = try eventStored.optionalInteger(8, "sum")
        let (data, encrypted) = try payloads.read(framed, runID: runID, index: index, kind: kind, outOfLine: outOfLine(db))
        if sum != RowChecksum.event([key.databaseValue] + (0...7).map(stored.value)) {
            throw JournalError(.damaged(
                runID: runID, row: "event \(index) (\(kind.name))",
                reason: sum == nil ? "the row has no checksum" : "the row does not match its checksum"))
        }
        var event = HistoryEvent(index: index, kind: kind, time: time, seq: seq, attempt: attempt, name: name, data: data, meta: meta)
        event.encryptedData = encrypted
        return event
    }

    /// The columns of `signals` read by ``signal(_:runID:)``, `signals.` prefixed.
    static let signalColumns = "signals.id, signals.run, signals.name, signals.sent_at, signals.data, signals.sum"

    /// A queued signal row of ``signalColumns``, its payload decoded.
    /// - Throws: ``JournalError`` `corruptRun` for a value of the wrong type or range or an
    ///   unreadable payload, `damaged` when the row's checksum does not match.
    /// `unverifiedKey` names the key of a payload encrypted with a key not held (its `data` is `nil`).
    static func signal(
        _ row: Row, runID: String, payloads: JournalPayloads
    ) throws -> (id: Int64, name: String, sentAt: Date, data: Data?, unverifiedKey: String?) {
        let id = try StoredRow(row: row) { JournalError(.corruptRun(runID: runID, reason: "queued signal: \($0)")) }
            .integer(0, "id")
        let stored = StoredRow(row: row) { JournalError(.corruptRun(runID: runID, reason: "queued signal \(id): \($0)")) }
        let name = try stored.text(2, "name")
        let sentAt = try stored.time(3, "sent_at")
        let framed = try stored.optionalBlob(4, "data")
        let sum = try stored.optionalInteger(5, "sum")
        var data: Data?
        var unverifiedKey: String?
        if let framed {
            do throws(PayloadCodecError) {
                data = try payloads.decode(framed)
            } catch .encrypted(let keyID) {
                unverifiedKey = keyID
            } catch {
                throw JournalError(.corruptRun(
                    runID: runID, reason: "queued signal \(id) '\(name.prefix(40))' payload unreadable: \(error)"))
            }
        }
        if sum != RowChecksum.signal((1...4).map(stored.value)) {
            throw JournalError(.damaged(
                runID: runID, row: "queued signal \(id) '\(name.prefix(40))'",
                reason: sum == nil ? "the row has no checksum" : "the row does not match its checksum"))
        }
        return (id, name, sentAt, data, unverifiedKey)
    }
}
