import Crypto
package import Foundation

/// A large payload stored out of line: its frame (plain or encrypted, exactly as it would have been
/// stored in the event's row) kept once in the journal's blob table under the SHA-256 of its bytes,
/// and a small reference frame in the event's row instead (journal format 11 on SQLite, 5 on
/// PostgreSQL; `Docs/operations.md`, "Large payloads").
///
/// The reference frame (format 3):
///
/// ```
/// byte 0      3
/// varint      length of the original bytes (as in a plain frame's header)
/// varint      length of the stored frame
/// 32 bytes    SHA-256 of the stored frame: the blob's address
/// ```
///
/// The address is the hash of the stored bytes, so equal payloads written in clear are stored once
/// (their frames are the same bytes); encrypted ones are not shared, since each is sealed with a
/// nonce of its own (and so equal contents cannot be told apart by their addresses). A read checks the
/// blob against its address before it decodes the frame, which then checks its own checksum.
package struct OutOfLinePayload: Sendable, Equatable {
    /// The SHA-256 of ``frame``, 32 bytes.
    package var digest: Data
    /// The payload's frame as stored.
    package var frame: Data

    /// The frame with its address.
    package init(frame: Data) {
        self.frame = frame
        self.digest = Data(SHA256.hash(data: frame))
    }

    /// Whether `frame` hashes to `digest`: a stored blob read back is what was written.
    package static func matches(_ frame: Data, digest: Data) -> Bool {
        Data(SHA256.hash(data: frame)) == digest
    }

    /// The first 12 hex digits of a digest, for messages.
    package static func label(_ digest: Data) -> String {
        "sha256:" + digest.prefix(6).map { String(format: "%02x", $0) }.joined() + "…"
    }

    /// What `journal check` says of a stored payload that does not match its address.
    package static func mismatch(_ digest: Data) -> String {
        "payload stored out of line \(label(digest)) does not match its SHA-256 "
            + "(the stored bytes changed after they were written: a disk or storage fault)"
    }

    /// What `journal check` says of `unreferenced` payloads no run refers to and `dangling` references
    /// from runs that do not exist (nothing for none).
    package static func orphanProblems(unreferenced: Int, dangling: Int) -> [String] {
        (unreferenced > 0 ? ["\(unreferenced) payload(s) stored out of line that no run refers to"] : [])
            + (dangling > 0 ? ["\(dangling) reference(s) to payloads stored out of line from runs that do not exist"] : [])
    }

    /// The reference frame stored in the event's row in place of ``frame``.
    package func reference(rawLength: Int) -> Data {
        var out = Data([PayloadCodec.Format.reference.rawValue])
        PayloadCodec.appendVarint(UInt64(rawLength), to: &out)
        PayloadCodec.appendVarint(UInt64(frame.count), to: &out)
        out.append(digest)
        return out
    }
}

extension PayloadCodec {
    /// Whether a stored payload is a reference to one stored out of line (``OutOfLinePayload``).
    package static func isReference(_ frame: Data) -> Bool { frame.first == Format.reference.rawValue }

    /// The parts of a reference frame.
    /// - Throws: ``PayloadCodecError`` when it is not one, or is truncated or padded.
    package static func reference(
        _ frame: Data
    ) throws(PayloadCodecError) -> (digest: Data, rawLength: Int, storedLength: Int) {
        let bytes = [UInt8](frame)
        guard bytes.first == Format.reference.rawValue else { throw .unknownFormat(bytes.first ?? 0) }
        var cursor = 1
        guard let raw = readVarint(bytes, &cursor), let stored = readVarint(bytes, &cursor) else { throw .truncatedHeader }
        guard raw <= UInt64(maximumPayloadLength), stored <= UInt64(maximumPayloadLength) else {
            throw .implausibleLength(max(raw, stored))
        }
        guard bytes.count - cursor == 32 else { throw .lengthMismatch(expected: cursor + 32, actual: bytes.count) }
        return (Data(bytes[cursor...]), Int(raw), Int(stored))
    }
}
