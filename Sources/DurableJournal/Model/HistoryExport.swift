public import Foundation

/// A run's history as one self-contained JSON document: what `durable history export` writes, and
/// what an app's `replay --file` and DurableTesting's `assertReplays(history:workflow:)` read.
///
/// The document keeps everything a replay needs, byte for byte: the run's seed (for `ctx.random`),
/// every event's time to the millisecond, and each payload as the exact text recorded (a replay
/// compares activity inputs by their bytes, so payloads are strings, not re-encoded JSON).
///
/// ```json
/// {"format": "durable.history", "version": 1,
///  "run": {"runID": "…", "workflowID": "claim-1042", "workflowType": "ClaimIntake", "status": "completed",
///          "seed": "1234567890123456789", "createdAt": "2026-11-29T12:00:00.000Z"},
///  "events": [{"index": 0, "kind": "WorkflowStarted", "time": "2026-11-29T12:00:00.000Z",
///              "name": "ClaimIntake", "data": "{\"claim\":1042}"}, …]}
/// ```
///
/// A payload encrypted at rest (see ``PayloadKeys``) is exported as stored unless the exporter
/// decrypted it: `dataEncrypted` holds the encrypted frame in base64 and `dataKeyID` the key's ID;
/// reading the document back decrypts it with the keys of the environment.
public struct HistoryExport: Codable, Sendable, Equatable {
    public static let formatName = "durable.history"
    /// The newest format version this build reads. It writes version 1, or 2 when the document holds
    /// encrypted payloads (`dataEncrypted`), which a build that reads only version 1 must refuse
    /// rather than replay without them.
    public static let currentVersion = 2

    public var format: String
    public var version: Int
    public var run: Run
    public var events: [Event]

    public struct Run: Codable, Sendable, Equatable {
        public var runID: String
        public var workflowID: String
        public var workflowType: String
        public var status: String
        /// The deterministic random generator's seed, as a decimal string (it does not fit a JSON
        /// number exactly).
        public var seed: String
        public var createdAt: String
        public var error: String?
    }

    public struct Event: Codable, Sendable, Equatable {
        public var index: Int
        /// The event kind's name, as `durable history` prints it (`ActivityScheduled`).
        public var kind: String
        /// ISO 8601, UTC, with milliseconds.
        public var time: String
        public var seq: Int?
        public var attempt: Int?
        public var name: String?
        /// The payload as recorded (JSON text, or a reason), when it is UTF-8.
        public var data: String?
        /// The payload in base64, when it is not UTF-8.
        public var dataBase64: String?
        /// The payload as stored in the journal, encrypted, in base64 (with ``dataKeyID``).
        public var dataEncrypted: String?
        /// The ID of the key that decrypts ``dataEncrypted``.
        public var dataKeyID: String?
        /// Options or attempt details as recorded (JSON text).
        public var meta: String?
    }

    public init(run record: RunRecord, events: [HistoryEvent]) {
        format = Self.formatName
        version = events.contains { $0.encryptedData != nil } ? 2 : 1
        run = Run(
            runID: record.runID, workflowID: record.workflowID, workflowType: record.workflowType,
            status: record.status.rawValue, seed: String(record.seed), createdAt: Self.timeText(record.createdAt),
            error: record.error)
        self.events = events.map { event in
            var exported = Event(
                index: event.index, kind: event.kind.name, time: Self.timeText(event.time),
                seq: event.seq == 0 ? nil : event.seq, attempt: event.attempt == 0 ? nil : event.attempt,
                name: event.name, meta: event.meta.map { String(decoding: $0, as: UTF8.self) })
            if let encrypted = event.encryptedData {
                exported.dataEncrypted = encrypted.frame.base64EncodedString()
                exported.dataKeyID = encrypted.keyID
            } else if let data = event.data {
                if let text = String(data: data, encoding: .utf8) {
                    exported.data = text
                } else {
                    exported.dataBase64 = data.base64EncodedString()
                }
            }
            return exported
        }
    }

