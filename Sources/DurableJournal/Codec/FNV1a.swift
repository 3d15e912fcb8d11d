/// FNV-1a, 32 bits, fed incrementally: the checksum of payload frames (``PayloadCodec``) and of
/// stored rows (`RowChecksum`).
package struct FNV1a: Sendable {
    package private(set) var value: UInt32 = 0x811C_9DC5

    @inlinable package init() {}

    @inlinable package mutating func add(_ byte: UInt8) {
        value ^= UInt32(byte)
        value &*= 0x0100_0193
    }

    /// The 8 bytes of `word`, little endian.
    @inlinable package mutating func add(word: UInt64) {
        var v = word
        for _ in 0..<8 {
            add(UInt8(truncatingIfNeeded: v))
            v >>= 8
        }
    }

    @inlinable package mutating func add(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes { add(byte) }
    }
}
