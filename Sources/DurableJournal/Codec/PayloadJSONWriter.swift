package import Foundation

/// Writes an `Encodable` value as the same JSON bytes as Foundation's `JSONEncoder` with
/// `[.sortedKeys, .withoutEscapingSlashes]` and default strategies (Durable's payload encoder), at a
/// fraction of its cost: a workflow step encodes an activity's input and its result, and `JSONEncoder`
/// spent more instructions on those two small values than the journal spent writing them.
///
/// It leaves to `JSONEncoder` (returns `nil`) whatever it does not write byte for byte the same:
/// `Date`, `Data`, `URL` and `Decimal` (which `JSONEncoder` special-cases), class instances, non-ASCII
/// object keys, a key written twice, `superEncoder`, non-finite numbers, containers requested in an
/// order `JSONEncoder` treats specially, and any error the value's `encode(to:)` throws (the caller
/// then encodes with `JSONEncoder`, which throws its own error).
///
/// The output rules it follows (swift-foundation's `JSONWriter` on Linux): object keys sorted by their
/// UTF-8 bytes; integers as their `description`; floating-point numbers as their `description` without
/// a trailing `.0`; strings with `"`, `\`, and control characters escaped (`\b`, `\f`, `\n`, `\r`, `\t`,
/// others as `\u00xx` in lower case), `/` and all non-ASCII characters as they are.
package enum PayloadJSONWriter {
    /// The JSON of `value`, or `nil` when `JSONEncoder` must write it.
    package static func encode<T: Encodable>(_ value: T) -> Data? {
        // A scalar at the top level (an activity's input is often one) needs no encoder.
        if T.self == Int.self { return WriterState.decimal(value as! Int) { Data($0) } }
        if T.self == String.self {
            var out: [UInt8] = []
            WriterState.appendQuoted(value as! String, to: &out)
            return Data(out)
        }
        if T.self == Bool.self { return Data(((value as! Bool) ? "true" : "false").utf8) }
        let state = WriterState()
        let encoder = ValueEncoder(state: state, parent: nil, key: nil)
        guard let top = try? encoder.box(value), !state.declined else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(state.scalars.count + 16)
        guard state.write(top, into: &out, depth: 0) else { return nil }
        return Data(out)
    }
}

/// What one encoding has written so far: the text of every scalar, in one buffer.
private final class WriterState {
    // Unchecked: one encoding runs on one thread, and no access to these overlaps another.
    @exclusivity(unchecked) var scalars: [UInt8] = []
    /// Set when the value needs something only `JSONEncoder` writes exactly.
    @exclusivity(unchecked) var declined = false

    init() { scalars.reserveCapacity(256) }

    func scalar(_ text: StaticString) -> WrittenValue {
        let start = scalars.count
        scalars.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        return .scalar(start..<scalars.count)
    }

    func number(_ text: String) -> WrittenValue {
        let start = scalars.count
        scalars.append(contentsOf: text.utf8)
        return .scalar(start..<scalars.count)
    }

    func integer<I: FixedWidthInteger>(_ value: I) -> WrittenValue {
        let start = scalars.count
        Self.decimal(value) { scalars.append(contentsOf: $0) }
        return .scalar(start..<scalars.count)
    }

    /// Calls `body` with the bytes of `value.description`, written without making a `String`.
    static func decimal<I: FixedWidthInteger, R>(_ value: I, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard I.bitWidth <= 64 else {
            var text = value.description
            return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
        var magnitude = UInt64(value.magnitude)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for a sign and UInt64.max's 20 digits
        return withUnsafeMutableBytes(of: &digits) { buffer in
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            if value < 0 {
                start -= 1
                buffer[start] = UInt8(ascii: "-")
            }
            return body(UnsafeRawBufferPointer(rebasing: buffer[start...]))
        }
    }

    func floatingPoint<F: BinaryFloatingPoint & CustomStringConvertible>(_ value: F) throws -> WrittenValue {
        guard value.isFinite else { throw decline() }  // JSONEncoder throws its own error for these
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return number(text)
    }

    func string(_ text: String) -> WrittenValue {
        let start = scalars.count
        Self.appendQuoted(text, to: &scalars)
        return .scalar(start..<scalars.count)
    }

    func decline() -> PayloadJSONDeclined {
        declined = true
        return PayloadJSONDeclined()
    }

    /// `text` as a JSON string, escaped as `JSONEncoder` escapes it with `.withoutEscapingSlashes`.
    static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var mark = 0
            var i = 0
            while i < bytes.count {
                if i + 8 <= bytes.count {
                    // Eight bytes at a time: is any of them below 0x20, a quote or a backslash?
                    let word = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
                    let ones: UInt64 = 0x0101_0101_0101_0101
                    let quote = word ^ (ones &* 0x22)
                    let backslash = word ^ (ones &* 0x5C)
                    let found = ((word &- ones &* 0x20) & ~word) | ((quote &- ones) & ~quote)
                        | ((backslash &- ones) & ~backslash)
                    if found & (ones &* 0x80) == 0 {
                        i += 8
                        continue
                    }
                }
                let byte = bytes[i]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else {
                    i += 1
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[mark..<i]))
                i += 1
                mark = i
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [
                        UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)],
                    ])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[mark...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Serializes `value`; `false` when it holds a key twice or nests too deep (left to `JSONEncoder`).
    func write(_ value: WrittenValue, into out: inout [UInt8], depth: Int) -> Bool {
        switch value {
        case .scalar(let range):
            out.append(contentsOf: scalars[range])
        case .array(let array):
            guard depth < 500 else { return false }
            out.append(UInt8(ascii: "["))
            for (i, element) in array.elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                guard write(element, into: &out, depth: depth + 1) else { return false }
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            guard depth < 500 else { return false }
            var entries = object.entries
            if entries.count > 1 {
                entries.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
                for i in 1..<entries.count where entries[i].key == entries[i - 1].key { return false }
            }
            out.append(UInt8(ascii: "{"))
            for (i, entry) in entries.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendQuoted(entry.key, to: &out)
                out.append(UInt8(ascii: ":"))
                guard write(entry.value, into: &out, depth: depth + 1) else { return false }
            }
            out.append(UInt8(ascii: "}"))
        }
        return true
    }
}