    /// Reads a history file.
    /// - Throws: ``JournalError`` `badHistoryFile` naming the file and what is wrong with it
    ///   (not JSON, not a history, a newer format version, an event that cannot be read).
    public static func read(from path: String) throws -> HistoryExport {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw JournalError(.badHistoryFile(path: path, reason: "cannot be read: \(error.localizedDescription)"))
        }
        return try decode(data, path: path)
    }

    /// Decodes a history document; `path` names it in errors.
    public static func decode(_ data: Data, path: String) throws -> HistoryExport {
        func bad(_ reason: String) -> JournalError { JournalError(.badHistoryFile(path: path, reason: reason)) }
        struct Header: Decodable {
            var format: String?
            var version: Int?
        }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: data)
        } catch {
            throw bad("is not a JSON object (\(error.localizedDescription))")
        }
        guard header.format == formatName else {
            throw bad("is not a Durable history (its \"format\" is \(header.format.map { "'\($0)'" } ?? "missing"), expected '\(formatName)')")
        }
        guard let version = header.version else { throw bad("has no \"version\"") }
        guard version <= currentVersion else {
            throw bad("is history format version \(version), from a newer Durable; this build reads up to version \(currentVersion)")
        }
        do {
            return try JSONDecoder().decode(HistoryExport.self, from: data)
        } catch {
            throw bad("cannot be read: \(describe(error))")
        }
    }

    /// The run and its events, checked: every kind known, indexes in order, times and seed readable.
    /// Encrypted payloads are decrypted with `payloadKeys` (`nil`: the environment's, see
    /// ``PayloadKeys/fromEnvironment(_:)``).
    /// - Throws: ``JournalError`` `badHistoryFile`, naming the event.
    public func decoded(path: String, payloadKeys: PayloadKeys? = nil) throws -> (RunRecord, [HistoryEvent]) {
        func bad(_ reason: String) -> JournalError { JournalError(.badHistoryFile(path: path, reason: reason)) }
        var keys = payloadKeys
        guard let seed = UInt64(run.seed) else { throw bad("run seed '\(run.seed)' is not an unsigned 64-bit integer") }
        guard let createdAt = Self.parseTime(run.createdAt) else { throw bad("run createdAt '\(run.createdAt)' is not an ISO 8601 time") }
        let kinds = Dictionary(uniqueKeysWithValues: EventKind.allCases.map { ($0.name, $0) })
        var events: [HistoryEvent] = []
        events.reserveCapacity(self.events.count)
        for (position, event) in self.events.enumerated() {
            let which = "event \(position) (index \(event.index))"
            guard event.index == position else { throw bad("\(which) is out of order: expected index \(position)") }
            guard let kind = kinds[event.kind] else { throw bad("\(which) has unknown kind '\(event.kind)'") }
            guard let time = Self.parseTime(event.time) else { throw bad("\(which) has time '\(event.time)', not an ISO 8601 time") }
            var data = event.data.map { Data($0.utf8) }
            if let base64 = event.dataBase64 {
                guard let decoded = Data(base64Encoded: base64) else { throw bad("\(which) has dataBase64 that is not base64") }
                data = decoded
            }
            if let base64 = event.dataEncrypted {
                guard let frame = Data(base64Encoded: base64) else { throw bad("\(which) has dataEncrypted that is not base64") }
                if keys == nil { keys = try PayloadKeys.fromEnvironment() ?? PayloadKeys.empty }
                do throws(PayloadCodecError) {
                    data = try (keys ?? PayloadKeys.empty).decode(frame)
                } catch .encrypted(let keyID) {
                    throw bad("\(which) has a payload encrypted with key '\(keyID)', which is not among this process's payload keys")
                } catch {
                    throw bad("\(which) has an encrypted payload that cannot be read: \(error)")
                }
            }
            events.append(HistoryEvent(
                index: event.index, kind: kind, time: time, seq: event.seq ?? 0, attempt: event.attempt ?? 0,
                name: event.name, data: data, meta: event.meta.map { Data($0.utf8) }))
        }
        guard events.first?.kind == .workflowStarted else { throw bad("does not start with a WorkflowStarted event") }
        let record = RunRecord(
            runID: run.runID, workflowID: run.workflowID, workflowType: run.workflowType,
            status: RunStatus(rawValue: run.status) ?? .running, createdAt: createdAt, updatedAt: createdAt,
            closedAt: nil, seed: seed, error: run.error)
        return (record, events)
    }

    /// The document as pretty-printed JSON with sorted keys (stable, diffable).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// `2026-11-29T12:00:00.021Z`. The milliseconds are written from the integer the journal keeps:
    /// the formatter's own fractional seconds truncate a `Date`'s binary fraction (.021 as .020).
    package static func timeText(_ date: Date) -> String {
        let millis = date.journalMillis
        let (seconds, fraction) = (millis.floorDivided(by: 1000), millis.floorModulo(1000))
        let whole = Date(timeIntervalSince1970: Double(seconds)).formatted(Date.ISO8601FormatStyle())
        return whole.dropLast() + "." + String(String(fraction + 1000).dropFirst()) + "Z"
    }

    package static func parseTime(_ text: String) -> Date? {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        guard let date = (try? style.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text)) else { return nil }
        return Date(journalMillis: date.journalMillis)
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing \"\(key.stringValue)\" at \(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(context.debugDescription) at \(path(context))"
        @unknown default: return "\(error)"
        }
    }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor < 0) ? quotient - 1 : quotient
    }

    fileprivate func floorModulo(_ divisor: Int64) -> Int64 {
        let remainder = self % divisor
        return remainder < 0 ? remainder + divisor : remainder
    }
}
