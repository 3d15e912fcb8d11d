import Crypto
package import Foundation

/// Encrypted payload frames (format 2): a plain frame (raw or LZ4, with its checksum) encrypted with
/// AES-256-GCM, so a payload is compressed before it is encrypted and checked after it is decrypted.
///
/// ```
/// byte 0      2
/// byte 1      length n of the key ID (1…64)
/// n bytes     the key ID (ASCII)
/// 12 bytes    nonce (random for every payload)
/// rest        ciphertext of the plain frame, then the 16-byte GCM tag
/// ```
///
/// The first `2 + n` bytes (the format and the key ID) are authenticated data: a frame whose key ID
/// was altered does not decrypt.
extension PayloadCodec {
    static let nonceLength = 12
    static let tagLength = 16

    /// The key ID of an encrypted frame and where its nonce starts.
    /// - Throws: ``PayloadCodecError`` for a frame too short to hold its header, nonce and tag.
    static func sealedParts(_ blob: Data) throws(PayloadCodecError) -> (keyID: String, nonceStart: Int) {
        let start = blob.startIndex
        guard blob.count >= 2 else { throw .truncatedHeader }
        let idLength = Int(blob[start + 1])
        guard idLength > 0, blob.count >= 2 + idLength + nonceLength + tagLength else { throw .truncatedHeader }
        let keyID = String(decoding: blob[(start + 2)..<(start + 2 + idLength)], as: UTF8.self)
        return (keyID, 2 + idLength)
    }

    /// The ID of the key an encrypted frame needs; `nil` for a plain frame (or one too short to say).
    package static func encryptionKeyID(_ blob: Data) -> String? {
        guard blob.first == Format.aesGCM.rawValue else { return nil }
        return try? sealedParts(blob).keyID
    }
}

extension PayloadKeys {
    /// Frames `raw` (``PayloadCodec/encode(_:)``) and encrypts the frame with the current key, if any.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func encode(_ raw: Data) throws -> Data {
        try seal(PayloadCodec.encode(raw))
    }

    /// A plain frame encrypted with the current key; the frame itself when there is no current key
    /// or it is encrypted already.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func seal(_ frame: Data) throws -> Data {
        guard let id = currentKeyID, let key = key(id), frame.first != PayloadCodec.Format.aesGCM.rawValue else {
            return frame
        }
        var header = Data([PayloadCodec.Format.aesGCM.rawValue, UInt8(id.utf8.count)])
        header.append(contentsOf: id.utf8)
        do {
            let box = try AES.GCM.seal(frame, using: key, nonce: AES.GCM.Nonce(), authenticating: header)
            var out = header
            out.reserveCapacity(header.count + PayloadCodec.nonceLength + box.ciphertext.count + PayloadCodec.tagLength)
            out.append(contentsOf: box.nonce)
            out.append(box.ciphertext)
            out.append(box.tag)
            return out
        } catch {
            throw JournalError(.storage(reason: "cannot encrypt a payload with key '\(id)': \(error)"))
        }
    }

    /// Decodes a frame: a plain one as ``PayloadCodec/decode(_:)`` does; an encrypted one with the
    /// key it names, then the plain frame inside.
    /// - Throws: ``PayloadCodecError`` `encrypted` when the key is not held, `cannotDecrypt` when it
    ///   does not open the frame, or what is wrong with the frame.
    package func decode(_ blob: Data) throws(PayloadCodecError) -> Data {
        guard blob.first == PayloadCodec.Format.aesGCM.rawValue else { return try PayloadCodec.decode(blob) }
        let (keyID, nonceStart) = try PayloadCodec.sealedParts(blob)
        guard let key = key(keyID) else { throw .encrypted(keyID: keyID) }
        let start = blob.startIndex
        let frame: Data
        do {
            let nonce = try AES.GCM.Nonce(data: blob[(start + nonceStart)..<(start + nonceStart + PayloadCodec.nonceLength)])
            let box = try AES.GCM.SealedBox(
                nonce: nonce,
                ciphertext: blob[(start + nonceStart + PayloadCodec.nonceLength)..<(blob.endIndex - PayloadCodec.tagLength)],
                tag: blob[(blob.endIndex - PayloadCodec.tagLength)...])
            frame = try AES.GCM.open(box, using: key, authenticating: blob[start..<(start + nonceStart)])
        } catch {
            throw .cannotDecrypt(keyID: keyID)
        }
        // Never nested: the inside of an encrypted frame is a plain one.
        guard frame.first != PayloadCodec.Format.aesGCM.rawValue else { throw .unknownFormat(frame.first ?? 0) }
        return try PayloadCodec.decode(frame)
    }
}
