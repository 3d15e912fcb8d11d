import Foundation

/// Byte-level JSON helpers: validation, top-level members, string escaping.
///
/// Payloads are passed through verbatim rather than decoded and re-encoded, so numbers, key order and
/// booleans come out exactly as the worker (or the caller) wrote them.
enum JSONText {
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// Appends one JSON value, validated, with line breaks (only possible as whitespace) made spaces.
    static func appendValue(_ json: Data, to line: inout [UInt8]) -> Bool {
        let result = json.withUnsafeBytes { raw -> (valid: Bool, lineBreaks: Bool) in
            var scanner = Scanner(raw.bindMemory(to: UInt8.self))
            scanner.skipWhitespace()
            guard scanner.skipValue(depth: 0) else { return (false, false) }
            scanner.skipWhitespace()
            return (scanner.atEnd, scanner.sawLineBreak)
        }
        guard result.valid else { return false }
        let start = line.count
        line.append(contentsOf: json)
        if result.lineBreaks {
            for index in start..<line.count where line[index] == 0x0A || line[index] == 0x0D {
                line[index] = 0x20
            }
        }
        return true
    }

    static func appendString(_ string: String, to line: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        line.append(0x22)
        for byte in string.utf8 {
            switch byte {
            case 0x22: line.append(contentsOf: [0x5C, 0x22])
            case 0x5C: line.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: line.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: line.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: line.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                line.append(contentsOf: Array(#"\u00"#.utf8))
                line.append(hex[Int(byte >> 4)])
                line.append(hex[Int(byte & 0xF)])
            default: line.append(byte)
            }
        }
        line.append(0x22)
    }

    /// The raw key (without quotes) and value ranges of a line holding one JSON object; nil otherwise.
    static func objectMembers(_ bytes: UnsafeBufferPointer<UInt8>) -> [(key: Range<Int>, value: Range<Int>)]? {
        var scanner = Scanner(bytes)
        var members: [(key: Range<Int>, value: Range<Int>)] = []
        scanner.skipWhitespace()
        guard scanner.consume(0x7B) else { return nil }  // {
        scanner.skipWhitespace()
        if !scanner.consume(0x7D) {  // }
            while true {
                let keyStart = scanner.index + 1
                guard scanner.peek(0x22), scanner.skipString() else { return nil }
                let key = keyStart..<(scanner.index - 1)
                scanner.skipWhitespace()
                guard scanner.consume(0x3A) else { return nil }  // :
                scanner.skipWhitespace()
                let valueStart = scanner.index
                guard scanner.skipValue(depth: 1) else { return nil }
                members.append((key, valueStart..<scanner.index))
                scanner.skipWhitespace()
                if scanner.consume(0x2C) {  // ,
                    scanner.skipWhitespace()
                    continue
                }
                guard scanner.consume(0x7D) else { return nil }
                break
            }
        }
        scanner.skipWhitespace()
        return scanner.atEnd ? members : nil
    }

    /// A JSON number without fraction or exponent, as an Int.
    static func integer(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }) else { return nil }
        return Int(String(decoding: bytes, as: UTF8.self))
    }

    /// A validating scanner over UTF-8 JSON (RFC 8259 grammar; bytes of strings are not UTF-8-checked).
    struct Scanner {
        private let bytes: UnsafeBufferPointer<UInt8>
        private(set) var index = 0
        private(set) var sawLineBreak = false

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
        }

        var atEnd: Bool { index >= bytes.count }

        func peek(_ byte: UInt8) -> Bool {
            index < bytes.count && bytes[index] == byte
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard peek(byte) else { return false }
            index += 1
            return true
        }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09: break
                case 0x0A, 0x0D: sawLineBreak = true
                default: return
                }
                index += 1
            }
        }

        mutating func skipValue(depth: Int) -> Bool {
            guard depth < 512, index < bytes.count else { return false }
            switch bytes[index] {
            case 0x7B: return skipContainer(close: 0x7D, depth: depth, members: true)  // {
            case 0x5B: return skipContainer(close: 0x5D, depth: depth, members: false)  // [
            case 0x22: return skipString()
            case UInt8(ascii: "t"): return skipLiteral("true")
            case UInt8(ascii: "f"): return skipLiteral("false")
            case UInt8(ascii: "n"): return skipLiteral("null")
            case 0x2D, 0x30...0x39: return skipNumber()
            default: return false
            }
        }

        private mutating func skipContainer(close: UInt8, depth: Int, members: Bool) -> Bool {
            index += 1
            skipWhitespace()
            if consume(close) { return true }
            while true {
                if members {
                    guard peek(0x22), skipString() else { return false }
                    skipWhitespace()
                    guard consume(0x3A) else { return false }
                    skipWhitespace()
                }
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                if consume(0x2C) {
                    skipWhitespace()
                    continue
                }
                return consume(close)
            }
        }

        /// Skips a string starting at its opening quote.
        mutating func skipString() -> Bool {
            index += 1
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case 0x22:
                    return true
                case 0x5C:
                    guard index < bytes.count else { return false }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case 0x22, 0x5C, 0x2F, UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                        UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        guard index + 4 <= bytes.count,
                            bytes[index..<index + 4].allSatisfy({ isHexDigit($0) })
                        else { return false }
                        index += 4
                    default:
                        return false
                    }
                case 0..<0x20:
                    return false
                default:
                    continue
                }
            }
            return false
        }

        private mutating func skipLiteral(_ literal: StaticString) -> Bool {
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
            guard bytes[index..<index + count].elementsEqual(expected) else { return false }
            index += count
            return true
        }

        private mutating func skipNumber() -> Bool {
            _ = consume(0x2D)
            guard index < bytes.count else { return false }
            if bytes[index] == 0x30 {
                index += 1
            } else {
                guard skipDigits() else { return false }
            }
            if consume(0x2E) {
                guard skipDigits() else { return false }
            }
            if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
                if !consume(0x2B) { _ = consume(0x2D) }
                guard skipDigits() else { return false }
            }
            return true
        }

        /// Skips one or more digits.
        private mutating func skipDigits() -> Bool {
            let start = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
            return index > start
        }

        private func isHexDigit(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
        }
    }
}
