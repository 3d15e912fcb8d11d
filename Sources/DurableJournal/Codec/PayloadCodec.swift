import CLZ4
package import Foundation

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
    }

    package static func encode(_ raw: Data) -> Data {
        var out = Data()
        out.reserveCapacity(raw.count + 16)
        let checksum = fnv1a(raw)
        if raw.count >= compressionThreshold, let compressed = lz4Compress(raw), compressed.count < raw.count {
            out.append(Format.lz4.rawValue)
            appendVarint(UInt64(raw.count), to: &out)
            appendChecksum(checksum, to: &out)
            out.append(compressed)
        } else {
            out.append(Format.raw.rawValue)
            appendVarint(UInt64(raw.count), to: &out)
            appendChecksum(checksum, to: &out)
            out.append(raw)
        }
        return out
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
        case .aesGCM:
            throw .truncatedHeader  // handled above
        }
        let actual = fnv1a(raw)
        guard actual == expected else { throw .checksumMismatch }
        return raw
    }

    /// The length of the original bytes, from the frame's header alone (nothing is decompressed or
    /// checked); `nil` when the header is unreadable.
    package static func decodedLength(_ blob: Data) -> Int? {
        (try? header([UInt8](blob.prefix(11)))).map { Int($0.length) }
    }

    /// The format byte and the original length; `cursor` is where the checksum starts.
    private static func header(_ bytes: [UInt8]) throws(PayloadCodecError) -> (format: Format, length: UInt64, cursor: Int) {
        guard let first = bytes.first else { throw .empty }
        guard let format = Format(rawValue: first), format != .aesGCM else { throw .unknownFormat(first) }
        var cursor = 1
        guard let length = readVarint(bytes, &cursor) else { throw .truncatedHeader }
        guard length <= UInt64(maximumPayloadLength) else { throw .implausibleLength(length) }
        return (format, length, cursor)
    }

    // MARK: - Helpers

    static func lz4Compress(_ raw: Data) -> Data? {
        let bound = Int(LZ4_compressBound(Int32(raw.count)))
        guard bound > 0 else { return nil }
        var output = [UInt8](repeating: 0, count: bound)
        let written = raw.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                LZ4_compress_default(
                    src.baseAddress?.assumingMemoryBound(to: CChar.self),
                    dst.baseAddress?.assumingMemoryBound(to: CChar.self),
                    Int32(src.count), Int32(bound))
            }
        }
        guard written > 0 else { return nil }
        return Data(output[0..<Int(written)])
    }

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
