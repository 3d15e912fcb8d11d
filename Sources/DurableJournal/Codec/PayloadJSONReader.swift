package import Foundation

/// Decodes a `Decodable` value from JSON as Foundation's `JSONDecoder` with default strategies would,
/// at a fraction of its cost (a workflow step decodes an activity's input and its result).
///
/// It decodes only what it is sure to decode to the same value, and leaves everything else to
/// `JSONDecoder` (returns `nil`): input that is not plain RFC 8259 JSON in UTF-8 (a byte order mark,
/// UTF-16, JSON5, invalid UTF-8, a lone surrogate escape), numbers that are not plain integers where
/// an integer is asked for, a `Float`, numbers out of range, an object with a key twice, nesting deeper
/// than 500, `Date`, `Data`, `URL` and `Decimal` (which `JSONDecoder` special-cases), `superDecoder`,
/// and every error (a missing key, a type mismatch): the caller then decodes with `JSONDecoder`, which
/// returns the value or throws its own error. A value's `init(from:)` may thus run twice when it
/// catches errors of its own.
package enum PayloadJSONReader {
    /// The value `data` holds, or `nil` when `JSONDecoder` must decode it.
    package static func decode<T: Decodable>(_ type: T.Type, from data: Data) -> T? {
        // An integer at the top level (an activity's input is often one) needs no parser.
        if type == Int.self, let number = plainInteger(data) { return number as? T }
        let state = ReaderState()
        let parsed: ParsedValue
        do {
            parsed = try data.withUnsafeBytes { bytes in
                var parser = Parser(bytes: bytes.bindMemory(to: UInt8.self))
                return try parser.document()
            }
        } catch {
            return nil
        }
        let decoder = ValueDecoder(state: state, value: parsed, parent: nil, key: nil)
        guard let value = try? decoder.unbox(type), !state.declined else { return nil }
        return value
    }
}

extension PayloadJSONReader {
    /// `data` as an `Int` when it is exactly a plain integer (`-?(0|[1-9][0-9]*)`, no spaces) that fits.
    static func plainInteger(_ data: Data) -> Int? {
        data.withUnsafeBytes { bytes -> Int? in
            var i = 0
            let negative = bytes.first == UInt8(ascii: "-")
            if negative { i = 1 }
            guard i < bytes.count, bytes.count - i <= 19, bytes[i] != UInt8(ascii: "0") || bytes.count - i == 1 else {
                return nil
            }
            var magnitude: UInt64 = 0
            while i < bytes.count {
                let digit = bytes[i] &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                magnitude = magnitude * 10 + UInt64(digit)  // 19 digits fit in a UInt64
                i += 1
            }
            if negative { return magnitude <= UInt64(Int.max) + 1 ? Int(truncatingIfNeeded: 0 &- magnitude) : nil }
            return magnitude <= UInt64(Int.max) ? Int(magnitude) : nil
        }
    }
}

/// A parsed JSON value. Numbers keep their text: each type reads it its own way.
private enum ParsedValue {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([ParsedValue])
    case object([(key: String, value: ParsedValue)])

}

private final class ReaderState {
    /// Set on any error: the caller decodes with `JSONDecoder` instead, even if the value's own code
    /// caught the error. Unchecked: one decoding runs on one thread.
    @exclusivity(unchecked) var declined = false

    func decline() -> PayloadJSONDeclined {
        declined = true
        return PayloadJSONDeclined()
    }
}

