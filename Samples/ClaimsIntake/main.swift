import Durable
import DurableCommands
import DurableServer
import Foundation

// claims-intake: Durable's command tree with the ClaimsIntake workflow, its three models in warm
// process pools and its ledger steps registered. See Samples/README.md and Docs/claims-sample.md.
//
//   bash Scripts/claims-setup.sh                      # once: tesseract-ocr, the venv, the trained model
//   claims-intake worker                              # warms the pools, then takes work
//   claims-intake submit ClaimIntake --id claim-C-1001 --input @C-1001.json
//   claims-intake signal claim-C-1004 review --input '{"approved": true, "by": "j.weber"}'
//
// Environment: CLAIMS_PYTHON (the venv's python), CLAIMS_MODEL_DIR (the trained fraud model),
// CLAIMS_LEDGER (the ledger file), CLAIMS_OCR_SLOTS / CLAIMS_EMBED_SLOTS / CLAIMS_FRAUD_SLOTS (pool
// sizes), CLAIMS_POOLS=cold (a new process, and a model load, for every call: the baseline of the
// warm-vs-cold figures).

let environment = ProcessInfo.processInfo.environment
let home = environment["HOME"] ?? "/root"
let venv = environment["CLAIMS_VENV"] ?? "\(home)/.cache/durable-claims-venv"
let python = environment["CLAIMS_PYTHON"] ?? "\(venv)/bin/python"
let modelDirectory = environment["CLAIMS_MODEL_DIR"] ?? "\(venv)/fraud-model"
let scripts = environment["CLAIMS_PYTHON_DIR"]
    ?? URL(filePath: #filePath).deletingLastPathComponent().appending(path: "python").path(percentEncoded: false)
let ledger = Ledger(path: environment["CLAIMS_LEDGER"] ?? "claims-ledger.sqlite")
let cold: Bool = switch environment["CLAIMS_POOLS"] {
case nil, "warm": false
case "cold": true
case let other?: fail("CLAIMS_POOLS=\(other) must be warm or cold")
}
let pauseAfterPayment: Duration? = environment["CLAIMS_DEMO_PAUSE_AFTER_PAYMENT_MS"].map { text in
    guard let value = Int(text), (0...60_000).contains(value) else {
        fail("CLAIMS_DEMO_PAUSE_AFTER_PAYMENT_MS=\(text) must be 0 to 60000 milliseconds")
    }
    return .milliseconds(value)
}

/// Slots from the environment (1 to 8), else the default.
func slots(_ name: String, _ fallback: Int) -> Int {
    guard let text = environment[name] else { return fallback }
    guard let value = Int(text), (1...8).contains(value) else { fail("\(name)=\(text) must be a whole number from 1 to 8") }
    return value
}

/// A bad setting: one line on standard error, exit code 2 (bad input).
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(2)
}

/// A process pool running `script` with the venv's python: `slots` processes kept warm, or, with
/// CLAIMS_POOLS=cold, none kept and each process used for one call.
func pool(_ script: String, slots: Int) -> ProcessPoolOptions {
    ProcessPoolOptions(
        command: [python, "\(scripts)/\(script)"],
        environment: [
            "CLAIMS_MODEL_DIR": modelDirectory,
            // One thread per process: the pools' processes, not a model's threads, share the cores.
            "OMP_THREAD_LIMIT": "1", "OMP_NUM_THREADS": "1", "CLAIMS_ONNX_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",  // no __pycache__ in the source tree
        ],
        workingDirectory: scripts,
        pool: cold
            ? .warm(min: 0, max: slots, maxUses: 1, warmUpTimeout: .seconds(180))
            : .warm(min: slots, max: slots, idleTimeout: nil, warmUpTimeout: .seconds(180)),
        terminationGrace: .seconds(2))
}

await DurableApp.main(
    name: "claims-intake",
    eventRoutes: EventRoutes([
        "claim.submitted": .start(ClaimIntake.name, workflowID: "claim-{data.claimId}"),
        "claim.reviewed": .signal("review", workflowID: "claim-{data.claimId}"),
    ]),
    register: { worker in
        worker.register(ClaimIntake.self)
        worker.register(OCRScan.self, processPool: pool("ocr_worker.py", slots: slots("CLAIMS_OCR_SLOTS", 2)))
        worker.register(ClassifyDocument.self, processPool: pool("embed_worker.py", slots: slots("CLAIMS_EMBED_SLOTS", 1)))
        worker.register(ScoreFraud.self, processPool: pool("fraud_worker.py", slots: slots("CLAIMS_FRAUD_SLOTS", 1)))
        worker.register(Escalate(ledger: ledger))
        worker.register(ReserveFunds(ledger: ledger))
        worker.register(ReleaseReserve(ledger: ledger))
        worker.register(PayOut(ledger: ledger, pauseAfterPayment: pauseAfterPayment))
        worker.register(RefundPayment(ledger: ledger))
        worker.register(ConfirmSettlement(ledger: ledger))
    })
