import DurableJournal
import Foundation
import Testing

/// ``PayloadJSONWriter`` writes integers' digits itself (no `description` string): every width, both
/// signs, the extremes and every power of ten's neighbours must come out as `JSONEncoder` writes them,
/// at the top level, in an object and in an array.
@Suite(.timeLimit(.minutes(1))) struct PayloadJSONIntegerTests {
    struct Fields: Codable {
        var a: Int
        var b: Int8
        var c: Int16
        var d: Int32
        var e: Int64
        var f: UInt
        var g: UInt8
        var h: UInt16
        var i: UInt32
        var j: UInt64
    }

    /// 0, ±1, ±(10^k − 1), ±10^k and ±(10^k + 1) within `Int64`, and the extremes.
    static let samples: [Int64] = {
        var values: [Int64] = [0, 1, -1, .min, .max, .min + 1, .max - 1]
        var power: Int64 = 1
        for _ in 0..<18 {
            power *= 10
            values += [power - 1, power, power + 1, -(power - 1), -power, -(power + 1)]
        }
        return values
    }()

    @Test func integersOfEveryWidthAreWrittenAsJSONEncoderWritesThem() throws {
        for value in Self.samples {
            try PayloadJSONTests.expectSameBytes(Int(value))
            try PayloadJSONTests.expectSameBytes([value])
            try PayloadJSONTests.expectSameBytes(UInt64(bitPattern: value))
            try PayloadJSONTests.expectSameBytes(Fields(
                a: Int(value), b: Int8(truncatingIfNeeded: value), c: Int16(truncatingIfNeeded: value),
                d: Int32(truncatingIfNeeded: value), e: value, f: UInt(bitPattern: Int(value)),
                g: UInt8(truncatingIfNeeded: value), h: UInt16(truncatingIfNeeded: value),
                i: UInt32(truncatingIfNeeded: value), j: UInt64(bitPattern: value)))
        }
        try PayloadJSONTests.expectSameBytes([UInt64.max, 0, 9_999_999_999_999_999_999])
    }

    @Test func topLevelIntegersReadBackAsWritten() throws {
        for value in Self.samples {
            let written = try #require(PayloadJSONWriter.encode(Int(value)))
            #expect(String(decoding: written, as: UTF8.self) == String(value))
            #expect(PayloadJSONReader.decode(Int.self, from: written) == Int(value))
        }
    }
}
