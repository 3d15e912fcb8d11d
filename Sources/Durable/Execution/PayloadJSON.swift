package import Foundation

extension JSONEncoder {
    /// The encoder for everything Durable records: sorted keys and unescaped slashes, so that the same
    /// value is always stored as the same bytes and reads well in `history`; dates as ISO 8601 text
    /// in UTC with milliseconds (`2026-12-04T09:30:00.250Z`).
    package static func payload() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(PayloadDates.withMilliseconds))
        }
        return encoder
    }
}

extension JSONDecoder {
    /// The decoder for recorded payloads: dates as ISO 8601 text (with or without fractions of a
    /// second), or as the number of seconds since 2001-01-01 that histories recorded before
    /// Durable wrote ISO 8601 hold.
    package static func payload() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                if let date = try? PayloadDates.withMilliseconds.parse(text) { return date }
                if let date = try? PayloadDates.wholeSeconds.parse(text) { return date }
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "'\(text)' is not an ISO 8601 date (2026-12-04T09:30:00Z)")
            }
            return Date(timeIntervalSinceReferenceDate: try container.decode(Double.self))
        }
        return decoder
    }
}

/// The ISO 8601 styles payload dates are written and read with.
enum PayloadDates {
    static let withMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let wholeSeconds = Date.ISO8601FormatStyle()
}
