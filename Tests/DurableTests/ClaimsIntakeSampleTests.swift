import Durable
import DurableTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The ClaimsIntake sample (Samples/ClaimsIntake) end to end, with its real models: the built
/// `claims-intake` worker runs Tesseract, MiniLM (ONNX) and the trained scikit-learn model in warm
/// Python process pools; the worker is SIGKILLed just after a payment and before the journal knew, and
/// a second worker finishes the batch. Review deadlines of a few seconds exercise the escalation and
/// the expiry. Needs the models set up by `Scripts/claims-setup.sh` (apt's
/// tesseract-ocr, the venv, the trained model); without them it fails and says so.
@Suite(.serialized, .timeLimit(.minutes(6))) struct ClaimsIntakeSampleTests {
    static let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Samples/ClaimsIntake").standardized.path

    /// The venv's python and the trained model's folder; throws naming the setup step when missing.
    static func models() throws -> (python: String, modelDirectory: String) {
        let environment = ProcessInfo.processInfo.environment
        let venv = environment["CLAIMS_VENV"] ?? "\(environment["HOME"] ?? "/root")/.cache/durable-claims-venv"
        let modelDirectory = environment["CLAIMS_MODEL_DIR"] ?? "\(venv)/fraud-model"
        for needed in ["\(venv)/.claims-requirements", "\(modelDirectory)/fraud_model.json", "/usr/bin/tesseract"]
        where !FileManager.default.fileExists(atPath: needed) {
            throw TestProcessError(
                "the ClaimsIntake models are not set up (\(needed) is missing): run bash Scripts/claims-setup.sh")
        }
        return ("\(venv)/bin/python", modelDirectory)
    }

    @Test func claimsRunThroughRealModelsAndAreNotPaidTwiceAfterSigkill() async throws {
        let (python, modelDirectory) = try Self.models()
        let app = try productPath("claims-intake")
        let folder = temporaryPath("claims") + ".d"
        let made = try await runCommand(python, ["\(Self.sample)/python/make_claims.py", folder, "13"], timeout: .seconds(120))
        try #require(made.status == 0, "make_claims.py failed: \(made.stderr)")

        // Two bad claims beside three real ones: a negative amount, a scan that is not there.
        let claimsFolder = "\(folder)/claims"
        try Self.rewrite("\(claimsFolder)/C-1002.json", to: "\(claimsFolder)/C-2001.json") { claim in
            claim["claimId"] = "C-2001"
            claim["items"] = [["description": "Broken vase", "amount": -5.0]]
        }
        try Self.rewrite("\(claimsFolder)/C-1003.json", to: "\(claimsFolder)/C-2002.json") { claim in
            claim["claimId"] = "C-2002"
            claim["scan"] = "\(folder)/scans/missing.png"
        }
        // C-1006 goes to review with a 6 s deadline and is answered only once escalated; C-1013 (also
        // inflated) gets 1 s and no answer at all, so both deadlines pass and it is rejected.
        try Self.rewrite("\(claimsFolder)/C-1006.json", to: "\(claimsFolder)/C-1006.json") { $0["reviewSeconds"] = 6.0 }
        try Self.rewrite("\(claimsFolder)/C-1013.json", to: "\(claimsFolder)/C-1013.json") { $0["reviewSeconds"] = 1.0 }
        let journal = temporaryJournal("claims")
        let environment = [
            "CLAIMS_LEDGER": "\(folder)/ledger.sqlite", "CLAIMS_MODEL_DIR": modelDirectory, "CLAIMS_PYTHON": python,
            "CLAIMS_OCR_SLOTS": "1",
        ]
        // C-1001 a plain claim; C-1006 claims more than its scan shows (review); C-1008 pays a
        // closed account (the bank refuses, the saga compensates).
        let good = ["C-1001", "C-1006", "C-1008"]
        let expiring = "C-1013"
        let bad = ["C-2001", "C-2002"]

        let first = try Child(
            app, ["worker", "--journal", journal],
            environment: environment.merging(["CLAIMS_DEMO_PAUSE_AFTER_PAYMENT_MS": "4000"]) { $1 })
        defer { if first.process.isRunning { first.kill(SIGKILL) } }
        try await eventually("the first worker's pools warm up", timeout: .seconds(180)) {
            guard first.process.isRunning else { throw TestProcessError("the worker exited: \(first.output)") }
            return first.output.contains("pools warm")
        }
        #expect(first.output.contains("OCRScan 1/1"), "\(first.output)")
        for claim in good + bad + [expiring] {
            let submitted = try await runCommand(
                app, ["submit", "ClaimIntake", "--id", "claim-\(claim)", "--input", "@\(claimsFolder)/\(claim).json",
                      "--journal", journal], environment: environment)
            try #require(submitted.status == 0, "submit \(claim): \(submitted.stderr)")
        }

        // Answer reviews as they come, until the first payment is made; SIGKILL the worker in the
        // pause after it, when the ledger has paid and the journal does not know.
        var reviewed: Set<String> = []
        try await eventually("a claim is paid", timeout: .seconds(240)) {
            guard first.process.isRunning else { throw TestProcessError("the worker exited: \(first.output)") }
            try await Self.answerReviews(app, journal, good, &reviewed)
            return first.output.contains(": paid ")
        }
        first.kill(SIGKILL)
        let killed = try await first.wait()
        try #require(killed.reason == .uncaughtSignal && killed.status == SIGKILL)
        let paidLine = try #require(first.output.split(separator: "\n").first { $0.contains(": paid ") })
        let paidClaim = try #require(good.first { paidLine.contains("claim-\($0) ") })

        let second = try Child(app, ["worker", "--journal", journal], environment: environment)
        defer { if second.process.isRunning { second.kill(SIGKILL) } }
        try await eventually("every claim's run ends", timeout: .seconds(240)) {
            guard second.process.isRunning else { throw TestProcessError("the worker exited: \(second.output)") }
            try await Self.answerReviews(app, journal, good, &reviewed)
            for claim in good + bad + [expiring] {
                if try await Self.run(app, journal, claim)["status"] as? String == "running" { return false }
            }
            return true
        }
        second.kill(SIGTERM)
        _ = try await second.wait()
        #expect(second.output.contains("recovered"), "\(second.output)")

        // The outcomes.
        var decisions: [String: [String: Any]] = [:]
        for claim in good {
            let run = try await Self.run(app, journal, claim)
            #expect(run["status"] as? String == "completed", "claim-\(claim): \(run)")
            decisions[claim] = try await Self.decision(app, journal, claim)
        }
        #expect(decisions["C-1001"]?["outcome"] as? String == "paid", "\(decisions["C-1001"] ?? [:])")
        let inflated = decisions["C-1006"] ?? [:]
        #expect(inflated["outcome"] as? String == "paid", "\(inflated)")
        #expect(inflated["reviewedBy"] as? String == "senior-reviewer", "C-1006 was not reviewed after escalation: \(inflated)")
        #expect(inflated["escalated"] as? Bool == true, "\(inflated)")
        #expect((inflated["flags"] as? [String] ?? []).contains { $0.contains("but the scan says") },
                "OCR did not catch the inflated total: \(inflated)")
        #expect(decisions["C-1008"]?["outcome"] as? String == "paymentFailed", "\(decisions["C-1008"] ?? [:])")
        let expired = try await Self.decision(app, journal, expiring)
        #expect(expired["outcome"] as? String == "rejected" && expired["escalated"] as? Bool == true
                && expired["reason"] as? String == "no review within the deadline after escalation", "\(expired)")

        let negative = try await Self.run(app, journal, "C-2001")
        #expect(negative["status"] as? String == "failed")
        #expect("\(negative["error"] ?? "")".contains("item 1 (Broken vase) has amount -5.0; it must be a positive number"),
                "\(negative)")
        let missing = try await Self.run(app, journal, "C-2002")
        #expect(missing["status"] as? String == "failed")
        #expect("\(missing["error"] ?? "")".contains("missing.png") && "\(missing["error"] ?? "")".contains("not a readable file"),
                "\(missing)")

        // The ledger: the claim paid before the SIGKILL ran PayOut again and was paid once; the
        // refused payment was refunded and its reserve released.
        let ledger = try DatabaseQueue(path: "\(folder)/ledger.sqlite")
        try await ledger.read { db in
            let calls = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM payout_calls WHERE claim_id = ?", arguments: [paidClaim]) ?? 0
            let payments = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM payments WHERE claim_id = ?", arguments: [paidClaim]) ?? 0
            #expect(calls >= 2 && payments == 1, "\(paidClaim): \(calls) PayOut calls, \(payments) payments")
            let perClaim = try Int.fetchAll(db, sql: "SELECT COUNT(*) FROM payments GROUP BY claim_id")
            #expect(perClaim.allSatisfy { $0 == 1 }, "a claim was paid twice: \(perClaim)")
            let refunded = try String.fetchOne(db, sql: "SELECT status FROM payments WHERE claim_id = 'C-1008'")
            let reserve = try String.fetchOne(db, sql: "SELECT status FROM reserves WHERE claim_id = 'C-1008'")
            #expect(refunded == "refunded" && reserve == "released", "C-1008: payment \(refunded ?? "none"), reserve \(reserve ?? "none")")
            let settled = try String.fetchAll(db, sql: "SELECT status FROM payments WHERE claim_id IN ('C-1001', 'C-1006')")
            #expect(settled == ["settled", "settled"], "\(settled)")
            let escalations = try String.fetchAll(db, sql: "SELECT claim_id FROM escalations ORDER BY claim_id")
            #expect(escalations == ["C-1006", "C-1013"], "\(escalations)")
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM payments WHERE claim_id = 'C-1013'") == 0)
        }

        // Lineage: every model attempt of C-1001 names its model, version and weights digest.
        let lineage = try await runCommand(app, ["lineage", "claim-C-1001", "--json", "--journal", journal])
        let attempts = try #require(
            (try JSONSerialization.jsonObject(with: Data(lineage.stdout.utf8)) as? [String: Any])?["attempts"] as? [[String: Any]],
            "lineage: \(lineage.stdout) \(lineage.stderr)")
        let models = attempts.compactMap { $0["model"] as? [String: Any] }
        #expect(Set(models.compactMap { $0["name"] as? String }) == ["tesseract-eng", "all-MiniLM-L6-v2-int8", "fraud-gb"],
                "\(models)")
        #expect(models.allSatisfy { ($0["weightsSHA256"] as? String)?.count == 64 && !($0["version"] as? String ?? "").isEmpty },
                "\(models)")
    }

    /// Signals an approving review to each claim that waits for one and was not answered yet; C-1006
    /// only once its review has been escalated, by a senior reviewer.
    static func answerReviews(_ app: String, _ journal: String, _ claims: [String], _ reviewed: inout Set<String>) async throws {
        for claim in claims where !reviewed.contains(claim) {
            let stage = try await runCommand(app, ["query", "claim-\(claim)", "stage", "--json", "--journal", journal])
            let escalated = stage.stdout.contains("awaiting review (escalated)")
            guard stage.status == 0, stage.stdout.contains("awaiting review"), claim != "C-1006" || escalated else { continue }
            let reviewer = claim == "C-1006" ? "senior-reviewer" : "test-reviewer"
            let sent = try await runCommand(
                app, ["signal", "claim-\(claim)", "review", "--input", #"{"approved": true, "by": "\#(reviewer)"}"#,
                      "--journal", journal])
            try #require(sent.status == 0, "signal \(claim): \(sent.stderr)")
            reviewed.insert(claim)
        }
    }

    /// `runs show claim-<claim> --json`.
    static func run(_ app: String, _ journal: String, _ claim: String) async throws -> [String: Any] {
        let shown = try await runCommand(app, ["runs", "show", "claim-\(claim)", "--json", "--journal", journal])
        try #require(shown.status == 0, "runs show \(claim): \(shown.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
    }

    /// The run's result (its `WorkflowCompleted` event's data).
    static func decision(_ app: String, _ journal: String, _ claim: String) async throws -> [String: Any] {
        let history = try await runCommand(app, ["history", "claim-\(claim)", "--json", "--journal", journal])
        let events = try #require(
            try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [[String: Any]], "\(history.stderr)")
        let completed = try #require(events.first { $0["kind"] as? String == "WorkflowCompleted" }, "claim-\(claim) did not complete")
        return try #require(completed["data"] as? [String: Any])
    }

    /// Copies a claim file with changes.
    static func rewrite(_ source: String, to target: String, _ change: (inout [String: Any]) -> Void) throws {
        var claim = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source))) as? [String: Any])
        change(&claim)
        try JSONSerialization.data(withJSONObject: claim).write(to: URL(fileURLWithPath: target))
    }
}
