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

/// How a journal writes payload frames and reads stored ones: its ``PayloadKeys`` and what its reads
/// do with a payload whose key it lacks. Each backend holds one, built from its configuration.
package struct JournalPayloads: Sendable {
    package var keys: PayloadKeys
    package var reading: EncryptedPayloadReading

    package init(keys: PayloadKeys = .empty, reading: EncryptedPayloadReading = .requireKey) {
        self.keys = keys
        self.reading = reading
    }

    /// The keys and reading of a configuration (no keys when it names none: a backend opened directly,
    /// not through `open(lease:)`, does not read the environment).
    package init(_ configuration: JournalConfiguration) {
        self.init(keys: configuration.payloadKeys ?? .empty, reading: configuration.encryptedPayloads)
    }

    /// The same keys, reading every encrypted payload as stored.
    package var keepingEncrypted: JournalPayloads { JournalPayloads(keys: keys, reading: .keepEncrypted) }

    /// The same keys, returning the payloads they cannot decrypt marked as encrypted.
    package var markingMissing: JournalPayloads { JournalPayloads(keys: keys, reading: .markMissing) }

    /// `raw` framed, and encrypted with the current key if there is one.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func encode(_ raw: Data) throws -> Data { try keys.encode(raw) }

    /// The batch with its events' payloads (and those of the runs it starts) encrypted with the current
    /// key; the batch itself when there is none. Call off the writer thread.
    /// - Throws: ``JournalError`` `storage` if encryption fails.
    package func seal(_ batch: JournalBatch) throws -> JournalBatch {
        guard keys.currentKeyID != nil else { return batch }
        var batch = batch
        for i in batch.events.indices {
            batch.events[i].data = try batch.events[i].data.map(keys.seal)
        }
        if let data = batch.continuation?.started.data { batch.continuation?.started.data = try keys.seal(data) }
        for i in batch.childRuns.indices {
            batch.childRuns[i].started.data = try batch.childRuns[i].started.data.map(keys.seal)
        }
        batch.notice = try batch.notice.map(seal)
        return batch
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
    /// - Throws: ``JournalError``: `missingPayloadKey` (reading `requireKey`), `wrongPayloadKey`, or
    ///   `corruptEvent` saying what is wrong with the frame.
    package func read(
        _ blob: Data?, runID: String, index: Int, kind: EventKind
    ) throws -> (data: Data?, encrypted: EncryptedPayload?) {
        guard let blob else { return (nil, nil) }
        var what: String { "run \(runID), event \(index) (\(kind.name))" }  // for errors only
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
