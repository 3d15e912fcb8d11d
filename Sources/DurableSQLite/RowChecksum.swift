import DurableJournal
import Foundation
import GRDB

/// The checksum of a stored row (journal format 8): the `sum` column of `events`, `signals` and
/// `runs`, so that a byte changed on disk in any field reads as damage, not as data (an activity
/// name `Summarize` turned into `Rummarize` would otherwise read as non-determinism).
///
/// A 32-bit FNV-1a over a fixed serialization of the row's fields, each as its SQLite storage class
/// and value: a tag byte (null, integer, real, text, blob), then 8 bytes little endian for an
/// integer or a real, or a length (8 bytes) and the bytes for text and blobs. A row kind byte comes
/// first. The `data` column of events and signals holds a ``PayloadCodec`` frame whose own checksum
/// covers the payload: the row's sum takes only the frame's length and its first
/// ``framePrefix`` bytes (the header with that checksum), so that the payload is never hashed twice.
///
/// - `events`: run key, idx, kind, time, seq, attempt, name, data (frame prefix), meta.
/// - `signals`: run key, name, sent_at, data (frame prefix).
/// - `runs`: run_id, workflow_id, workflow_type, created_at, seed, error. `status` and `closed_at`
///   change as the run proceeds and are checked against its history instead (a closed status needs
///   its closing event and a `closed_at` no earlier than `created_at`; an open one neither): a
///   change between open statuses, or of a closed run's `closed_at` to another plausible time, is
///   not detected. `updated_at` and the lease columns are operational state, not covered.
/// - `audit` (format 9): seq, time, actor, source, action, target, outcome, detail, hash: a row
///   changed on disk reads as damage; one rewritten on purpose, sum and all, breaks the entries' hash
///   chain instead (``AuditChain``).
struct RowChecksum {
    /// The bytes of a payload frame the row sum covers: its header (format, length, checksum) fits.
    static let framePrefix = 16

    enum RowKind: UInt8 {
        case event = 1
        case run = 2
        case signal = 3
        case audit = 4
    }

    private enum Tag: UInt8 {
        case null = 0, integer = 1, real = 2, text = 3, blob = 4
    }

    private var hash = FNV1a()

    init(_ kind: RowKind) { hash.add(kind.rawValue) }

    /// The sum as stored (a non-negative integer).
    var value: Int64 { Int64(hash.value) }

    mutating func add(_ value: Int64) {
        hash.add(Tag.integer.rawValue)
        hash.add(word: UInt64(bitPattern: value))
    }

    mutating func add(_ value: Int) { add(Int64(value)) }

    mutating func add(_ text: String?) {
        guard var text else { return hash.add(Tag.null.rawValue) }
        hash.add(Tag.text.rawValue)
        text.withUTF8 { utf8 in
            hash.add(word: UInt64(utf8.count))
            hash.add(UnsafeRawBufferPointer(utf8))
        }
    }

    /// A blob, whole (`prefix == nil`) or its length and first `prefix` bytes.
    mutating func add(_ blob: Data?, prefix: Int? = nil) {
        guard let blob else { return hash.add(Tag.null.rawValue) }
        hash.add(Tag.blob.rawValue)
        hash.add(word: UInt64(blob.count))
        blob.withUnsafeBytes { raw in
            hash.add(prefix.map { UnsafeRawBufferPointer(rebasing: raw.prefix($0)) } ?? raw)
        }
    }

    /// A stored value of any storage class, as read back (a blob whole, or its length and first
    /// `prefix` bytes).
    mutating func add(_ value: DatabaseValue, prefix: Int? = nil) {
        switch value.storage {
        case .null: hash.add(Tag.null.rawValue)
        case .int64(let v): add(v)
        case .double(let v):
            hash.add(Tag.real.rawValue)
            hash.add(word: v.bitPattern)
        case .string(let s): add(s)
        case .blob(let d): add(d, prefix: prefix)
        }
    }

    // MARK: - Rows

