import Durable
import Foundation

// MARK: Models in warm process pools (python/*.py; registered in main.swift)

/// Tesseract OCR of the scanned claim form (python/ocr_worker.py).
struct OCRScan: ActivityDeclaration {
    typealias Input = ScanRequest
    typealias Output = OCRResult
}

/// Document category and similarity to known fraud patterns, from MiniLM embeddings
/// (python/embed_worker.py).
struct ClassifyDocument: ActivityDeclaration {
    typealias Input = DocumentText
    typealias Output = DocumentClass
}

/// The trained fraud model (python/fraud_worker.py).
struct ScoreFraud: ActivityDeclaration {
    typealias Input = FraudRequest
    typealias Output = FraudScore
}

// MARK: Ledger steps (in process, on the claims ledger)

/// Tells a senior reviewer that a review is overdue (recorded in the ledger's escalations table).
struct Escalate: Activity {
    let ledger: Ledger
    func run(_ ctx: ActivityContext, input: EscalationNotice) async throws -> Bool {
        try ledger.escalate(input, key: ctx.idempotencyKey)
        log(ctx, "escalated \(input.claimId) to \(input.level)")
        return true
    }
}

/// Holds the payout amount against the claims budget. Undo: `ReleaseReserve`.
struct ReserveFunds: Activity {
    let ledger: Ledger
    func run(_ ctx: ActivityContext, input: ReserveRequest) async throws -> Reserve {
        try ledger.reserve(input)
        log(ctx, "reserved \(String(format: "%.2f", input.amount)) for \(input.claimId)")
        return Reserve(claimId: input.claimId, amount: input.amount)
    }
}

struct ReleaseReserve: Activity {
    let ledger: Ledger
    func run(_ ctx: ActivityContext, input: Reserve) async throws -> Bool {
        try ledger.release(input)
        log(ctx, "released the reserve of \(input.claimId)")
        return true
    }
}

/// Pays the claim, once: the ledger's `payments` table is keyed by the request's idempotency key,
/// so a second attempt (after a crash, a timeout or a retry) finds the first payment and returns it
/// instead of paying again. Every call is logged in `payout_calls`, so the demo can show attempts
/// that ran twice and paid once. Undo: `RefundPayment`.
struct PayOut: Activity {
    let ledger: Ledger
    /// The demo's knob (CLAIMS_DEMO_PAUSE_AFTER_PAYMENT_MS): wait this long after paying, before the
    /// result reaches the journal, so that its SIGKILL lands after the money moved and before the
    /// engine knows: the case the idempotency key exists for.
    var pauseAfterPayment: Duration?

    func run(_ ctx: ActivityContext, input: PaymentRequest) async throws -> Payment {
        try await Task.sleep(for: .milliseconds(150))  // stands in for the bank API's latency
        let payment = try ledger.pay(input, runKey: ctx.idempotencyKey, attempt: ctx.attempt)
        if payment.duplicate {
            log(ctx, "payment \(payment.paymentId) for \(input.claimId) already made: not paid again")
        } else {
            log(ctx, "paid \(String(format: "%.2f", input.amount)) for \(input.claimId) as \(payment.paymentId)")
            if let pauseAfterPayment { try await Task.sleep(for: pauseAfterPayment) }
        }
        return payment
    }
}

struct RefundPayment: Activity {
    let ledger: Ledger
    func run(_ ctx: ActivityContext, input: Payment) async throws -> Bool {
        try ledger.refund(input)
        log(ctx, "refunded \(input.paymentId) of \(input.claimId)")
        return true
    }
}

/// Asks the (simulated) bank to confirm the transfer. The bank refuses accounts whose IBAN starts
/// with `XX` (a closed account): non-retryable, so the saga compensates.
struct ConfirmSettlement: Activity {
    let ledger: Ledger
    func run(_ ctx: ActivityContext, input: Payment) async throws -> Bool {
        if input.payeeIBAN.uppercased().hasPrefix("XX") {
            throw ApplicationError(
                "the bank refused payment \(input.paymentId): account \(input.payeeIBAN) is closed",
                type: "AccountClosed", nonRetryable: true)
        }
        try ledger.settle(input)
        log(ctx, "settled \(input.paymentId) of \(input.claimId)")
        return true
    }
}

/// One line per ledger step on standard output: `[pid 4242] PayOut claim-C-1001 (attempt 1): …`.
private func log(_ ctx: ActivityContext, _ message: String) {
    print("[pid \(getpid())] \(ctx.activityType) \(ctx.workflowID) (attempt \(ctx.attempt)): \(message)")
}
