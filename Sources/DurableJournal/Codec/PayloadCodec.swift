import CLZ4
package import Foundation
import Synchronization

/// Encodes and decodes the payload blobs stored in the journal.
///
/// Every payload is framed so that corruption is detected instead of being read as data:
///
/// ```
/// byte 0      format: 0 = stored as is, 1 = LZ4 block
/// varint      length of the original bytes
/// 4 bytes     FNV-1a checksum of the original bytes, little endian
/// rest        the body (raw or LZ4-compressed)
/// ```
///
/// A journal with payload keys wraps that frame in an encrypted one (format 2, AES-256-GCM; see
/// `PayloadCodec+Encryption.swift`), whose header names the key. ``decode(_:)`` reads plain frames
/// only and reports an encrypted one as ``PayloadCodecError/encrypted(keyID:)``.
///
/// Payloads shorter than ``compressionThreshold`` or that LZ4 cannot shrink are stored as is: a
/// tiny JSON value gains nothing from compression and LZ4's block overhead would make it larger.
package enum PayloadCodec {
    package static let compressionThreshold = 48
    /// Refuse to allocate absurd buffers when a corrupt header claims a huge length.
    package static let maximumPayloadLength = 256 * 1024 * 1024

    package enum Format: UInt8 {
        case raw = 0
        case lz4 = 1
        /// AES-256-GCM around a raw or LZ4 frame: see `PayloadCodec+Encryption.swift`.
        case aesGCM = 2
        /// A reference to a payload stored out of line: see `OutOfLinePayloads.swift`.
        case reference = 3
    }

    package static func encode(_ raw: Data) -> Data {
        let count = raw.count
        let headerLength = 1 + varintLength(UInt64(count)) + 4
        // One buffer for the whole frame: LZ4's output is kept only when it is smaller than the raw
        // bytes, so the frame never needs more room than the header and the raw bytes. A temporary
        // one (on the stack when small), copied once into the frame's `Data` at its final length:
        // a zeroed `Data` shortened afterwards cost more than the copy.
        return withUnsafeTemporaryAllocation(byteCount: headerLength + count, alignment: 1) { frame -> Data in
            let compressed = raw.withUnsafeBytes { src -> Int in
                var hash = FNV1a()
                hash.add(src)
                let body = UnsafeMutableRawBufferPointer(rebasing: frame[headerLength...])
                let compressed = count >= compressionThreshold
                    ? LZ4Streams.compress(src, into: body, capacity: count - 1) : 0
                if compressed == 0, count > 0 { body.copyMemory(from: src) }
                frame[0] = compressed > 0 ? Format.lz4.rawValue : Format.raw.rawValue
                var cursor = 1
                var length = UInt64(count)
                while length >= 0x80 {
                    frame[cursor] = UInt8(truncatingIfNeeded: length) | 0x80
                    length >>= 7
                    cursor += 1
                }
                frame[cursor] = UInt8(length)
                for i in 0..<4 { frame[cursor + 1 + i] = UInt8(truncatingIfNeeded: hash.value >> (8 * UInt32(i))) }
                return compressed
            }
            return Data(UnsafeRawBufferPointer(rebasing: frame[..<(headerLength + (compressed > 0 ? compressed : count))]))
        }
    }

    /// How many bytes ``appendVarint(_:to:)`` writes for `value`.
    static func varintLength(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    /// Decodes a framed payload.
    /// - Throws: ``PayloadCodecError`` describing what is wrong with the frame.
    package static func decode(_ blob: Data) throws(PayloadCodecError) -> Data {
        let bytes = [UInt8](blob)
        if bytes.first == Format.aesGCM.rawValue { throw .encrypted(keyID: try sealedParts(blob).keyID) }
        let (format, length, start) = try header(bytes)
        var cursor = start
        guard cursor + 4 <= bytes.count else { throw .truncatedHeader }
        let expected = UInt32(bytes[cursor]) | UInt32(bytes[cursor + 1]) << 8
            | UInt32(bytes[cursor + 2]) << 16 | UInt32(bytes[cursor + 3]) << 24
        cursor += 4
        let body = bytes[cursor...]
        let raw: Data
        switch format {
        case .raw:
            guard body.count == Int(length) else { throw .lengthMismatch(expected: Int(length), actual: body.count) }
            raw = Data(body)
        case .lz4:
            var output = [UInt8](repeating: 0, count: Int(length))
            let written = body.withUnsafeBytes { src in
                output.withUnsafeMutableBytes { dst in
                    LZ4_decompress_safe(
                        src.baseAddress?.assumingMemoryBound(to: CChar.self),
                        dst.baseAddress?.assumingMemoryBound(to: CChar.self),
                        Int32(src.count), Int32(dst.count))
                }
            }
            guard written >= 0 else { throw .corruptCompressedData }
            guard Int(written) == Int(length) else {
                throw .lengthMismatch(expected: Int(length), actual: Int(written))
            }
            raw = Data(output)
        case .aesGCM, .reference:
            throw .unknownFormat(format.rawValue)  // refused by header(_:)
        }
        let actual = fnv1a(raw)
        guard actual == expected else { throw .checksumMismatch }
        return raw
    }

    /// The length of the original bytes, from the frame's header alone (nothing is decompressed or
    /// checked); `nil` when the header is unreadable.
    package static func decodedLength(_ blob: Data) -> Int? {
        if isReference(blob) { return (try? reference(blob)).map(\.rawLength) }
        return (try? header([UInt8](blob.prefix(11)))).map { Int($0.length) }
    }

    /// The format byte and the original length; `cursor` is where the checksum starts.
    private static func header(_ bytes: [UInt8]) throws(PayloadCodecError) -> (format: Format, length: UInt64, cursor: Int) {
        guard let first = bytes.first else { throw .empty }
        guard let format = Format(rawValue: first), format == .raw || format == .lz4 else { throw .unknownFormat(first) }
        var cursor = 1
        guard let length = readVarint(bytes, &cursor) else { throw .truncatedHeader }
        guard length <= UInt64(maximumPayloadLength) else { throw .implausibleLength(length) }
        return (format, length, cursor)
    }

    // MARK: - Helpers

    /// FNV-1a, 32 bits: the frames' checksum, also used for payload digests in replay traces.
    package static func fnv1a(_ data: Data) -> UInt32 {
        var hash = FNV1a()
        data.withUnsafeBytes { hash.add($0) }
        return hash.value
    }

    static func appendChecksum(_ value: UInt32, to out: inout Data) {
        out.append(UInt8(truncatingIfNeeded: value))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value >> 16))
        out.append(UInt8(truncatingIfNeeded: value >> 24))
    }

    package static func appendVarint(_ value: UInt64, to out: inout Data) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    package static func readVarint(_ bytes: [UInt8], _ cursor: inout Int) -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while cursor < bytes.count, shift < 64 {
            let byte = bytes[cursor]
            cursor += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        return nil
    }
}

