#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address, as bytes (4 or 16); an IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`)
/// is read as the IPv4 address, so that one range matches a peer whichever way the socket shows it.
struct IPAddress: Equatable, Sendable {
    let bytes: [UInt8]

    /// Reads `text`: an IPv4 address, or an IPv6 one, optionally in brackets; a port after an IPv4
    /// address or a bracketed IPv6 one (`203.0.113.7:4711`, `[2001:db8::1]:443`) is ignored. `nil`
    /// for anything else.
    init?(_ text: some StringProtocol) {
        var text = Substring(text)
        if text.first == "[" {
            guard let close = text.firstIndex(of: "]") else { return nil }
            text = text[text.index(after: text.startIndex)..<close]
        } else if text.filter({ $0 == ":" }).count == 1 {
            text = text.prefix { $0 != ":" }
        }
        guard !text.isEmpty, text.count <= 64 else { return nil }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, String(text), &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, String(text), &v6) == 1 {
            let all = withUnsafeBytes(of: &v6) { Array($0) }
            bytes = all.prefix(12).elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]) ? Array(all.suffix(4)) : all
        } else {
            return nil
        }
    }

    /// The address as `inet_ntop` writes it (`203.0.113.7`, `2001:db8::1`).
    var text: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        return bytes.withUnsafeBytes { raw in
            guard inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address.
public struct AddressRange: Sendable, Equatable, CustomStringConvertible {
    let base: IPAddress
    let prefixLength: Int

    /// Reads `text`: an IPv4 or IPv6 address with an optional `/prefix` (0 to 32, or 0 to 128).
    /// - Throws: an error naming `text` when it is neither.
    public init(_ text: String) throws {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        // One address, without brackets or a port.
        guard let base = IPAddress(parts[0]), !parts[0].contains("["), parts[0].filter({ $0 == ":" }).count != 1 else {
            throw AddressRangeError(text: text)
        }
        let bits = base.bytes.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...bits).contains(length) else {
                throw AddressRangeError(text: text)
            }
            prefixLength = length
        } else {
            prefixLength = bits
        }
        self.base = base
    }

    /// Whether `address` is in the range (an IPv4 range holds no IPv6 address, and the reverse).
    func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == base.bytes.count else { return false }
        var left = prefixLength
        for (a, b) in zip(address.bytes, base.bytes) where left > 0 {
            let mask: UInt8 = left >= 8 ? 0xff : ~(0xff >> UInt8(left))
            if a & mask != b & mask { return false }
            left -= 8
        }
        return true
    }

    public var description: String { "\(base.text)/\(prefixLength)" }
}

/// A trusted proxy range that cannot be read.
public struct AddressRangeError: Error, CustomStringConvertible {
    let text: String
    public var description: String {
        "'\(text.prefix(80))' is not an IP address or a CIDR range (such as 10.0.0.0/8, 127.0.0.1 or fd00::/8)"
    }
}

extension [AddressRange] {
    /// Where a request came from: the TCP peer (`ip:port`), or, when the peer is a trusted proxy
    /// that sent `X-Forwarded-For`, `CLIENT via ip:port`. CLIENT is the address nearest the end of
    /// the header's list that is not itself a trusted proxy: each proxy appends the address it was
    /// connected from, so the entries before that one are what the client sent and may be forged.
    /// A list whose last entry is not an address names no client.
    func origin(peerIP: String?, peer: String, forwardedFor values: [String]) -> String {
        guard !isEmpty, !values.isEmpty, let peerIP, let address = IPAddress(peerIP), contains(where: { $0.contains(address) }) else {
            return peer
        }
        var client: IPAddress?
        // At most 64 entries are read, from the end: a longer list is someone's padding.
        for entry in values.joined(separator: ",").split(separator: ",").reversed().prefix(64) {
            guard let hop = IPAddress(entry.trimmingSpaces) else { break }
            client = hop
            if !contains(where: { $0.contains(hop) }) { break }
        }
        return client.map { "\($0.text) via \(peer)" } ?? peer
    }
}
