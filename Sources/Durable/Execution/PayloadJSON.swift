package import Foundation

extension JSONEncoder {
    /// The encoder for everything Durable records: sorted keys and unescaped slashes, so that the same
    /// value is always stored as the same bytes and reads well in `history`.
    package static func payload() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