/// A strict RFC 8259 parser; anything else throws (the caller leaves the input to `JSONDecoder`).
private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    var cursor = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func document() throws -> ParsedValue {
        skipSpace()
        let value = try parseValue(depth: 0)
        skipSpace()
        guard cursor == bytes.count else { throw PayloadJSONDeclined() }
        return value
    }

    private mutating func skipSpace() {
        while cursor < bytes.count {
            switch bytes[cursor] {
            case 0x20, 0x09, 0x0A, 0x0D: cursor += 1
            default: return
            }
        }
    }

    private mutating func expect(_ literal: StaticString) throws {
        let count = literal.utf8CodeUnitCount
        guard cursor + count <= bytes.count else { throw PayloadJSONDeclined() }
        for i in 0..<count where bytes[cursor + i] != literal.utf8Start[i] { throw PayloadJSONDeclined() }
        cursor += count
    }

    private mutating func parseValue(depth: Int) throws -> ParsedValue {
        guard cursor < bytes.count, depth < 500 else { throw PayloadJSONDeclined() }
        switch bytes[cursor] {
        case UInt8(ascii: "{"):
            cursor += 1
            var entries: [(key: String, value: ParsedValue)] = []
            entries.reserveCapacity(4)
            skipSpace()
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "}") {
                cursor += 1
                return .object(entries)
            }
            while true {
                skipSpace()
                guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: "\"") else { throw PayloadJSONDeclined() }
                let key = try parseString()
                skipSpace()
                try expect(":")
                skipSpace()
                entries.append((key, try parseValue(depth: depth + 1)))
                skipSpace()
                guard cursor < bytes.count else { throw PayloadJSONDeclined() }
                if bytes[cursor] == UInt8(ascii: ",") {
                    cursor += 1
                } else if bytes[cursor] == UInt8(ascii: "}") {
                    cursor += 1
                    return .object(entries)
                } else {
                    throw PayloadJSONDeclined()
                }
            }
        case UInt8(ascii: "["):
            cursor += 1
            var elements: [ParsedValue] = []
            skipSpace()
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "]") {
                cursor += 1
                return .array(elements)
            }
            while true {
                skipSpace()
                elements.append(try parseValue(depth: depth + 1))
                skipSpace()
                guard cursor < bytes.count else { throw PayloadJSONDeclined() }
                if bytes[cursor] == UInt8(ascii: ",") {
                    cursor += 1
                } else if bytes[cursor] == UInt8(ascii: "]") {
                    cursor += 1
                    return .array(elements)
                } else {
                    throw PayloadJSONDeclined()
                }
            }
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try parseNumber())
        default:
            throw PayloadJSONDeclined()
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    private mutating func parseNumber() throws -> String {
        let start = cursor
        func digits() throws {
            let first = cursor
            while cursor < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[cursor]) { cursor += 1 }
            guard cursor > first else { throw PayloadJSONDeclined() }
        }
        if bytes[cursor] == UInt8(ascii: "-") { cursor += 1 }
        guard cursor < bytes.count else { throw PayloadJSONDeclined() }
        if bytes[cursor] == UInt8(ascii: "0") {
            cursor += 1
        } else {
            try digits()
        }
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: ".") {
            cursor += 1
            try digits()
        }
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "e") || bytes[cursor] == UInt8(ascii: "E") {
            cursor += 1
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "+") || bytes[cursor] == UInt8(ascii: "-") {
                cursor += 1
            }
            try digits()
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<cursor]), as: UTF8.self)
    }

    /// A string, `cursor` on its opening quote.
    private mutating func parseString() throws -> String {
        cursor += 1
        let start = cursor
        var ascii = true
        while cursor < bytes.count {
            if cursor + 8 <= bytes.count {
                // Eight bytes at a time: is any of them a quote, a backslash, below 0x20 or above 0x7F?
                let word = UnsafeRawPointer(bytes.baseAddress! + cursor).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quote = word ^ (ones &* 0x22)
                let backslash = word ^ (ones &* 0x5C)
                let found = word | ((word &- ones &* 0x20) & ~word) | ((quote &- ones) & ~quote)
                    | ((backslash &- ones) & ~backslash)
                if found & (ones &* 0x80) == 0 {
                    cursor += 8
                    continue
                }
            }
            let byte = bytes[cursor]
            if byte == UInt8(ascii: "\"") {
                let raw = UnsafeBufferPointer(rebasing: bytes[start..<cursor])
                cursor += 1
                if ascii { return String(decoding: raw, as: UTF8.self) }
                guard let text = String(validating: raw, as: UTF8.self) else { throw PayloadJSONDeclined() }
                return text
            }
            if byte == UInt8(ascii: "\\") { return try parseEscapedString(from: start) }
            guard byte >= 0x20 else { throw PayloadJSONDeclined() }
            if byte >= 0x80 { ascii = false }
            cursor += 1
        }
        throw PayloadJSONDeclined()
    }

    /// The rest of a string with escapes, its contents starting at `start`.
    private mutating func parseEscapedString(from start: Int) throws -> String {
        var utf8 = Array(UnsafeBufferPointer(rebasing: bytes[start..<cursor]))
        func hex4() throws -> UInt32 {
            guard cursor + 4 <= bytes.count else { throw PayloadJSONDeclined() }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[cursor]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw PayloadJSONDeclined()
                }
                value = value << 4 | UInt32(digit)
                cursor += 1
            }
            return value
        }
        while cursor < bytes.count {
            let byte = bytes[cursor]
            cursor += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: utf8, as: UTF8.self) else { throw PayloadJSONDeclined() }
                return text
            case UInt8(ascii: "\\"):
                guard cursor < bytes.count else { throw PayloadJSONDeclined() }
                let escape = bytes[cursor]
                cursor += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {  // a high surrogate: its low one must follow
                        try expect("\\u")
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw PayloadJSONDeclined() }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    // A lone low surrogate is no scalar.
                    guard let scalar = Unicode.Scalar(code) else { throw PayloadJSONDeclined() }
                    utf8.append(contentsOf: String(Character(scalar)).utf8)
                default:
                    throw PayloadJSONDeclined()
                }
            default:
                guard byte >= 0x20 else { throw PayloadJSONDeclined() }
                utf8.append(byte)
            }
        }
        throw PayloadJSONDeclined()
    }
}

