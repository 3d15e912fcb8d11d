import Crypto
package import Foundation

/// The audit log's hash chain, computed here so that every backend writes and checks the same one.
///
/// An entry's hash is SHA-256, in lowercase hex, over: the previous entry's hash as its 64 hex
/// digits in ASCII (64 `0`s before the first entry); ``AuditEntry/seq`` and the time in milliseconds
/// since 1970, each 8 bytes big endian; then `actor`, `source`, `action`, `target` and `outcome`, each
/// as its length in bytes (8 bytes big endian) and its UTF-8; then `detail`: a byte 0 when absent,
/// else a byte 1, its length and its UTF-8. So a change to any field of any entry, an entry removed
/// or inserted, or two entries swapped shows at that entry or the one after it.
package enum AuditChain {
    /// The "previous hash" of the first entry.
    package static let start = String(repeating: "0", count: 64)

    /// The entry numbered `seq`, recorded at `time`, that follows the entry whose hash is `previous`:
    /// the draft's fields clipped (``AuditDraft/clipped``), its hash computed.
    package static func entry(_ draft: AuditDraft, seq: Int64, time: Date, previous: String) -> AuditEntry {
        let draft = draft.clipped
        var entry = AuditEntry(
            seq: seq, time: Date(journalMillis: time.journalMillis), actor: draft.actor, source: draft.source,
            action: draft.action, target: draft.target, outcome: draft.outcome, detail: draft.detail, hash: "")
        entry.hash = hash(of: entry, previous: previous)
        return entry
    }

    /// Checks that `entries`, in order, continue a log whose last entry is `last` (`nil`: an empty log):
    /// each numbered one past the entry before it, its hash following from its fields and that entry's
    /// hash.
    /// - Throws: ``JournalError`` naming the first entry that does not follow.
    package static func checkContinuation(_ entries: [AuditEntry], after last: AuditEntry?) throws {
        var previous = (seq: last?.seq ?? 0, hash: last?.hash ?? start)
        for entry in entries {
            guard entry.seq == previous.seq + 1 else {
                throw JournalError(.storage(reason:
                    "audit entry \(entry.seq) cannot follow entry \(previous.seq), the log's last: entries are numbered on without gaps"))
            }
            guard entry.hash == hash(of: entry, previous: previous.hash) else {
                throw JournalError(.storage(reason:
                    "audit entry \(entry.seq): its hash does not follow from its fields and the hash of entry \(previous.seq) before it"))
            }
            previous = (entry.seq, entry.hash)
        }
    }

    /// The hash `entry` must have after the entry whose hash is `previous` (its own ``AuditEntry/hash``
    /// is not read).
    package static func hash(of entry: AuditEntry, previous: String) -> String {
        var bytes = Data(previous.utf8)
        func add(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
        func add(_ text: String) {
            add(Int64(text.utf8.count))
            bytes.append(contentsOf: text.utf8)
        }
        add(entry.seq)
        add(entry.time.journalMillis)
        for field in [entry.actor, entry.source, entry.action, entry.target, entry.outcome] { add(field) }
        if let detail = entry.detail {
            bytes.append(1)
            add(detail)
        } else {
            bytes.append(0)
        }
        return SHA256.hash(data: bytes).lowercaseHex
    }
}

/// Checks stored audit entries one by one, in order of ``AuditEntry/seq``: numbered 1, 2, 3, …
/// without gaps, each hash following from its fields and the entry before.
package struct AuditChainCheck {
    private var previous: (seq: Int64, hash: String) = (0, AuditChain.start)

    package init() {}

    /// The problems of the next stored entry (none when it follows the chain), each naming its seq.
    package mutating func check(_ entry: AuditEntry) -> [String] {
        var problems: [String] = []
        if entry.seq != previous.seq + 1 {
            problems.append("audit entry \(entry.seq): follows entry \(previous.seq) (entries are missing or renumbered)")
        }
        if entry.hash != AuditChain.hash(of: entry, previous: previous.hash) {
            problems.append("audit entry \(entry.seq): its hash does not follow from its fields and the entry before it "
                + "(this entry or the one before it was changed after it was written)")
        }
        previous = (entry.seq, entry.hash)  // go on from what is stored: one change is reported once
        return problems
    }
}

extension Sequence<UInt8> {
    /// The bytes as lowercase hexadecimal digits, two per byte.
    package var lowercaseHex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
