import Foundation
import Testing

@testable import DurableJournal

@Suite(.timeLimit(.minutes(2))) struct PayloadCodecTests {
    static let samples: [Data] = [
        Data(),
        Data("42".utf8),
        Data(#"{"i":7,"payload":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.utf8),
        Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 % 251) }),
        Data((0..<4096).map { _ in UInt8.random(in: 0...255) }),
    ]

    @Test(arguments: samples)
    func lz4FrameRoundTrips(_ raw: Data) throws {
        let framed = PayloadCodec.encode(raw)
        #expect(try PayloadCodec.decode(framed) == raw)
        #expect(PayloadCodec.decodedLength(framed) == raw.count, "read from the header alone")
    }

    /// The published FNV-1a (32-bit) test vectors: the checksum stored in every frame and row must not
    /// change, or journals written before would read as damaged.
    @Test func theChecksumIsFNV1a() {
        #expect(PayloadCodec.fnv1a(Data()) == 0x811C_9DC5)
        #expect(PayloadCodec.fnv1a(Data("a".utf8)) == 0xE40C_292C)
        #expect(PayloadCodec.fnv1a(Data("foobar".utf8)) == 0xBF9C_F968)
    }

    @Test func anUnreadableHeaderHasNoLength() {
        #expect(PayloadCodec.decodedLength(Data()) == nil)
        #expect(PayloadCodec.decodedLength(Data([7, 1])) == nil)  // unknown format
        #expect(PayloadCodec.decodedLength(Data([1, 0x80])) == nil)  // the varint never ends
    }

    @Test func compressiblePayloadIsStoredCompressed() throws {
        let raw = Data(String(repeating: "claim approved; ", count: 200).utf8)
        let framed = PayloadCodec.encode(raw)
        #expect(framed.first == PayloadCodec.Format.lz4.rawValue)
        #expect(framed.count < raw.count / 5)
    }

    @Test func incompressiblePayloadIsStoredRaw() {
        let raw = Data((0..<256).map { _ in UInt8.random(in: 0...255) })
        #expect(PayloadCodec.encode(raw).first == PayloadCodec.Format.raw.rawValue)
    }

    @Test func everyFlippedByteIsDetected() {
        let raw = Data(String(repeating: "loan 1042 approved by model v3. ", count: 20).utf8)
        let framed = PayloadCodec.encode(raw)
        for i in 0..<framed.count {
            var corrupt = framed
            corrupt[i] ^= 0x5A
            #expect(throws: PayloadCodecError.self, "byte \(i)") { _ = try PayloadCodec.decode(corrupt) }
        }
    }

    @Test func truncatedFramesAreDetected() {
        let framed = PayloadCodec.encode(Data(String(repeating: "abc", count: 100).utf8))
        for length in 0..<framed.count {
            #expect(throws: PayloadCodecError.self) { _ = try PayloadCodec.decode(framed.prefix(length)) }
        }
    }
}