/// The decoder of one parsed value.
private final class ValueDecoder: Decoder, SingleValueDecodingContainer {
    let state: ReaderState
    let value: ParsedValue
    let parent: ValueDecoder?
    let key: (any CodingKey)?

    init(state: ReaderState, value: ParsedValue, parent: ValueDecoder?, key: (any CodingKey)?) {
        self.state = state
        self.value = value
        self.parent = parent
        self.key = key
    }

    var codingPath: [any CodingKey] {
        var path: [any CodingKey] = []
        var decoder: ValueDecoder? = self
        while let current = decoder {
            if let key = current.key { path.append(key) }
            decoder = current.parent
        }
        return path.reversed()
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let entries) = value else { throw state.decline() }
        return KeyedDecodingContainer(try KeyedReader<Key>(decoder: self, entries: entries))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else { throw state.decline() }
        return UnkeyedReader(decoder: self, elements: elements)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    /// `value` decoded as `T`.
    func unbox<T: Decodable>(_ type: T.Type) throws -> T {
        if let scalar = try ValueDecoder.scalar(type, value, state) { return scalar }
        return try T(from: self)
    }

    /// `value` as one of the common scalars, read without a decoder; `nil` for other types.
    static func scalar<T: Decodable>(_ type: T.Type, _ value: ParsedValue, _ state: ReaderState) throws -> T? {
        if type == String.self { return try value.string(state) as? T }
        if type == Int.self { return try value.integer(Int.self, state) as? T }
        if type == Bool.self { return try value.bool(state) as? T }
        if type == Double.self { return try value.double(state) as? T }
        if type == Date.self || type == Data.self || type == URL.self || type == Decimal.self { throw state.decline() }
        return nil
    }

    /// A nested value's decoder.
    func child(_ value: ParsedValue, key: any CodingKey) -> ValueDecoder {
        ValueDecoder(state: state, value: value, parent: self, key: key)
    }

    func decodeNil() -> Bool { value.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { try value.bool(state) }
    func decode(_ type: String.Type) throws -> String { try value.string(state) }
    func decode(_ type: Double.Type) throws -> Double { try value.double(state) }
    func decode(_ type: Float.Type) throws -> Float { throw state.decline() }
    func decode(_ type: Int.Type) throws -> Int { try value.integer(type, state) }
    func decode(_ type: Int8.Type) throws -> Int8 { try value.integer(type, state) }
    func decode(_ type: Int16.Type) throws -> Int16 { try value.integer(type, state) }
    func decode(_ type: Int32.Type) throws -> Int32 { try value.integer(type, state) }
    func decode(_ type: Int64.Type) throws -> Int64 { try value.integer(type, state) }
    func decode(_ type: UInt.Type) throws -> UInt { try value.integer(type, state) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try value.integer(type, state) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try value.integer(type, state) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try value.integer(type, state) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try value.integer(type, state) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try unbox(type) }
}

/// Scalars read straight from a parsed value (no decoder needed).
extension ParsedValue {
    var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    func bool(_ state: ReaderState) throws -> Bool {
        guard case .bool(let flag) = self else { throw state.decline() }
        return flag
    }

