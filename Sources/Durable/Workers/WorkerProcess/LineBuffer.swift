import Foundation

/// Splits bytes into `\n`-terminated lines (without the `\n`; a trailing `\r` is kept and treated as
/// whitespace by the JSON scanner).
struct LineBuffer {
    private var pending: [UInt8] = []
    /// Set by ``discard()``: the rest of the output is ignored.
    private(set) var overflowed = false

    /// Bytes of the unterminated line so far.
    var pendingCount: Int { pending.count }

    /// Drops the unterminated line and ignores the rest of the output.
    /// - Returns: the start of the dropped line, quoted for messages.
    mutating func discard() -> String {
        defer {
            pending = []
            overflowed = true
        }
        return pending.withUnsafeBufferPointer { WireMessage.quote($0) }
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        if pending.isEmpty {
            // Fast path: whole lines straight from the read buffer.
            let start = Self.split(bytes, from: 0, body)
            if start < bytes.count { pending.append(contentsOf: bytes[start...]) }
            return
        }
        let searchFrom = pending.count
        pending.append(contentsOf: bytes)
        let consumed = pending.withUnsafeBufferPointer { Self.split($0, from: searchFrom, body) }
        pending.removeFirst(consumed)
    }

    /// Hands over each complete line, searching for line ends from `index`; returns where the rest starts.
    private static func split(
        _ buffer: UnsafeBufferPointer<UInt8>, from index: Int, _ body: (UnsafeBufferPointer<UInt8>) -> Void
    ) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var lineStart = 0
        var index = index
        while index < buffer.count, let found = memchr(base + index, 0x0A, buffer.count - index) {
            let newline = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            body(UnsafeBufferPointer(rebasing: buffer[lineStart..<newline]))
            lineStart = newline + 1
            index = lineStart
        }
        return lineStart
    }

    /// Hands over an unterminated last line, if any.
    mutating func flush(_ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard !pending.isEmpty, !overflowed else { return }
        pending.withUnsafeBufferPointer { body($0) }
        pending.removeAll()
    }
}

