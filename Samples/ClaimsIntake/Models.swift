import Durable
import Foundation

/// A claim as it arrives: who claims what, the scanned claim form, and the line items claimed.
struct Claim: Codable, Sendable {
    var claimId: String
    var policyId: String
    var customer: String
    /// Days between the policy's start and the loss.
    var policyAgeDays: Int
    /// Claims this customer made before.
    var priorClaims: Int
    /// Path of the scanned claim form (PNG), readable by the OCR workers.
    var scan: String
    var items: [LineItem]
    var payeeIBAN: String
    /// How long a reviewer has before the review is escalated, and again before it expires
    /// (default 48 hours each).
    var reviewSeconds: Double?
}

struct LineItem: Codable, Sendable {
    var description: String
    var amount: Double
}

// MARK: Stage inputs and outputs (the Python workers' JSON)

struct ScanRequest: Codable, Sendable {
    var claimId: String
    var scan: String
}

struct OCRResult: Codable, Sendable {
    var text: String
    /// Tesseract's mean word confidence, 0–100.
    var confidence: Int
    /// Time spent in the model inside the worker process.
    var modelMs: Double
}

struct DocumentText: Codable, Sendable {
    var claimId: String
    var text: String
}

struct DocumentClass: Codable, Sendable {
    var category: String
    var categoryScore: Double
    var fraudPattern: String
    var fraudSimilarity: Double
    var modelMs: Double
}

struct FraudRequest: Codable, Sendable {
    var claimId: String
    var features: FraudFeatures
}

/// The fraud model's features, in the names train_fraud.py trained on.
struct FraudFeatures: Codable, Sendable, Equatable {
    var logAmount: Double
    var itemCount: Double
    var policyAgeDays: Double
    var priorClaims: Double
    var fraudSimilarity: Double
    var amountMismatch: Double
    var ocrConfidence: Double
}

struct FraudScore: Codable, Sendable {
    /// Probability of fraud, 0–1.
    var score: Double
    /// `name@version` of the model that scored.
    var model: String
    var modelMs: Double
}

// MARK: Review

/// A reviewer's answer, sent as the signal `review`.
struct Review: Codable, Sendable {
    var approved: Bool
    var by: String
    var note: String?
}

struct EscalationNotice: Codable, Sendable {
    var claimId: String
    var level: String
    var reason: String
}

// MARK: Payment

struct ReserveRequest: Codable, Sendable {
    var claimId: String
    var amount: Double
}

struct Reserve: Codable, Sendable {
    var claimId: String
    var amount: Double
}

struct PaymentRequest: Codable, Sendable {
    var claimId: String
    var amount: Double
    var payeeIBAN: String
    /// The ledger's key for this payment: one payment per claim, whatever the runs or attempts.
    var idempotencyKey: String
}

struct Payment: Codable, Sendable {
    var paymentId: String
    var claimId: String
    var amount: Double
    var payeeIBAN: String
    /// True when the ledger already held this key: an earlier attempt paid, this one did not pay again.
    var duplicate: Bool
}

// MARK: The outcome

struct Decision: Codable, Sendable {
    enum Outcome: String, Codable, Sendable {
        case paid, rejected, paymentFailed
    }
    var claimId: String
    var outcome: Outcome
    var reason: String
    var category: String
    var fraudScore: Double
    var flags: [String]
    var reviewedBy: String?
    var escalated: Bool
    var payout: Double?
    var paymentId: String?
}