    func string(_ state: ReaderState) throws -> String {
        guard case .string(let text) = self else { throw state.decline() }
        return text
    }

    func double(_ state: ReaderState) throws -> Double {
        guard case .number(let text) = self, let number = Double(text), number.isFinite else { throw state.decline() }
        return number
    }

    func integer<I: FixedWidthInteger>(_ type: I.Type, _ state: ReaderState) throws -> I {
        // A plain integer only ("1.0" and "1e2" are left to JSONDecoder); `I(text)` fails on overflow.
        guard case .number(let text) = self,
            !text.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 | 0x20 == UInt8(ascii: "e") }),
            I.isSigned || text.utf8.first != UInt8(ascii: "-"), let number = I(text)
        else { throw state.decline() }
        return number
    }
}

private struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ValueDecoder
    let entries: [(key: String, value: ParsedValue)]
    /// For larger objects: each key's position.
    private let index: [String: Int]?

    init(decoder: ValueDecoder, entries: [(key: String, value: ParsedValue)]) throws {
        self.decoder = decoder
        self.entries = entries
        if entries.count > 8 {
            var index: [String: Int] = [:]
            index.reserveCapacity(entries.count)
            for (i, entry) in entries.enumerated() {
                // A key twice: which one JSONDecoder keeps is its business.
                guard index.updateValue(i, forKey: entry.key) == nil else { throw decoder.state.decline() }
            }
            self.index = index
        } else {
            for i in entries.indices {
                for j in entries.indices where j > i && entries[j].key == entries[i].key {
                    throw decoder.state.decline()
                }
            }
            self.index = nil
        }
    }

    var codingPath: [any CodingKey] { decoder.codingPath }

    var allKeys: [Key] { entries.compactMap { Key(stringValue: $0.key) } }

    private func find(_ key: Key) -> ParsedValue? {
        let name = key.stringValue
        if let index { return index[name].map { entries[$0].value } }
        return entries.first { $0.key == name }?.value
    }

    private func value(_ key: Key) throws -> ParsedValue {
        guard let value = find(key) else { throw decoder.state.decline() }
        return value
    }

    func contains(_ key: Key) -> Bool { find(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try value(key) { return true }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let value = try value(key)
        if let scalar = try ValueDecoder.scalar(type, value, decoder.state) { return scalar }
        return try decoder.child(value, key: key).unbox(type)
    }

    private var state: ReaderState { decoder.state }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try value(key).bool(state) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try value(key).string(state) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try value(key).double(state) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { throw state.decline() }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try value(key).integer(type, state) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try value(key).integer(type, state) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try value(key).integer(type, state) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try value(key).integer(type, state) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try value(key).integer(type, state) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try value(key).integer(type, state) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try value(key).integer(type, state) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try value(key).integer(type, state) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try value(key).integer(type, state) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try value(key).integer(type, state) }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder.child(try value(key), key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.child(try value(key), key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { throw decoder.state.decline() }
    func superDecoder(forKey key: Key) throws -> any Decoder { throw decoder.state.decline() }
}

private struct UnkeyedReader: UnkeyedDecodingContainer {
    let decoder: ValueDecoder
    let elements: [ParsedValue]
    var currentIndex = 0

    init(decoder: ValueDecoder, elements: [ParsedValue]) {
        self.decoder = decoder
        self.elements = elements
    }

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    private mutating func next() throws -> ValueDecoder {
        guard currentIndex < elements.count else { throw decoder.state.decline() }
        defer { currentIndex += 1 }
        return decoder.child(elements[currentIndex], key: IndexKey(intValue: currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < elements.count else { throw decoder.state.decline() }
        if case .null = elements[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().unbox(type) }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().decode(type) }
    mutating func decode(_ type: String.Type) throws -> String { try next().decode(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().decode(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().decode(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().decode(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().decode(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().decode(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().decode(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().decode(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().decode(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().decode(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().decode(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().decode(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().decode(type) }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }

    mutating func superDecoder() throws -> any Decoder { throw decoder.state.decline() }
}
