import DurableJournal
package import Foundation

extension JSONEncoder {
    /// The encoder for everything Durable records: sorted keys and unescaped slashes, so that the same
    /// value is always stored as the same bytes and reads well in `history`; dates as ISO 8601 text
    /// in UTC with milliseconds (`2026-12-04T09:30:00.250Z`).
    ///
    /// A ``PayloadEncoder``: the same bytes as `JSONEncoder`, written by hand where it can.
    package static func payload() -> JSONEncoder {
        let encoder = PayloadEncoder()
        encoder.outputFormatting = PayloadEncoder.formatting
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
    ///
    /// A ``PayloadDecoder``: the same values as `JSONDecoder`, read by hand where it can.
    package static func payload() -> JSONDecoder {
        let decoder = PayloadDecoder()
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

/// `JSONEncoder` writing the payloads of a step (an activity's input and result, a workflow's result)
/// with ``PayloadJSONWriter``: the same bytes for a fraction of the instructions. What the writer
/// declines (dates, data, URLs, and the rest its documentation lists), and any encoder whose settings
/// were changed from ``JSONEncoder/payload()``'s, goes through `JSONEncoder` itself.
package final class PayloadEncoder: JSONEncoder, @unchecked Sendable {
    // @unchecked Sendable: as JSONEncoder; the subclass adds no state.
    static let formatting: JSONEncoder.OutputFormatting = [.sortedKeys, .withoutEscapingSlashes]

    override package func encode<T: Encodable>(_ value: T) throws -> Data {
        if outputFormatting == Self.formatting, case .useDefaultKeys = keyEncodingStrategy, userInfo.isEmpty,
            let data = PayloadJSONWriter.encode(value)
        {
            return data
        }
        return try super.encode(value)
    }
}

/// `JSONDecoder` reading payloads with ``PayloadJSONReader`` where it can (the same values for a
/// fraction of the instructions); what the reader declines, and any decoder whose settings were
/// changed from ``JSONDecoder/payload()``'s, goes through `JSONDecoder` itself, errors included.
package final class PayloadDecoder: JSONDecoder, @unchecked Sendable {
    // @unchecked Sendable: as JSONDecoder; the subclass adds no state.
    override package func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        if case .useDefaultKeys = keyDecodingStrategy, userInfo.isEmpty, !allowsJSON5, !assumesTopLevelDictionary,
            let value = PayloadJSONReader.decode(type, from: data)
        {
            return value
        }
        return try super.decode(type, from: data)
    }
}

/// The ISO 8601 styles payload dates are written and read with.
enum PayloadDates {
    static let withMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let wholeSeconds = Date.ISO8601FormatStyle()
}
