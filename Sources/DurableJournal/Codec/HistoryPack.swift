package import Foundation

/// A closed run's whole history as one compressed block (`packed_histories`, journal format 7):
/// what `journal compact` turns a closed run's event rows into. Small payloads compress badly one by
/// one (a frame header on a 20-byte JSON value); a run's events together share field names, activity
/// types and IDs, and compress several times better.
///
/// The block is a ``PayloadCodec`` frame (LZ4 and a checksum) of, per event: varints for the index,
/// kind, time (milliseconds since 1970), sequence number and attempt, then name, data and meta, each
/// as a varint of its length plus one (0 for none) followed by its bytes. A leading byte holds the
/// layout's version.
///
/// Layout 2, written when some payload is encrypted or stored out of line (``HistoryEvent/encryptedData``):
/// each `data` field starts with a byte, 0 for a payload in clear and 1 for a payload frame as it was
/// stored (encrypted, or a reference to a payload stored out of line, ``OutOfLinePayload``). Compaction
/// so moves encrypted payloads without decrypting them (or needing their keys), and leaves large ones
/// where they are; everything else in the block stays readable without the keys.
package enum HistoryPack {
    static let layoutVersion: UInt8 = 1
    static let encryptedLayoutVersion: UInt8 = 2

    /// The block, and the bytes of the payloads (`data`) in it, as written by the workflows.
    package static func encode(_ events: [HistoryEvent]) -> (block: Data, payloadBytes: Int) {
        let tagged = events.contains { $0.encryptedData != nil }
        var out = Data([tagged ? encryptedLayoutVersion : layoutVersion])
        func bytes(_ value: Data?) {
            guard let value else { return PayloadCodec.appendVarint(0, to: &out) }
            PayloadCodec.appendVarint(UInt64(value.count) + 1, to: &out)
            out.append(value)
        }
        for event in events {
            PayloadCodec.appendVarint(UInt64(event.index), to: &out)
            PayloadCodec.appendVarint(UInt64(event.kind.rawValue), to: &out)
            PayloadCodec.appendVarint(UInt64(bitPattern: event.time.journalMillis), to: &out)
            PayloadCodec.appendVarint(UInt64(max(0, event.seq)), to: &out)
            PayloadCodec.appendVarint(UInt64(max(0, event.attempt)), to: &out)
            bytes(event.name.map { Data($0.utf8) })
            if let encrypted = event.encryptedData {  // or a reference to a payload stored out of line
                bytes(Data([1]) + encrypted.frame)
            } else {
                bytes(tagged ? event.data.map { Data([0]) + $0 } : event.data)
            }
            bytes(event.meta)
        }
        return (PayloadCodec.encode(out), payloadBytes(events))
    }

    /// The payload bytes of events as ``encode(_:)`` counts them: as written, or as stored for an
    /// encrypted one (a reference: the length of the payload it refers to, as written).
    package static func payloadBytes(_ events: [HistoryEvent]) -> Int {
        events.reduce(0) { total, event in
            total + (event.encryptedData.map { PayloadCodec.decodedLength($0.frame) ?? $0.frame.count } ?? event.data?.count ?? 0)
        }
    }

    /// The events of a block, encrypted payloads read as `payloads` says, payloads stored out of line
    /// found with `outOfLine`.
    /// - Throws: ``JournalError`` `corruptRun` naming the run and what is wrong; for a stored payload
    ///   frame, what ``JournalPayloads/read(_:runID:index:kind:outOfLine:)`` throws.
    package static func decode(
        _ block: Data, runID: String, payloads: JournalPayloads = JournalPayloads(), outOfLine: OutOfLineLookup = { _ in nil }
    ) throws -> [HistoryEvent] {
        func corrupt(_ reason: String) -> JournalError { JournalError(.corruptRun(runID: runID, reason: "packed history: \(reason)")) }
        let raw: Data
        do {
            raw = try PayloadCodec.decode(block)
        } catch {
            throw corrupt("\(error)")
        }
        let bytes = [UInt8](raw)
        guard bytes.first == layoutVersion || bytes.first == encryptedLayoutVersion else {
            throw corrupt("unknown layout \(bytes.first.map(String.init) ?? "none")")
        }
        let tagged = bytes.first == encryptedLayoutVersion
        var cursor = 1
        func number() throws -> UInt64 {
            guard let value = PayloadCodec.readVarint(bytes, &cursor) else { throw corrupt("truncated at byte \(cursor)") }
            return value
        }
        func field() throws -> Data? {
            let length = try number()
            guard length > 0 else { return nil }
            guard length - 1 <= UInt64(bytes.count - cursor) else { throw corrupt("field runs past the end at byte \(cursor)") }
            defer { cursor += Int(length - 1) }
            return Data(bytes[cursor..<cursor + Int(length - 1)])
        }
        /// A stored number that must lie in `range` (checked before any conversion can trap).
        func bounded(_ what: String, _ range: ClosedRange<Int64>, event: Int) throws -> Int64 {
            let value = try number()
            guard value <= UInt64(range.upperBound), range.contains(Int64(value)) else {
                throw corrupt("event \(event) has \(what) \(value), out of range")
            }
            return Int64(value)
        }
        var events: [HistoryEvent] = []
        while cursor < bytes.count {
            let index = Int(try bounded("index", 0...Int64(Int32.max), event: events.count))
            guard index == events.count else { throw corrupt("event \(events.count) is missing (next is \(index))") }
            let kindValue = Int(try bounded("kind", 0...Int64(UInt8.max), event: index))
            guard let kind = EventKind(rawValue: kindValue) else { throw corrupt("event \(index) has unknown kind \(kindValue)") }
            let time = Date(journalMillis: try bounded("time", Date.journalMillisRange, event: index))
            let seq = Int(try bounded("sequence number", 0...Int64(Int32.max), event: index))
            let attempt = Int(try bounded("attempt", 0...Int64(Int32.max), event: index))
            let name = try field().map { String(decoding: $0, as: UTF8.self) }
            var data = try field()
            var encrypted: EncryptedPayload?
            if tagged, let tagAndBytes = data {
                switch tagAndBytes.first {
                case 0: data = Data(tagAndBytes.dropFirst())
                case 1:
                    (data, encrypted) = try payloads.read(
                        Data(tagAndBytes.dropFirst()), runID: runID, index: index, kind: kind, outOfLine: outOfLine)
                default: throw corrupt("event \(index) has a payload of unknown kind")
                }
            }
            var event = HistoryEvent(
                index: index, kind: kind, time: time, seq: seq, attempt: attempt, name: name, data: data,
                meta: try field())
            event.encryptedData = encrypted
            events.append(event)
        }
        return events
    }
}
