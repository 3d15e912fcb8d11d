package import Foundation

/// What a journal's reads do with a payload encrypted with a key the process does not hold.
package enum EncryptedPayloadReading: Sendable, Equatable {
    /// Decrypt every payload; one whose key is not held is an error (``JournalError`` `missingPayloadKey`).
    /// For everything that uses payloads: workers, replays, results, queries, copies.
    case requireKey
    /// Decrypt the payloads whose key is held; return the others encrypted
    /// (``HistoryEvent/encryptedData``). For showing histories and checking journals.
    case markMissing
    /// Decrypt nothing: return every encrypted payload as stored. For compaction and exports, which
    /// keep payloads encrypted without needing the keys.
    case keepEncrypted
}

/// Finds a payload stored out of line by its address (``OutOfLinePayload/digest``): the stored frame,
/// or `nil` when the journal has no blob with that address.
package typealias OutOfLineLookup = (_ digest: Data) throws -> Data?

/// How a journal writes payload frames and reads stored ones: its ``PayloadKeys``, what its reads
/// do with a payload whose key it lacks, and the size above which a payload is stored out of line.
/// Each backend holds one, built from its configuration.
package struct JournalPayloads: Sendable {
    package var keys: PayloadKeys
    package var reading: EncryptedPayloadReading
    /// Stored frames larger than this many bytes are stored out of line (``OutOfLinePayload``).
    package var largePayloadBytes: Int
    /// Reads return a reference to a payload stored out of line as it is stored, in
    /// ``HistoryEvent/encryptedData`` with an empty key ID, instead of the payload: for compaction,
    /// which packs the reference and leaves the payload where it is.
    package var keepsReferences = false

    package init(
        keys: PayloadKeys = .empty, reading: EncryptedPayloadReading = .requireKey,
        largePayloadBytes: Int = JournalConfiguration.defaultLargePayloadBytes
    ) {
        self.keys = keys
        self.reading = reading
        self.largePayloadBytes = largePayloadBytes
    }

    /// The keys, reading and out-of-line size of a configuration (no keys when it names none: a
    /// backend opened directly, not through `open(lease:)`, does not read the environment).
    package init(_ configuration: JournalConfiguration) {
        self.init(
            keys: configuration.payloadKeys ?? .empty, reading: configuration.encryptedPayloads,
            largePayloadBytes: configuration.largePayloadBytes ?? JournalConfiguration.defaultLargePayloadBytes)
    }

    /// The same keys, reading every encrypted payload as stored.
    package var keepingEncrypted: JournalPayloads { reading(.keepEncrypted) }

    /// The same keys, returning the payloads they cannot decrypt marked as encrypted.
    package var markingMissing: JournalPayloads { reading(.markMissing) }

    private func reading(_ reading: EncryptedPayloadReading) -> JournalPayloads {
        var payloads = self
        payloads.reading = reading
        return payloads
    }

    /// The same, returning references to payloads stored out of line as stored (``keepsReferences``).
    package var keepingReferences: JournalPayloads {
        var payloads = self
        payloads.keepsReferences = true
        return payloads
    }

    /// `raw` framed, and encrypted with the current key if there is one.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func encode(_ raw: Data) throws -> Data { try keys.encode(raw) }

    /// The batch with its events' payloads (and those of the runs it starts) encrypted with the current
    /// key, and those larger than ``largePayloadBytes`` as stored moved out of line
    /// (``EventDraft/outOfLine``); the batch itself when there is nothing to do. Call off the writer thread.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func seal(_ batch: JournalBatch) throws -> JournalBatch {
        func large(_ draft: EventDraft) -> Bool { (draft.data?.count ?? 0) > largePayloadBytes }
        guard keys.currentKeyID != nil || batch.events.contains(where: large) || batch.continuation.map({ large($0.started) }) == true
            || batch.childRuns.contains(where: { large($0.started) })
        else { return batch }
        var batch = batch
        for i in batch.events.indices { try store(&batch.events[i]) }
        if batch.continuation != nil { try store(&batch.continuation!.started) }
        for i in batch.childRuns.indices { try store(&batch.childRuns[i].started) }
        batch.notice = try batch.notice.map(seal)
        return batch
    }

    /// Encrypts the event's payload frame with the current key, if any, and moves it out of line when
    /// the result is larger than ``largePayloadBytes``.
    private func store(_ draft: inout EventDraft) throws {
        guard let frame = draft.data, draft.outOfLine == nil, !PayloadCodec.isReference(frame) else { return }
        let stored = try keys.seal(frame)
        guard stored.count > largePayloadBytes else {
            draft.data = stored
            return
        }
        let blob = OutOfLinePayload(frame: stored)
        draft.data = blob.reference(rawLength: PayloadCodec.decodedLength(frame) ?? frame.count)
        draft.outOfLine = blob
    }

    /// The notice with its payload framed and encrypted (``RunNotice/frame``) when there is a current key.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func seal(_ notice: RunNotice) throws -> RunNotice {
        guard keys.currentKeyID != nil else { return notice }
        var notice = notice
        notice.frame = try keys.encode(notice.payload)
        return notice
    }

    /// A run's events and queued signals with their payloads framed (and encrypted), as
    /// ``Journal/importRun(_:events:signals:)`` and ``Journal/replaceRun(_:with:events:signals:)`` write them.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func frame(_ runID: String, events: [HistoryEvent], signals: [QueuedSignal]) throws -> FramedRun {
        FramedRun(
            drafts: try seal(JournalBatch(run: RunRef(runID: runID), events: events.map(EventDraft.init))).events,
            signals: try signals.map { ($0, try $0.data.map(encode)) })
    }

    /// A termination as the journal writes it: its parent's notice sealed, and the framed reason that
    /// is the `WorkflowTerminated` event's payload.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func seal(_ termination: RunTermination) throws -> (termination: RunTermination, reason: Data) {
        var sealed = termination
        sealed.notice = try termination.notice.map(seal)
        return (sealed, try encode(Data(termination.reason.utf8)))
    }

    /// An event's stored payload as a history holds it: decoded, or kept encrypted as ``reading`` says.
    /// A reference to a payload stored out of line is resolved with `outOfLine` (unless
    /// ``keepsReferences``) and the blob checked against its address first.
    /// - Throws: ``JournalError``: `missingPayloadKey` (reading `requireKey`), `wrongPayloadKey`,
    ///   `corruptEvent` saying what is wrong with the frame, `corruptRun` for a malformed reference or
    ///   a missing blob, or `damaged` when a blob does not match its address.
    package func read(
        _ stored: Data?, runID: String, index: Int, kind: EventKind, outOfLine: OutOfLineLookup
    ) throws -> (data: Data?, encrypted: EncryptedPayload?) {
        guard var blob = stored else { return (nil, nil) }
        var what: String { "run \(runID), event \(index) (\(kind.name))" }  // for errors only
        if PayloadCodec.isReference(blob) {
            if keepsReferences { return (nil, EncryptedPayload(keyID: "", frame: blob)) }
            blob = try Self.resolve(blob, runID: runID, row: "event \(index) (\(kind.name))", outOfLine: outOfLine)
        }
        do throws(PayloadCodecError) {
            if reading == .keepEncrypted, blob.first == PayloadCodec.Format.aesGCM.rawValue {
                return (nil, EncryptedPayload(keyID: try PayloadCodec.sealedParts(blob).keyID, frame: blob))
            }
            return (try keys.decode(blob), nil)
        } catch .encrypted(let keyID) where reading != .requireKey {
            return (nil, EncryptedPayload(keyID: keyID, frame: blob))
        } catch .encrypted(let keyID) {
            throw JournalError(.missingPayloadKey(what: what, keyID: keyID, runID: runID))
        } catch .cannotDecrypt(let keyID) {
            throw JournalError(.wrongPayloadKey(what: what, keyID: keyID, runID: runID))
        } catch {
            throw JournalError(.corruptEvent(runID: runID, index: index, reason: "payload unreadable (\(kind.name)): \(error)"))
        }
    }

    /// The stored frame a reference (``OutOfLinePayload``) points to, checked against its address.
    /// - Throws: ``JournalError`` `corruptRun` (naming the row) for a malformed reference or a missing blob,
    ///   `damaged` for a blob that does not match its address.
    package static func resolve(_ reference: Data, runID: String, row: String, outOfLine: OutOfLineLookup) throws -> Data {
        let parts: (digest: Data, rawLength: Int, storedLength: Int)
        do {
            parts = try PayloadCodec.reference(reference)
        } catch {
            throw JournalError(.corruptRun(runID: runID, reason: "\(row): unreadable reference to a payload stored out of line: \(error)"))
        }
        let label = OutOfLinePayload.label(parts.digest)
        guard let frame = try outOfLine(parts.digest) else {
            throw JournalError(.corruptRun(runID: runID, reason: "\(row): its payload stored out of line (\(label)) is missing"))
        }
        guard frame.count == parts.storedLength, OutOfLinePayload.matches(frame, digest: parts.digest) else {
            throw JournalError(.damaged(
                runID: runID, row: "\(row), payload stored out of line (\(label))",
                reason: "the blob does not match its SHA-256"))
        }
        return frame
    }

    /// A payload decoded, decrypted with the keys held (a queued signal's).
    package func decode(_ blob: Data) throws(PayloadCodecError) -> Data { try keys.decode(blob) }

    /// Checks a stored payload as far as the keys allow.
    /// - Returns: `nil` when it was checked entirely; the key ID when it is encrypted with a key not
    ///   held (only the frame's header could be checked).
    /// - Throws: ``PayloadCodecError`` for a damaged frame, or one the key of its ID does not decrypt.
    package func verify(_ blob: Data) throws(PayloadCodecError) -> String? {
        do throws(PayloadCodecError) {
            _ = try keys.decode(blob)
            return nil
        } catch .encrypted(let keyID) {
            return keyID
        }
    }
}

/// A run's events and queued signals ready to be written (``JournalPayloads/frame(_:events:signals:)``).
package struct FramedRun: Sendable {
    package var drafts: [EventDraft]
    /// Each queued signal with its payload's frame.
    package var signals: [(signal: QueuedSignal, frame: Data?)]
}
