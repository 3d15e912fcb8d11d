import Durable
import Foundation

/// One insurance claim, from its scan to its payment.
///
/// OCR (Tesseract, warm process pool) → classification and fraud-pattern similarity (MiniLM
/// embeddings, warm process pool) → fraud score (scikit-learn, warm process pool) and rules (Swift,
/// `ClaimRules`) → a person reviews risky claims (signal `review`, durable deadline, one escalation)
/// → payment as a saga: reserve, pay (one payment per claim, by idempotency key), confirm; a failed
/// confirmation refunds the payment and releases the reserve.
struct ClaimIntake: Workflow {
    static var signals: [String: any Decodable.Type] { ["review": Review.self] }

    func run(_ ctx: WorkflowContext, input claim: Claim) async throws -> Decision {
        var stage = "received"
        ctx.setQueryHandler("stage") { stage }
        if let problem = ClaimRules.validate(claim) {
            throw ApplicationError(problem, type: "InvalidClaim", nonRetryable: true)
        }

        stage = "ocr"
        let ocr = try await ctx.execute(OCRScan.self, ScanRequest(claimId: claim.claimId, scan: claim.scan), options: .model)
        stage = "classifying"
        let text = DocumentText(claimId: claim.claimId, text: ClaimRules.description(in: ocr.text))
        let document = try await ctx.execute(ClassifyDocument.self, text, options: .model)
        stage = "scoring"
        let features = ClaimRules.features(for: claim, ocr: ocr, document: document)
        let risk = try await ctx.execute(ScoreFraud.self, FraudRequest(claimId: claim.claimId, features: features), options: .model)
        let flags = ClaimRules.flags(for: claim, ocr: ocr, document: document)

        var decision = Decision(
            claimId: claim.claimId, outcome: .rejected, reason: "", category: document.category,
            fraudScore: risk.score, flags: flags, reviewedBy: nil, escalated: false, payout: nil, paymentId: nil)

        switch ClaimRules.route(score: risk.score, flags: flags) {
        case .reject(let reason):
            decision.reason = reason
            stage = "rejected"
            return decision
        case .approve:
            decision.reason = "approved automatically"
        case .review(let reasons):
            stage = "awaiting review"
            let seconds = claim.reviewSeconds ?? 48 * 3600
            let review: Review?
            do {
                review = try await ctx.waitForSignal(Review.self, named: "review", until: ctx.now.addingTimeInterval(seconds))
            } catch is WorkflowTimeout {
                // Nobody answered in time: escalate to a senior reviewer, who gets the same time again.
                decision.escalated = true
                stage = "awaiting review (escalated)"
                _ = try await ctx.execute(
                    Escalate.self,
                    EscalationNotice(claimId: claim.claimId, level: "senior", reason: reasons.joined(separator: "; ")),
                    options: .ledger)
                do {
                    review = try await ctx.waitForSignal(Review.self, named: "review", until: ctx.now.addingTimeInterval(seconds))
                } catch is WorkflowTimeout {
                    review = nil
                }
            }
            guard let review else {
                decision.reason = "no review within the deadline after escalation"
                stage = "rejected"
                return decision
            }
            decision.reviewedBy = review.by
            guard review.approved else {
                decision.reason = "refused by \(review.by)" + (review.note.map { ": \($0)" } ?? "")
                stage = "rejected"
                return decision
            }
            decision.reason = "approved by \(review.by) (\(reasons.joined(separator: "; ")))"
        }

        stage = "paying"
        let amount = ClaimRules.claimedTotal(claim)
        let saga = Saga(ctx)
        do {
            let payment = try await saga.run {
                let reserve = try await ctx.execute(
                    ReserveFunds.self, ReserveRequest(claimId: claim.claimId, amount: amount), options: .ledger)
                saga.addCompensation(ReleaseReserve.self, reserve, options: .ledger)
                let payment = try await ctx.execute(
                    PayOut.self,
                    PaymentRequest(
                        claimId: claim.claimId, amount: amount, payeeIBAN: claim.payeeIBAN,
                        idempotencyKey: "payout/\(claim.claimId)"),
                    options: .ledger)
                saga.addCompensation(RefundPayment.self, payment, options: .ledger)
                _ = try await ctx.execute(ConfirmSettlement.self, payment, options: .ledger)
                return payment
            }
            decision.outcome = .paid
            decision.payout = amount
            decision.paymentId = payment.paymentId
            stage = "paid"
        } catch is CancellationError {
            throw CancellationError()  // the run was cancelled: the saga has compensated; end as cancelled
        } catch {
            // A step failed for good (a refused account, retries or a timeout exhausted): the saga has
            // refunded and released what it had done, and the claim ends unpaid.
            decision.outcome = .paymentFailed
            let cause = (error as? ActivityFailure)?.cause.message ?? "\(error)"
            decision.reason += "; payment failed and was compensated: \(cause)"
            stage = "payment failed"
        }
        return decision
    }
}

extension ActivityOptions {
    /// A model call in a warm pool: a page of OCR takes about a second on two busy cores; a worker
    /// process that dies or hangs is replaced and the call retried.
    static let model = ActivityOptions(
        startToClose: .seconds(60), scheduleToClose: .seconds(600),
        retry: .exponential(initial: .milliseconds(200), coefficient: 2, maximum: .seconds(5), maxAttempts: 5,
                            nonRetryable: ["InvalidInput"]))

    /// A ledger write: idempotent by its key, so retried freely; a refused account is not retried.
    static let ledger = ActivityOptions(
        startToClose: .seconds(10),
        retry: .exponential(initial: .milliseconds(100), maximum: .seconds(2), maxAttempts: 10,
                            nonRetryable: ["AccountClosed", "UnknownPayment"]))
}