/// The marker error of a value left to `JSONEncoder` (or `JSONDecoder`).
package struct PayloadJSONDeclined: Error {}

private enum WrittenValue {
    /// A scalar's JSON text: a range of ``WriterState/scalars``.
    case scalar(Range<Int>)
    case array(ArrayBox)
    case object(ObjectBox)
}

private final class ArrayBox {
    @exclusivity(unchecked) var elements: [WrittenValue] = []
}

private final class ObjectBox {
    @exclusivity(unchecked) var entries: [(key: String, value: WrittenValue)] = []

    init() { entries.reserveCapacity(8) }
}

/// The encoder one value (the top level, or a container's element) is encoded with.
private final class ValueEncoder: Encoder, SingleValueEncodingContainer {
    let state: WriterState
    let parent: ValueEncoder?
    let key: (any CodingKey)?
    /// What this encoder's value became, once it has one.
    @exclusivity(unchecked) var value: WrittenValue?

    init(state: WriterState, parent: ValueEncoder?, key: (any CodingKey)?) {
        self.state = state
        self.parent = parent
        self.key = key
    }

    var codingPath: [any CodingKey] {
        var path: [any CodingKey] = []
        var encoder: ValueEncoder? = self
        while let current = encoder {
            if let key = current.key { path.append(key) }
            encoder = current.parent
        }
        return path.reversed()
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: ObjectBox
        switch value {
        case nil:
            object = ObjectBox()
            value = .object(object)
        case .object(let existing)?:
            object = existing  // JSONEncoder also hands out the same object again
        default:
            state.declined = true
            object = ObjectBox()
        }
        return KeyedEncodingContainer(KeyedWriter<Key>(encoder: self, object: object))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: ArrayBox
        switch value {
        case nil:
            array = ArrayBox()
            value = .array(array)
        case .array(let existing)?:
            array = existing
        default:
            state.declined = true
            array = ArrayBox()
        }
        return UnkeyedWriter(encoder: self, array: array)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    /// `value` as JSON: a scalar written at once, or a nested encoder's container.
    func box<T: Encodable>(_ value: T, key: (any CodingKey)? = nil) throws -> WrittenValue {
        let type = T.self
        if type == String.self { return state.string(value as! String) }
        if type == Int.self { return state.integer(value as! Int) }
        if type == Bool.self { return (value as! Bool) ? state.scalar("true") : state.scalar("false") }
        if type == Double.self { return try state.floatingPoint(value as! Double) }
        if type == Int64.self { return state.integer(value as! Int64) }
        if type == Int32.self { return state.integer(value as! Int32) }
        if type == UInt64.self { return state.integer(value as! UInt64) }
        if type == UInt.self { return state.integer(value as! UInt) }
        // What JSONEncoder special-cases (it casts, so an existential holding one counts too), and class
        // instances (which may bridge to one of them).
        let dynamicType: Any.Type = Swift.type(of: value)
        if dynamicType == Date.self || dynamicType == Data.self || dynamicType == URL.self
            || dynamicType == Decimal.self || dynamicType is AnyClass
        {
            throw state.decline()
        }
        let nested = ValueEncoder(state: state, parent: self, key: key)
        try value.encode(to: nested)
        if let written = nested.value { return written }
        // At the top level JSONEncoder throws "did not encode any values".
        guard parent != nil || self.key != nil || key != nil else { throw state.decline() }
        return state.scalar("{}")  // JSONEncoder writes an empty object for a nested value that wrote nothing
    }

    /// Sets the single value; a second one is left to `JSONEncoder` (which stops the program).
    private func set(_ written: WrittenValue) throws {
        guard value == nil else { throw state.decline() }
        value = written
    }

    func encodeNil() throws { try set(state.scalar("null")) }
    func encode(_ value: Bool) throws { try set(value ? state.scalar("true") : state.scalar("false")) }
    func encode(_ value: String) throws { try set(state.string(value)) }
    func encode(_ value: Double) throws { try set(try state.floatingPoint(value)) }
    func encode(_ value: Float) throws { try set(try state.floatingPoint(value)) }
    func encode(_ value: Int) throws { try set(state.integer(value)) }
    func encode(_ value: Int8) throws { try set(state.integer(value)) }
    func encode(_ value: Int16) throws { try set(state.integer(value)) }
    func encode(_ value: Int32) throws { try set(state.integer(value)) }
    func encode(_ value: Int64) throws { try set(state.integer(value)) }
    func encode(_ value: UInt) throws { try set(state.integer(value)) }
    func encode(_ value: UInt8) throws { try set(state.integer(value)) }
    func encode(_ value: UInt16) throws { try set(state.integer(value)) }
    func encode(_ value: UInt32) throws { try set(state.integer(value)) }
    func encode(_ value: UInt64) throws { try set(state.integer(value)) }
    func encode<T: Encodable>(_ value: T) throws {
        guard self.value == nil else { throw state.decline() }
        // A single value container's nested value is this encoder's own value, as in JSONEncoder.
        let written = try box(value)
        try set(written)
    }
}

private struct KeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: ValueEncoder
    let object: ObjectBox

