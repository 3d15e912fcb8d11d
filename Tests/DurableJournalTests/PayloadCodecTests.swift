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

    /// A frame written before LZ4 states were reused (`LZ4_compress_default`): it reads as it did.
    @Test func framesWrittenBeforeReadUnchanged() throws {
        let old = Data([
            1, 0x78, 0xbb, 0x70, 0x8f, 0x9a, 0xff, 0x04, 0x7b, 0x22, 0x69, 0x22, 0x3a, 0x37, 0x2c, 0x22, 0x70, 0x61,
            0x79, 0x6c, 0x6f, 0x61, 0x64, 0x22, 0x3a, 0x22, 0x78, 0x01, 0x00, 0x4d, 0x50, 0x78, 0x78, 0x78, 0x22, 0x7d,
        ])
        let raw = Self.samples[2]
        #expect(try PayloadCodec.decode(old) == raw)
        let framed = PayloadCodec.encode(raw)
        #expect(framed.first == PayloadCodec.Format.lz4.rawValue)
        #expect(framed.prefix(6) == old.prefix(6), "the same header: format, length, checksum")
        #expect(try PayloadCodec.decode(framed) == raw)
    }

    /// Compression states are reused across frames and threads: every frame still decodes alone.
    @Test func framesFromManyThreadsDecodeAlone() async throws {
        let frames = await withTaskGroup(of: [(Data, Data)].self) { group in
            for task in 0..<8 {
                group.addTask {
                    (0..<200).map { i in
                        let raw = Data("step \(task)-\(i): ".utf8) + Data(String(repeating: "abc\(i % 7)", count: 10 + i % 50).utf8)
                        return (raw, PayloadCodec.encode(raw))
                    }
                }
            }
            var all: [(Data, Data)] = []
            for await part in group { all += part }
            return all
        }
        #expect(frames.count == 1600)
        for (raw, framed) in frames {
            #expect(framed.first == PayloadCodec.Format.lz4.rawValue)
            #expect(try PayloadCodec.decode(framed) == raw)
        }
    }

    /// LZ4's output is kept only when it is smaller than the payload, at the threshold and around it.
    @Test func sizesAroundTheThresholdRoundTrip() throws {
        for count in [0, 1, 47, 48, 49, 127, 128, 129, 16_383, 16_384, 70_000] {
            let compressible = Data(repeating: UInt8(ascii: "x"), count: count)
            var rng = SystemRandomNumberGenerator()
            let random = Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) })
            for raw in [compressible, random] {
                let framed = PayloadCodec.encode(raw)
                #expect(try PayloadCodec.decode(framed) == raw, "\(count) bytes")
                let format = PayloadCodec.Format(rawValue: framed[0])
                if count < PayloadCodec.compressionThreshold { #expect(format == .raw, "\(count) bytes") }
                let header = 1 + PayloadCodec.varintLength(UInt64(count)) + 4
                if format == .lz4 { #expect(framed.count < header + count, "\(count) bytes: smaller than the raw frame") }
                if format == .raw { #expect(framed.count == header + count, "\(count) bytes") }
            }
            if count >= 64 { #expect(PayloadCodec.encode(compressible).first == PayloadCodec.Format.lz4.rawValue) }
        }
    }

    @Test func truncatedFramesAreDetected() {
        let framed = PayloadCodec.encode(Data(String(repeating: "abc", count: 100).utf8))
        for length in 0..<framed.count {
            #expect(throws: PayloadCodecError.self) { _ = try PayloadCodec.decode(framed.prefix(length)) }
        }
    }
}
