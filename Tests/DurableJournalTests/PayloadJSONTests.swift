import DurableJournal
import Foundation
import Testing

/// ``PayloadJSONWriter`` must write exactly the bytes `JSONEncoder` writes with Durable's settings (a
/// payload is journaled once and compared by bytes nowhere, but histories must not change with the
/// engine), and ``PayloadJSONReader`` must read exactly the values `JSONDecoder` reads, leaving to them
/// whatever it is not sure of.
@Suite(.timeLimit(.minutes(2))) struct PayloadJSONTests {
    static func foundationEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The writer's bytes, which must exist and equal JSONEncoder's.
    static func expectSameBytes<T: Encodable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try foundationEncoder().encode(value)
        let written = PayloadJSONWriter.encode(value)
        #expect(written != nil, "the writer declined \(T.self)", sourceLocation: sourceLocation)
        #expect(written.map { String(decoding: $0, as: UTF8.self) } == String(decoding: expected, as: UTF8.self),
                sourceLocation: sourceLocation)
    }

    struct StepResult: Codable, Equatable {
        var i: Int
        var payload: String
    }

    struct Claim: Codable, Equatable {
        enum Status: String, Codable { case open, closed }
        enum Decision: Codable, Equatable {
            case approve(amount: Double)
            case refer(reason: String, to: [String])
            case reject
        }
        var id: String
        var amount: Double
        var status: Status
        var decision: Decision?
        var tags: [String]
        var scores: [String: Double]
        var counts: [Int: Int]
        var note: String?
        var flags: [Bool?]
        var nested: [[Int8]]
        var big: UInt64
        var small: Int64
        var ratio: Double
    }

    static let claim = Claim(
        id: "claim/1042 \"urgent\"", amount: 1234.5, status: .open, decision: .refer(reason: "model unsure\n", to: ["ana", "bo"]),
        tags: ["a/b", "tab\there", "bell\u{07}", "\u{1F}\u{08}\u{0C}", "é", "日本", "👩‍💻", ""],
        scores: ["fraud": 0.83, "Fraud": 1e-7, "_x": -0.0, "10": 1e300, "2": 3, "a b": 0.1],
        counts: [10: 1, 2: 2, -1: 3], note: nil, flags: [true, nil, false], nested: [[], [1, -128, 127]],
        big: .max, small: .min, ratio: 0.1)

    @Test func stepResultsAreWrittenByteForByte() throws {
        try Self.expectSameBytes(StepResult(i: 7, payload: String(repeating: "x", count: 100)))
        try Self.expectSameBytes(7)
        try Self.expectSameBytes(-42)
        try Self.expectSameBytes("text with \"quotes\", a \\ and a / slash")
        try Self.expectSameBytes(true)
        try Self.expectSameBytes(0.1)
        try Self.expectSameBytes(Optional<Int>.none)
        try Self.expectSameBytes([Int]())
        try Self.expectSameBytes([String: Int]())
    }

    @Test func nestedValuesAreWrittenByteForByte() throws {
        try Self.expectSameBytes(Self.claim)
        var other = Self.claim
        other.decision = .approve(amount: 10)
        other.note = "present"
        try Self.expectSameBytes(other)
        other.decision = .reject
        try Self.expectSameBytes(other)
        try Self.expectSameBytes([Self.claim, other])
        try Self.expectSameBytes(["b": [1.5, 2, 1e21, 1e-5], "a": [Double.leastNonzeroMagnitude, .greatestFiniteMagnitude]])
        try Self.expectSameBytes([Float(1), 3.25, 1e10, .ulpOfOne])
        try Self.expectSameBytes([Int.min, Int.max, 0])
    }

    /// Random trees of every JSON shape: the writer and JSONEncoder agree on each.
    @Test func randomTreesAreWrittenByteForByte() throws {
        var rng = SplitMix(seed: 0xD0_7AB1E)
        for _ in 0..<300 {
            let tree = Tree.random(&rng, depth: 0)
            try Self.expectSameBytes(tree)
        }
    }

    @Test func whatJSONEncoderSpecialCasesIsDeclined() throws {
        struct WithDate: Encodable { var at = Date(timeIntervalSince1970: 1_000) }
        struct WithData: Encodable { var bytes = Data([1, 2, 3]) }
        struct WithURL: Encodable { var url = URL(string: "https://example.com/a")! }
        struct WithDecimal: Encodable { var amount = Decimal(string: "12.34")! }
        final class Box: Encodable { var value = 1 }
        struct NonASCIIKey: Encodable {
            enum CodingKeys: String, CodingKey { case key = "clé" }
            var key = 1
        }
        struct KeyTwice: Encodable {
            enum CodingKeys: String, CodingKey { case a }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(1, forKey: .a)
                try container.encode(2, forKey: .a)
            }
        }
        struct Nothing: Encodable { func encode(to encoder: any Encoder) throws {} }
        #expect(PayloadJSONWriter.encode(WithDate()) == nil)
        #expect(PayloadJSONWriter.encode(WithData()) == nil)
        #expect(PayloadJSONWriter.encode(WithURL()) == nil)
        #expect(PayloadJSONWriter.encode(WithDecimal()) == nil)
        #expect(PayloadJSONWriter.encode(Box()) == nil)
        #expect(PayloadJSONWriter.encode(NonASCIIKey()) == nil)
        #expect(PayloadJSONWriter.encode(KeyTwice()) == nil)
        #expect(PayloadJSONWriter.encode(Double.nan) == nil)
        #expect(PayloadJSONWriter.encode([Double.infinity]) == nil)
        #expect(PayloadJSONWriter.encode(Nothing()) == nil, "JSONEncoder throws: no value at the top level")
        #expect(PayloadJSONWriter.encode(Optional<Date>.some(Date())) == nil)
        let existential: [any Encodable] = [Date(timeIntervalSince1970: 5)]
        #expect(PayloadJSONWriter.encode(AnyList(items: existential)) == nil, "a Date behind an existential")
        // A value that writes nothing, nested, is an empty object, as in JSONEncoder.
        try Self.expectSameBytes(["a": Nothing()])
    }

    struct AnyList: Encodable {
        var items: [any Encodable]
        func encode(to encoder: any Encoder) throws {
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        }
    }

    // MARK: - Reading

    static func foundationDecode<T: Decodable>(_ type: T.Type, _ text: String) -> Result<T, any Error> {
        Result { try JSONDecoder().decode(type, from: Data(text.utf8)) }
    }

    struct Sample: Codable, Equatable {
        struct Inner: Codable, Equatable {
            var x: Double?
            var t: String
        }
        var n: Int
        var d: Double
        var s: String
        var b: Bool
        var o: String?
        var list: [Int64]
        var map: [String: String]
        var inner: [Inner]

        static func random(_ rng: inout SplitMix) -> Sample {
            func double() -> Double {
                let value = Double(bitPattern: rng.next())
                return value.isFinite ? value : Double(Int64(bitPattern: rng.next()) >> 20) / 1024
            }
            func text() -> String { Tree.randomText(&rng, allowingNonASCII: true) }
            return Sample(
                n: Int(bitPattern: UInt(rng.next())) >> Int(rng.next() % 64), d: double(), s: text(),
                b: rng.next() % 2 == 0, o: rng.next() % 2 == 0 ? nil : text(),
                list: (0..<Int(rng.next() % 4)).map { _ in Int64(bitPattern: rng.next()) },
                // ASCII keys: the writer leaves other keys to JSONEncoder (see whatJSONEncoderSpecialCasesIsDeclined).
                map: Dictionary((0..<Int(rng.next() % 4)).map { _ in (Tree.randomText(&rng, allowingNonASCII: false), text()) },
                                uniquingKeysWith: { a, _ in a }),
                inner: (0..<Int(rng.next() % 3)).map { _ in Inner(x: rng.next() % 3 == 0 ? nil : double(), t: text()) })
        }
    }

    @Test func theWritersOutputReadsBack() throws {
        let data = try #require(PayloadJSONWriter.encode(Self.claim))
        #expect(PayloadJSONReader.decode(Claim.self, from: data) == Self.claim)
        var rng = SplitMix(seed: 7)
        for _ in 0..<300 {
            let sample = Sample.random(&rng)
            let data = try Self.foundationEncoder().encode(sample)
            #expect(PayloadJSONWriter.encode(sample) == data)
            let read = PayloadJSONReader.decode(Sample.self, from: data)
            #expect(read == sample, "\(String(decoding: data, as: UTF8.self))")
            #expect(read == (try JSONDecoder().decode(Sample.self, from: data)))
        }
    }

    @Test(arguments: [
        #"{"i":7,"payload":"xxxx"}"#,
        #" { "payload" : "a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00" , "i" : -0 } "#,
        "{\"i\":12345678901,\"payload\":\"\u{7F}é日本\"}",
        #"{"payload":"","i":1,"extra":[1,2,{"x":null}]}"#,
    ])
    func readerReadsWhatJSONDecoderReads(_ text: String) throws {
        let expected = try JSONDecoder().decode(StepResult.self, from: Data(text.utf8))
        #expect(PayloadJSONReader.decode(StepResult.self, from: Data(text.utf8)) == expected)
    }

    @Test func numbersReadAsJSONDecoderReadsThem() throws {
        for text in ["0", "-1", "9223372036854775807", "-9223372036854775808", "1.5", "-0.0", "1e3", "2.5E-3", "1e308", "123456789012345678901234567890"] {
            let expected = try? JSONDecoder().decode(Double.self, from: Data(text.utf8))
            #expect(PayloadJSONReader.decode(Double.self, from: Data(text.utf8)) == expected, "\(text)")
        }
        #expect(PayloadJSONReader.decode(Int.self, from: Data("42".utf8)) == 42)
        #expect(PayloadJSONReader.decode(UInt8.self, from: Data("255".utf8)) == 255)
        #expect(PayloadJSONReader.decode([Int?].self, from: Data("[1,null,3]".utf8)) == [1, nil, 3])
        #expect(PayloadJSONReader.decode([String: Int].self, from: Data(#"{"b":2,"a":1}"#.utf8)) == ["a": 1, "b": 2])
        #expect(PayloadJSONReader.decode([Int: Bool].self, from: Data(#"{"10":true,"-2":false}"#.utf8)) == [10: true, -2: false])
    }

    /// What the reader is unsure of, or finds wrong, it leaves to JSONDecoder (which then decodes it or
    /// throws its own error). Each text is read as the type it would have if it were well formed.
    @Test func malformedOrUnsureInputIsDeclined() {
        func declines<T: Decodable>(_ type: T.Type, _ texts: [String], sourceLocation: SourceLocation = #_sourceLocation) {
            for text in texts {
                #expect(PayloadJSONReader.decode(type, from: Data(text.utf8)) == nil, "\(text.debugDescription)",
                        sourceLocation: sourceLocation)
            }
        }
        declines(Double.self, ["", " ", "01", "1.", "-", "1e", "+1", "NaN", "1e400", "// c\n1", "\u{FEFF}1", "1 x", ".5"])
        declines(Bool.self, ["tru", "True", "1"])
        declines(Int?.self, ["nul", "Null"])
        declines(String.self, ["\"a", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\u{01}\"", "'a'",
                               "\"\\u12\""])
        declines([Int].self, ["[1,]", "[1 2]", "[", "[1"])
        declines([String: Int].self, ["{", "{\"i\":1,}", "{\"i\" 1}", "{'i':1}", "{i:1}", "{\"a\":1,\"a\":2}", "{\"i\":1} x"])
        // Invalid UTF-8 inside a string, which String(decoding:) would repair and JSONDecoder refuses.
        #expect(PayloadJSONReader.decode(String.self, from: Data([0x22, 0xC3, 0x28, 0x22])) == nil)
        #expect((try? JSONDecoder().decode(String.self, from: Data([0x22, 0xC3, 0x28, 0x22]))) == nil)
    }

    @Test func declinedTypesAndMismatchesAreLeftToJSONDecoder() throws {
        struct WithDate: Decodable, Equatable { var at: Date }
        #expect(PayloadJSONReader.decode(WithDate.self, from: Data(#"{"at":5}"#.utf8)) == nil)
        #expect(PayloadJSONReader.decode(Data.self, from: Data(#""AQID""#.utf8)) == nil)
        #expect(PayloadJSONReader.decode(URL.self, from: Data(#""https://example.com""#.utf8)) == nil)
        #expect(PayloadJSONReader.decode(Decimal.self, from: Data("1.5".utf8)) == nil)
        #expect(PayloadJSONReader.decode(Float.self, from: Data("1.5".utf8)) == nil)
        #expect(PayloadJSONReader.decode(Int.self, from: Data("1.0".utf8)) == nil, "JSONDecoder decides about 1.0")
        #expect(PayloadJSONReader.decode(Int8.self, from: Data("128".utf8)) == nil)
        #expect(PayloadJSONReader.decode(UInt.self, from: Data("-1".utf8)) == nil)
        #expect(PayloadJSONReader.decode(StepResult.self, from: Data(#"{"i":1}"#.utf8)) == nil, "a key is missing")
        #expect(PayloadJSONReader.decode(StepResult.self, from: Data(#"{"i":"1","payload":""}"#.utf8)) == nil)
        #expect(PayloadJSONReader.decode(String.self, from: Data("1".utf8)) == nil)
        #expect(PayloadJSONReader.decode(Bool.self, from: Data("1".utf8)) == nil)
        // A value whose own code catches an error is still left to JSONDecoder.
        struct Lenient: Decodable, Equatable {
            var n: Int?
            init(from decoder: any Decoder) throws {
                n = try? decoder.singleValueContainer().decode(Int.self)
            }
        }
        #expect(PayloadJSONReader.decode(Lenient.self, from: Data("1.0".utf8)) == nil)
        #expect(try JSONDecoder().decode(Lenient.self, from: Data("1.0".utf8)).n != nil)
    }
}

