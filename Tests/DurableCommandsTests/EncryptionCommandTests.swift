import DurableTestSupport
import Foundation
import Testing

/// The `durable` command on a journal whose payloads are encrypted, with the key, without it, and
/// with a wrong one.
@Suite(.timeLimit(.minutes(2))) struct EncryptionCommandTests {
    let durable: String
    let app: String
    static let key = "k1:" + Data((0..<32).map { UInt8($0) }).base64EncodedString()
    static let wrongKey = "k1:" + Data(repeating: 9, count: 32).base64EncodedString()

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    /// A journal holding one completed run, `id`, whose payloads (its input names "secret-claimant")
    /// are encrypted with ``key``.
    func encryptedJournal(withRun id: String) async throws -> String {
        let journal = temporaryJournal()
        let run = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"secret-claimant"}"#, "--id", id, "--journal", journal],
            environment: ["STEP_MS": "1", "DURABLE_PAYLOAD_KEY": Self.key])
        try #require(run.status == 0, "run failed: \(run.stderr)")
        return journal
    }

    @Test func historyShowsMetadataWithoutTheKeyAndPayloadsWithIt() async throws {
        let journal = try await encryptedJournal(withRun: "enc-1")

        let blind = try await runCommand(durable, ["history", "enc-1", "--journal", journal])
        #expect(blind.status == 0, "\(blind.stderr)")
        #expect(blind.stdout.contains("WorkflowStarted"))
        #expect(blind.stdout.contains("CrashFlow encrypted (key k1)"), "\(blind.stdout)")
        #expect(!blind.stdout.contains("secret-claimant"))
        let blindJSON = try await runCommand(durable, ["history", "enc-1", "--json", "--journal", journal])
        #expect(blindJSON.stdout.contains(#""keyID" : "k1""#) || blindJSON.stdout.contains(#""keyID":"k1""#), "\(blindJSON.stdout)")

        let keyed = try await runCommand(durable, ["history", "enc-1", "--journal", journal], environment: ["DURABLE_PAYLOAD_KEY": Self.key])
        #expect(keyed.status == 0, "\(keyed.stderr)")
        #expect(keyed.stdout.contains("secret-claimant"))
        #expect(!keyed.stdout.contains("encrypted (key"))

        let wrong = try await runCommand(durable, ["history", "enc-1", "--journal", journal], environment: ["DURABLE_PAYLOAD_KEY": Self.wrongKey])
        #expect(wrong.status == 3)
        #expect(wrong.stderr.contains("cannot decrypt the payload with key 'k1': wrong key or damaged"), "\(wrong.stderr)")
        #expect(wrong.stderr.split(separator: "\n").count == 1)

        // The run's record, and a line saying which key its history needs.
        let describe = try await runCommand(durable, ["runs", "show", "enc-1", "--journal", journal])
        #expect(describe.status == 0, "\(describe.stderr)")
        #expect(describe.stdout.contains("enc-1"), "\(describe.stdout)")
        #expect(describe.stdout.contains("payload is encrypted with key 'k1'"), "\(describe.stdout)")
        #expect(!describe.stdout.contains("secret-claimant"))

        let check = try await runCommand(durable, ["journal", "check", "--journal", journal])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("payload(s) encrypted with key 'k1', not held here"), "\(check.stdout)")
        #expect(check.stdout.contains("healthy"))
        let keyedCheck = try await runCommand(durable, ["journal", "check", "--journal", journal], environment: ["DURABLE_PAYLOAD_KEY": Self.key])
        #expect(keyedCheck.status == 0)
        #expect(!keyedCheck.stdout.contains("not verified"))
    }

    @Test func exportKeepsPayloadsEncryptedUnlessAskedToDecrypt() async throws {
        let journal = try await encryptedJournal(withRun: "enc-2")

        let sealed = try await runCommand(durable, ["history", "export", "enc-2", "--journal", journal])
        #expect(sealed.status == 0, "\(sealed.stderr)")
        #expect(sealed.stdout.contains(#""dataKeyID" : "k1""#), "\(sealed.stdout)")
        #expect(!sealed.stdout.contains("secret-claimant"))

        let refused = try await runCommand(durable, ["history", "export", "enc-2", "--decrypt", "--journal", journal])
        #expect(refused.status == 3)
        #expect(refused.stderr.contains("payload is encrypted with key 'k1'"), "\(refused.stderr)")

        let plain = try await runCommand(
            durable, ["history", "export", "enc-2", "--decrypt", "--journal", journal], environment: ["DURABLE_PAYLOAD_KEY": Self.key])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout.contains("secret-claimant"))
        #expect(!plain.stdout.contains("dataKeyID"))
    }

    @Test func aKeyFileOthersCanReadIsRefused() async throws {
        let journal = temporaryJournal()
        let keyFile = temporaryPath("keys")
        try Data((Self.key + "\n").utf8).write(to: URL(fileURLWithPath: keyFile))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: keyFile)
        let result = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"x"}"#, "--journal", journal],
            environment: ["STEP_MS": "1", "DURABLE_PAYLOAD_KEYS_FILE": keyFile])
        #expect(result.status != 0)
        #expect(result.stderr.contains("payload keys from \(keyFile): is readable or writable by other users (mode 644); chmod 600 it"),
                "\(result.stderr)")
    }
}
