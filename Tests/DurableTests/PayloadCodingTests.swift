import Foundation
import Testing

@testable import Durable

/// `JSONEncoder.payload()` and `JSONDecoder.payload()` write their fast way what they can, and must
/// write and read exactly as `JSONEncoder` and `JSONDecoder` with the same settings: dates, errors and
/// changed settings included.
@Suite(.timeLimit(.minutes(2))) struct PayloadCodingTests {
    struct Step: Codable, Equatable {
        var i: Int
        var payload: String
        var at: Date?
        var link: URL?
        var blob: Data?
    }

    /// The payload encoder's settings on a plain JSONEncoder.
    static func reference() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return encoder
    }

    static let steps = [
        Step(i: 1, payload: "x"),
        Step(i: -7, payload: "a/b \"c\"\n", at: Date(timeIntervalSince1970: 1_733_390_000.25)),
        Step(i: 0, payload: "", link: URL(string: "https://example.com/a?b=c"), blob: Data([0, 1, 254, 255])),
    ]

    @Test func payloadEncoderWritesWhatJSONEncoderWrites() throws {
        for step in Self.steps {
            #expect(try JSONEncoder.payload().encode(step) == (try Self.reference().encode(step)))
        }
        #expect(try JSONEncoder.payload().encode(Self.steps) == (try Self.reference().encode(Self.steps)))
        #expect(try JSONEncoder.payload().encode(42) == Data("42".utf8))
    }

    @Test func payloadDecoderReadsWhatItWrites() throws {
        for step in Self.steps {
            let data = try JSONEncoder.payload().encode(step)
            var expected = step
            expected.at = step.at.map { Date(timeIntervalSince1970: ($0.timeIntervalSince1970 * 1000).rounded() / 1000) }
            #expect(try JSONDecoder.payload().decode(Step.self, from: data) == expected)
        }
    }

    /// Payloads journaled by earlier versions: a date as seconds since 2001, and as ISO 8601 text.
    @Test func payloadsJournaledBeforeReadUnchanged() throws {
        let old = Data(#"{"at":755000000.5,"i":3,"payload":"xxxxxxxx"}"#.utf8)
        #expect(try JSONDecoder.payload().decode(Step.self, from: old)
                == Step(i: 3, payload: "xxxxxxxx", at: Date(timeIntervalSinceReferenceDate: 755_000_000.5)))
        let iso = Data(#"{"at":"2026-12-04T09:30:00Z","i":4,"payload":""}"#.utf8)
        #expect(try JSONDecoder.payload().decode(Step.self, from: iso).at
                == Date(timeIntervalSince1970: 1_796_376_600))
    }

    @Test func badInputThrowsJSONDecodersOwnError() {
        for text in [#"{"i":1"#, #"{"i":"one","payload":""}"#, #"{"payload":"x"}"#, "", "[1,]", #"{"i":1.5,"payload":""}"#] {
            let ours = Result { try JSONDecoder.payload().decode(Step.self, from: Data(text.utf8)) }
            let reference = Result { try JSONDecoder().decode(Step.self, from: Data(text.utf8)) }
            guard case .failure(let error) = ours, case .failure(let expected) = reference else {
                Issue.record("\(text.debugDescription) decoded")
                continue
            }
            #expect(String(describing: error) == String(describing: expected), "\(text.debugDescription)")
        }
    }

    @Test func changedSettingsAreHonoured() throws {
        struct Snake: Codable, Equatable { var firstName: String }
        let encoder = JSONEncoder.payload()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        #expect(try encoder.encode(Snake(firstName: "Ana")) == Data(#"{"first_name":"Ana"}"#.utf8))
        encoder.keyEncodingStrategy = .useDefaultKeys
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        #expect(try encoder.encode(Snake(firstName: "Ana")) == Data("{\n  \"firstName\" : \"Ana\"\n}".utf8))
        let decoder = JSONDecoder.payload()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        #expect(try decoder.decode(Snake.self, from: Data(#"{"first_name":"Bo"}"#.utf8)) == Snake(firstName: "Bo"))
    }
}

/// The default names, now made once per type, are still the Swift type names.
@Suite struct DefaultTypeNameTests {
    struct Plain: ActivityDeclaration {
        typealias Input = Int
        typealias Output = Int
    }

    struct Generic<T: Codable & Sendable>: ActivityDeclaration {
        typealias Input = T
        typealias Output = T
    }

    struct Flow: Workflow {
        func run(_ ctx: WorkflowContext, input: Int) async throws -> Int { input }
    }

    @Test func defaultNamesAreTheSwiftTypeNames() {
        #expect(Plain.name == "Plain")
        #expect(Generic<Int>.name == "Generic<Int>")
        #expect(Generic<String>.name == "Generic<String>", "each specialization has its own name")
        #expect(Generic<Int>.name == String(describing: Generic<Int>.self))
        #expect(Flow.name == "Flow")
        #expect(Flow.name == String(describing: Flow.self), "read again, from the cache")
    }
}