/// What is wrong with a payload frame read from the journal.
package enum PayloadCodecError: Error, CustomStringConvertible, Equatable {
    case empty
    case unknownFormat(UInt8)
    case truncatedHeader
    case implausibleLength(UInt64)
    case lengthMismatch(expected: Int, actual: Int)
    case corruptCompressedData
    case checksumMismatch
    /// An encrypted frame read without its key (or by a reader that does not decrypt).
    case encrypted(keyID: String)
    /// An encrypted frame that the key of its ID does not open: another key, or damage.
    case cannotDecrypt(keyID: String)

    package var description: String {
        switch self {
        case .empty: "payload is empty"
        case .unknownFormat(let byte): "unknown payload format byte \(byte)"
        case .truncatedHeader: "payload header is truncated"
        case .implausibleLength(let n): "payload header claims an implausible length of \(n) bytes"
        case .lengthMismatch(let expected, let actual):
            "payload is truncated or padded: expected \(expected) bytes, found \(actual)"
        case .corruptCompressedData: "LZ4 data is corrupt"
        case .checksumMismatch: "payload checksum does not match its contents"
        case .encrypted(let keyID): "payload is encrypted with key '\(keyID)'"
        case .cannotDecrypt(let keyID): "cannot decrypt the payload with key '\(keyID)': wrong key or damaged"
        }
    }
}

/// LZ4 compression states kept for the next frame. `LZ4_compress_default` clears a fresh 16 KiB state
/// for every call, which costs more than compressing a small payload; a kept state is made ready with
/// `LZ4_resetStream_fast`, which clears only the stream's history (LZ4's documented way to compress
/// independent blocks with one state). Every block stays independent: it decodes without a dictionary.
enum LZ4Streams {
    /// A state, owned by one thread at a time: it is taken out of ``spare`` before use and put back after.
    private struct State: @unchecked Sendable {
        let stream: UnsafeMutablePointer<LZ4_stream_t>
    }

    /// One spare state; a second thread compressing meanwhile makes (and then frees) its own.
    private static let spare = Mutex<State?>(nil)

    /// Compresses `source` into `destination` as one LZ4 block of at most `capacity` bytes.
    /// - Returns: the block's length; 0 when it does not fit in `capacity` (or LZ4 fails).
    static func compress(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, capacity: Int
    ) -> Int {
        let capacity = min(capacity, destination.count)
        guard capacity > 0, source.count <= Int(LZ4_MAX_INPUT_SIZE),
            let state = spare.withLock({ $0.take() }) ?? LZ4_createStream().map(State.init)
        else { return 0 }
        LZ4_resetStream_fast(state.stream)
        let written = LZ4_compress_fast_continue(
            state.stream, source.baseAddress?.assumingMemoryBound(to: CChar.self),
            destination.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(source.count), Int32(capacity), 1)
        let extra = spare.withLock { slot -> State? in
            guard slot == nil else { return state }
            slot = state
            return nil
        }
        if let extra { LZ4_freeStream(extra.stream) }
        return max(0, Int(written))
    }
}