    /// The sum of an event row as written.
    static func event(
        run: Int64, index: Int, kind: Int, time: Int64, seq: Int, attempt: Int, name: String?, data: Data?, meta: Data?
    ) -> Int64 {
        var sum = RowChecksum(.event)
        sum.add(run)
        sum.add(index)
        sum.add(kind)
        sum.add(time)
        sum.add(seq)
        sum.add(attempt)
        sum.add(name)
        sum.add(data, prefix: framePrefix)
        sum.add(meta)
        return sum.value
    }

    /// The sum of an event row as read: `values` are run, idx, kind, time, seq, attempt, name, data, meta.
    static func event(_ values: [DatabaseValue]) -> Int64 {
        var sum = RowChecksum(.event)
        for (i, value) in values.enumerated() { sum.add(value, prefix: i == 7 ? framePrefix : nil) }
        return sum.value
    }

    /// The sum of a signal row as written.
    static func signal(run: Int64, name: String, sentAt: Int64, data: Data?) -> Int64 {
        var sum = RowChecksum(.signal)
        sum.add(run)
        sum.add(name)
        sum.add(sentAt)
        sum.add(data, prefix: framePrefix)
        return sum.value
    }

    /// The sum of a signal row as read: `values` are run, name, sent_at, data.
    static func signal(_ values: [DatabaseValue]) -> Int64 {
        var sum = RowChecksum(.signal)
        for (i, value) in values.enumerated() { sum.add(value, prefix: i == 3 ? framePrefix : nil) }
        return sum.value
    }

    /// The sum of a run row as written.
    static func run(
        runID: String, workflowID: String, workflowType: String, createdAt: Int64, seed: Int64, error: String?
    ) -> Int64 {
        var sum = RowChecksum(.run)
        sum.add(runID)
        sum.add(workflowID)
        sum.add(workflowType)
        sum.add(createdAt)
        sum.add(seed)
        sum.add(error)
        return sum.value
    }

    /// The sum of a run row as read: `values` are run_id, workflow_id, workflow_type, created_at, seed, error.
    static func run(_ values: [DatabaseValue]) -> Int64 {
        var sum = RowChecksum(.run)
        for value in values { sum.add(value) }
        return sum.value
    }

    /// The sum of an audit row as written.
    static func audit(_ entry: AuditEntry) -> Int64 {
        var sum = RowChecksum(.audit)
        sum.add(entry.seq)
        sum.add(entry.time.journalMillis)
        for field in [entry.actor, entry.source, entry.action, entry.target, entry.outcome, entry.detail, entry.hash] {
            sum.add(field)
        }
        return sum.value
    }

    /// The sum of an audit row as read: `values` are seq, time, actor, source, action, target, outcome,
    /// detail, hash.
    static func audit(_ values: [DatabaseValue]) -> Int64 {
        var sum = RowChecksum(.audit)
        for value in values { sum.add(value) }
        return sum.value
    }

    /// SQL functions computing the sums from column values, for the format-8 upgrade:
    /// `durable_event_sum(run, idx, kind, time, seq, attempt, name, data, meta)`,
    /// `durable_signal_sum(run, name, sent_at, data)` and
    /// `durable_run_sum(run_id, workflow_id, workflow_type, created_at, seed, error)`; and for
    /// statements that change a covered column in SQL, the new sum of a row whose old sum matches
    /// (else NULL, so that damage is never re-summed into a valid row):
    /// `durable_run_resum(sum, run_id, workflow_id, workflow_type, created_at, seed, error, new_error)` and
    /// `durable_signal_resum(sum, run, name, sent_at, data, new_run)`.
    static let functions: [DatabaseFunction] = [
        DatabaseFunction("durable_event_sum", argumentCount: 9, pure: true) { event($0) },
        DatabaseFunction("durable_signal_sum", argumentCount: 4, pure: true) { signal($0) },
        DatabaseFunction("durable_run_sum", argumentCount: 6, pure: true) { run($0) },
        DatabaseFunction("durable_run_resum", argumentCount: 8, pure: true) { values in
            guard values[0] == run(values[1...6].map { $0 }).databaseValue else { return nil }
            return run(values[1...5].map { $0 } + [values[7]])
        },
        DatabaseFunction("durable_signal_resum", argumentCount: 6, pure: true) { values in
            guard values[0] == signal(values[1...4].map { $0 }).databaseValue else { return nil }
            return signal([values[5]] + values[2...4])
        },
    ]
}