    var codingPath: [any CodingKey] { encoder.codingPath }

    private func set(_ value: WrittenValue, _ key: Key) throws {
        let name = key.stringValue
        // Non-ASCII keys: Swift compares strings by canonical equivalence, JSONEncoder's dictionary with it.
        var ascii = true
        for byte in name.utf8 where byte >= 0x80 { ascii = false }
        guard ascii else { throw encoder.state.decline() }
        object.entries.append((name, value))
    }

    mutating func encodeNil(forKey key: Key) throws { try set(encoder.state.scalar("null"), key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try set(value ? encoder.state.scalar("true") : encoder.state.scalar("false"), key)
    }
    mutating func encode(_ value: String, forKey key: Key) throws { try set(encoder.state.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        try set(try encoder.state.floatingPoint(value), key)
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        try set(try encoder.state.floatingPoint(value), key)
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try set(encoder.state.integer(value), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try set(try encoder.box(value, key: key), key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let nested = ValueEncoder(state: encoder.state, parent: encoder, key: key)
        let container = nested.container(keyedBy: keyType)
        if let value = nested.value { try? set(value, key) }
        return container
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = ValueEncoder(state: encoder.state, parent: encoder, key: key)
        let container = nested.unkeyedContainer()
        if let value = nested.value { try? set(value, key) }
        return container
    }

    mutating func superEncoder() -> any Encoder {
        encoder.state.declined = true
        return ValueEncoder(state: encoder.state, parent: encoder, key: nil)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        encoder.state.declined = true
        return ValueEncoder(state: encoder.state, parent: encoder, key: key)
    }
}

private struct UnkeyedWriter: UnkeyedEncodingContainer {
    let encoder: ValueEncoder
    let array: ArrayBox

    var codingPath: [any CodingKey] { encoder.codingPath }
    var count: Int { array.elements.count }

    private func append(_ value: WrittenValue) { array.elements.append(value) }

    mutating func encodeNil() throws { append(encoder.state.scalar("null")) }
    mutating func encode(_ value: Bool) throws {
        append(value ? encoder.state.scalar("true") : encoder.state.scalar("false"))
    }
    mutating func encode(_ value: String) throws { append(encoder.state.string(value)) }
    mutating func encode(_ value: Double) throws { append(try encoder.state.floatingPoint(value)) }
    mutating func encode(_ value: Float) throws { append(try encoder.state.floatingPoint(value)) }
    mutating func encode(_ value: Int) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: Int8) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: Int16) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: Int32) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: Int64) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: UInt) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: UInt8) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: UInt16) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: UInt32) throws { append(encoder.state.integer(value)) }
    mutating func encode(_ value: UInt64) throws { append(encoder.state.integer(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        append(try encoder.box(value, key: IndexKey(intValue: array.elements.count)))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        let nested = ValueEncoder(state: encoder.state, parent: encoder, key: IndexKey(intValue: array.elements.count))
        let container = nested.container(keyedBy: keyType)
        if let value = nested.value { append(value) }
        return container
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = ValueEncoder(state: encoder.state, parent: encoder, key: IndexKey(intValue: array.elements.count))
        let container = nested.unkeyedContainer()
        if let value = nested.value { append(value) }
        return container
    }

    mutating func superEncoder() -> any Encoder {
        encoder.state.declined = true
        return ValueEncoder(state: encoder.state, parent: encoder, key: nil)
    }
}

/// An array element's place in a coding path.
struct IndexKey: CodingKey {
    var stringValue: String { "Index \(index)" }
    var intValue: Int? { index }
    let index: Int

    init(intValue: Int) { index = intValue }
    init?(stringValue: String) { nil }
}