/// Any JSON value, for random round trips.
indirect enum Tree: Codable, Equatable {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case null
    case array([Tree])
    case object([String: Tree])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([Tree].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: Tree].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .null: try container.encodeNil()
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    static func random(_ rng: inout SplitMix, depth: Int) -> Tree {
        let pick = rng.next() % (depth > 3 ? 5 : 7)
        switch pick {
        case 0: return .int(Int(bitPattern: UInt(rng.next())) >> Int(rng.next() % 64))
        case 1:
            let value = Double(bitPattern: rng.next())
            return .double(value.isFinite ? value : Double(rng.next() % 1000) / 8)
        case 2: return .string(randomText(&rng, allowingNonASCII: true))
        case 3: return .bool(rng.next() % 2 == 0)
        case 4: return .null
        case 5: return .array((0..<Int(rng.next() % 5)).map { _ in random(&rng, depth: depth + 1) })
        default:
            var object: [String: Tree] = [:]
            for _ in 0..<Int(rng.next() % 6) { object[randomText(&rng, allowingNonASCII: false)] = random(&rng, depth: depth + 1) }
            return .object(object)
        }
    }

    static func randomText(_ rng: inout SplitMix, allowingNonASCII: Bool) -> String {
        let ascii = Array("aAbZz09_-/ \"\\\n\t\u{01}\u{1F}\u{7F}.")
        let wide: [Character] = ["é", "ß", "日", "😀", "\u{2028}", "e\u{301}"]
        return String((0..<Int(rng.next() % 12)).map { _ -> Character in
            if allowingNonASCII, rng.next() % 5 == 0 { return wide[Int(rng.next() % UInt64(wide.count))] }
            return ascii[Int(rng.next() % UInt64(ascii.count))]
        })
    }
}

/// A small deterministic generator, so that a failure repeats.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
