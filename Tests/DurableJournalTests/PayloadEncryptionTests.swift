import Foundation
import Testing

@testable import DurableJournal

@Suite(.timeLimit(.minutes(2))) struct PayloadEncryptionTests {
    static let first = Data((0..<32).map { UInt8($0) })
    static let second = Data((0..<32).map { UInt8(200 - $0) })
    static let claim = Data(#"{"claimant":"Jane Roe","iban":"DE89370400440532013000","text":"claim approved; claim approved; claim approved"}"#.utf8)

    static func keys(_ pairs: [String: Data], current: String?) throws -> PayloadKeys {
        try PayloadKeys(keys: pairs, current: current)
    }

    @Test func encryptedFrameRoundTripsAndHidesThePlaintext() throws {
        let keys = try Self.keys(["k1": Self.first], current: "k1")
        let frame = try keys.encode(Self.claim)
        #expect(frame.first == PayloadCodec.Format.aesGCM.rawValue)
        #expect(PayloadCodec.encryptionKeyID(frame) == "k1")
        #expect(frame.range(of: Data("Jane Roe".utf8)) == nil)
        #expect(frame.range(of: Data("claimant".utf8)) == nil)
        #expect(try keys.decode(frame) == Self.claim)
        #expect(try keys.encode(Self.claim) != frame, "a fresh nonce for every payload")
    }

    @Test func withoutACurrentKeyPayloadsAreWrittenInClear() throws {
        #expect(try PayloadKeys.empty.encode(Self.claim) == PayloadCodec.encode(Self.claim))
        let decryptOnly = try Self.keys(["k1": Self.first], current: nil)
        #expect(try decryptOnly.encode(Self.claim).first != PayloadCodec.Format.aesGCM.rawValue)
    }

    @Test func plainDecodeReportsTheKeyInsteadOfReadingCiphertext() throws {
        let frame = try Self.keys(["k1": Self.first], current: "k1").encode(Self.claim)
        #expect(throws: PayloadCodecError.encrypted(keyID: "k1")) { try PayloadCodec.decode(frame) }
        #expect(throws: PayloadCodecError.encrypted(keyID: "k1")) { try PayloadKeys.empty.decode(frame) }
        #expect(PayloadCodec.decodedLength(frame) == nil)
    }

    @Test func aWrongKeyUnderTheSameIDIsAClearError() throws {
        let frame = try Self.keys(["k1": Self.first], current: "k1").encode(Self.claim)
        let wrong = try Self.keys(["k1": Self.second], current: "k1")
        #expect(throws: PayloadCodecError.cannotDecrypt(keyID: "k1")) { try wrong.decode(frame) }
        let error = try #require(throws: JournalError.self) {
            try JournalPayloads(keys: wrong).read(frame, runID: "r1", index: 2, kind: .activityCompleted, outOfLine: { _ in nil })
        }
        #expect(error.code == .wrongPayloadKey)
        #expect(error.description == "run r1, event 2 (ActivityCompleted): cannot decrypt the payload with key 'k1': wrong key or damaged")
    }

    @Test func everyFlippedByteOfAnEncryptedFrameIsDetected() throws {
        let keys = try Self.keys(["k1": Self.first], current: "k1")
        let frame = try keys.encode(Self.claim)
        for i in 0..<frame.count {
            var damaged = frame
            damaged[i] ^= 0x10
            #expect(throws: PayloadCodecError.self, "byte \(i)") { _ = try keys.decode(damaged) }
        }
        for length in 0..<frame.count {
            #expect(throws: PayloadCodecError.self) { _ = try keys.decode(frame.prefix(length)) }
        }
    }

    @Test func rotationDecryptsOldPayloadsByTheirKeyID() throws {
        let before = try Self.keys(["2026-01": Self.first], current: "2026-01")
        let old = try before.encode(Self.claim)
        let after = try Self.keys(["2026-01": Self.first, "2026-07": Self.second], current: "2026-07")
        let new = try after.encode(Self.claim)
        #expect(PayloadCodec.encryptionKeyID(new) == "2026-07")
        #expect(try after.decode(old) == Self.claim)
        #expect(try after.decode(new) == Self.claim)
        #expect(throws: PayloadCodecError.encrypted(keyID: "2026-07")) { try before.decode(new) }
    }

    @Test func readingWithoutTheKeyMarksOrFailsAsAsked() throws {
        let frame = try Self.keys(["k1": Self.first], current: "k1").encode(Self.claim)
        let missing = try #require(throws: JournalError.self) {
            try JournalPayloads().read(frame, runID: "r1", index: 0, kind: .workflowStarted, outOfLine: { _ in nil })
        }
        #expect(missing.code == .missingPayloadKey)
        #expect(missing.runID == "r1")
        #expect("\(missing)".contains("key 'k1'"))
        let marked = try JournalPayloads(reading: .markMissing).read(frame, runID: "r1", index: 0, kind: .workflowStarted, outOfLine: { _ in nil })
        #expect(marked.data == nil)
        #expect(marked.encrypted == EncryptedPayload(keyID: "k1", frame: frame))
        // With the key: decrypted when marking, kept as stored when keeping.
        let keys = try Self.keys(["k1": Self.first], current: "k1")
        #expect(try JournalPayloads(keys: keys, reading: .markMissing).read(frame, runID: "r1", index: 0, kind: .workflowStarted, outOfLine: { _ in nil }).data == Self.claim)
        #expect(try JournalPayloads(keys: keys, reading: .keepEncrypted).read(frame, runID: "r1", index: 0, kind: .workflowStarted, outOfLine: { _ in nil }).encrypted?.keyID == "k1")
        #expect(try JournalPayloads().verify(frame) == "k1")
        #expect(try JournalPayloads(keys: keys).verify(frame) == nil)
    }

    @Test func aPackKeepsEncryptedPayloadsAndDecodesThemWithTheKey() throws {
        let keys = try Self.keys(["k1": Self.first], current: "k1")
        let t0 = Date(journalMillis: 1_780_000_000_000)
        var started = HistoryEvent(index: 0, kind: .workflowStarted, time: t0, name: "Claim")
        started.encryptedData = EncryptedPayload(keyID: "k1", frame: try keys.encode(Self.claim))
        let history = [
            started,
            HistoryEvent(index: 1, kind: .activityScheduled, time: t0, seq: 1, name: "Score", data: Data("1".utf8), meta: Data("{}".utf8)),
            HistoryEvent(index: 2, kind: .workflowCompleted, time: t0),
        ]
        let (block, _) = HistoryPack.encode(history)
        #expect(block.range(of: Data("Jane Roe".utf8)) == nil)
        let kept = try HistoryPack.decode(block, runID: "r1", payloads: JournalPayloads(reading: .markMissing))
        #expect(kept == history, "without the key: metadata, and the payload still encrypted")
        let decrypted = try HistoryPack.decode(block, runID: "r1", payloads: JournalPayloads(keys: keys))
        #expect(decrypted[0].data == Self.claim)
        #expect(decrypted[0].encryptedData == nil)
        #expect(decrypted[1] == history[1])
        #expect(throws: JournalError.self) { try HistoryPack.decode(block, runID: "r1") }
    }

    @Test func aBatchIsSealedWithTheCurrentKey() throws {
        let keys = try Self.keys(["k1": Self.first], current: "k1")
        let t0 = Date()
        var batch = JournalBatch(run: RunRef(runID: "r1"), events: [
            EventDraft(HistoryEvent(index: 0, kind: .workflowStarted, time: t0, name: "Claim", data: Self.claim)),
            EventDraft(HistoryEvent(index: 1, kind: .timerFired, time: t0, seq: 1)),
        ])
        batch.notice = RunNotice(runID: "parent", name: "durable.child", payload: Self.claim)
        let sealed = try JournalPayloads(keys: keys).seal(batch)
        #expect(sealed.events[0].data.flatMap(PayloadCodec.encryptionKeyID) == "k1")
        #expect(sealed.events[1].data == nil)
        #expect(try sealed.notice?.frame.map(keys.decode) == Self.claim)
        #expect(try JournalPayloads().seal(batch).events[0].data == PayloadCodec.encode(Self.claim))
    }

    // MARK: - Key files and the environment

    @Test func keyFileTextNamesTheCurrentKey() throws {
        let text = """
            # payload keys
            2026-01:\(Self.first.base64EncodedString())

            2026-07:\(Self.second.base64EncodedString())
            """
        let keys = try PayloadKeys.parse(text, source: "test")
        #expect(keys.keyIDs == ["2026-01", "2026-07"])
        #expect(keys.currentKeyID == "2026-07", "the last key, by default")
        #expect(try PayloadKeys.parse(text + "\ncurrent=2026-01", source: "test").currentKeyID == "2026-01")
        #expect(keys.description == "payload keys 2026-01, 2026-07 (new payloads: 2026-07)")
    }

    @Test(arguments: [
        ("k1:AAAA", "is 3 bytes"),
        ("k1 \(Data(count: 32).base64EncodedString())", "neither ID:BASE64"),
        ("k/1:\(Data(count: 32).base64EncodedString())", "key ID 'k/1'"),
        ("k1:!!!", "not base64"),
        ("# nothing", "no keys"),
        ("k1:\(Data(count: 32).base64EncodedString())\ncurrent=k2", "'k2' is not among the keys"),
    ])
    func badKeyTextIsRefused(_ text: String, _ expected: String) throws {
        let error = try #require(throws: JournalError.self) { try PayloadKeys.parse(text, source: "keys.txt") }
        #expect(error.code == .badPayloadKeys)
        #expect(error.description.contains(expected), "\(error)")
        #expect(error.description.hasPrefix("payload keys from keys.txt: "))
    }

    @Test func aKeyFileReadableByOthersIsRefused() throws {
        let path = NSTemporaryDirectory() + "durable-keys-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("k1:\(Self.first.base64EncodedString())\n".utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let error = try #require(throws: JournalError.self) { try PayloadKeys.read(file: path) }
        #expect(error.description.contains("readable or writable by other users (mode 644)"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        #expect(try PayloadKeys.read(file: path).keyIDs == ["k1"])
        #expect(try PayloadKeys.fromEnvironment([PayloadKeys.fileVariable: path])?.currentKeyID == "k1")
    }

    @Test func theEnvironmentGivesOneKeyInlineOrAFile() throws {
        #expect(try PayloadKeys.fromEnvironment([:]) == nil)
        let inline = "k9:\(Self.second.base64EncodedString())"
        let keys = try #require(try PayloadKeys.fromEnvironment([PayloadKeys.inlineVariable: inline]))
        #expect(keys == (try Self.keys(["k9": Self.second], current: "k9")))
        #expect(throws: JournalError.self) {
            try PayloadKeys.fromEnvironment([PayloadKeys.inlineVariable: inline, PayloadKeys.fileVariable: "/nonexistent"])
        }
        var configuration = JournalConfiguration("x.sqlite", payloadKeys: PayloadKeys.empty)
        #expect(try configuration.resolvingPayloadKeys().payloadKeys == PayloadKeys.empty)
        configuration.payloadKeys = nil
        #expect(try configuration.resolvingPayloadKeys().payloadKeys != nil)
    }

    @Test func anExportKeepsPayloadsEncryptedAndReadsThemBackWithTheKey() throws {
        let keys = try Self.keys(["k1": Self.first], current: "k1")
        let t0 = Date(journalMillis: 1_780_000_000_000)
        var started = HistoryEvent(index: 0, kind: .workflowStarted, time: t0, name: "Claim")
        started.encryptedData = EncryptedPayload(keyID: "k1", frame: try keys.encode(Self.claim))
        let record = RunRecord(
            runID: "r1", workflowID: "claim-1", workflowType: "Claim", status: .running, createdAt: t0, updatedAt: t0,
            closedAt: nil, seed: 7, error: nil)
        let document = try HistoryExport(run: record, events: [started]).encoded()
        #expect(document.range(of: Data("Jane Roe".utf8)) == nil)
        let read = try HistoryExport.decode(document, path: "h.json")
        #expect(read.version == 2, "a build that reads version 1 only refuses it")
        #expect(HistoryExport(run: record, events: [HistoryEvent(index: 0, kind: .workflowStarted, time: t0)]).version == 1)
        #expect(read.events[0].dataKeyID == "k1")
        #expect(try read.decoded(path: "h.json", payloadKeys: keys).1[0].data == Self.claim)
        let error = try #require(throws: JournalError.self) { try read.decoded(path: "h.json", payloadKeys: PayloadKeys.empty) }
        #expect(error.description.contains("encrypted with key 'k1'"))
    }
}
