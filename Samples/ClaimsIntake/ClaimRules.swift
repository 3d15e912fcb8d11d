import Foundation

/// The sample's business rules, in plain Swift: reading the OCR text, checking the claim against
/// its scan and its cover, and routing it from the fraud score. Pure functions of recorded values,
/// so the workflow may call them (replay gives the same answers) and tests call them directly.
enum ClaimRules {
    /// Cover limit per document category, in EUR.
    static let coverLimits: [String: Double] = ["vehicle": 5_000, "medical": 10_000, "property": 20_000, "travel": 3_000]
    /// At or above this fraud score a claim is refused without review.
    static let rejectScore = 0.85
    /// At or above this score (or with any flag) a person reviews the claim.
    static let reviewScore = 0.30
    /// Claims above this total are always reviewed.
    static let reviewAmount = 4_000.0

    /// Checks a claim as it arrives; a bad claim fails its run with this error (not retried).
    static func validate(_ claim: Claim) -> String? {
        if claim.claimId.isEmpty { return "claim has an empty claimId" }
        if claim.items.isEmpty { return "claim \(claim.claimId) has no line items" }
        for (index, item) in claim.items.enumerated() where !(item.amount > 0 && item.amount.isFinite) {
            return "claim \(claim.claimId): item \(index + 1) (\(item.description)) has amount \(item.amount); it must be a positive number"
        }
        if claim.policyAgeDays < 0 { return "claim \(claim.claimId): policyAgeDays is negative" }
        if claim.priorClaims < 0 { return "claim \(claim.claimId): priorClaims is negative" }
        if let seconds = claim.reviewSeconds, !(seconds > 0 && seconds.isFinite) {
            return "claim \(claim.claimId): reviewSeconds must be a positive number of seconds"
        }
        return nil
    }

    static func claimedTotal(_ claim: Claim) -> Double {
        (claim.items.reduce(0) { $0 + $1.amount } * 100).rounded() / 100
    }

    /// The total printed on the scanned form (`TOTAL EUR 1234.56`), if OCR read it.
    static func scannedTotal(in text: String) -> Double? {
        for line in text.split(whereSeparator: \.isNewline).reversed() {
            let upper = line.uppercased()
            guard let range = upper.range(of: "TOTAL") else { continue }
            let rest = upper[range.upperBound...]
            // The first number after TOTAL: digits with at most one decimal point (OCR may add spaces).
            var number = ""
            for character in rest {
                if character.isNumber || (character == "." && !number.isEmpty && !number.contains(".")) {
                    number.append(character)
                } else if !number.isEmpty, character != "," {
                    break
                }
            }
            if let value = Double(number) { return value }
        }
        return nil
    }

    /// The description of loss (the lines between `Description of loss` and `Items`), or the whole
    /// text when OCR lost those headings: what the embedding model classifies.
    static func description(in text: String) -> String {
        let lines = text.split(whereSeparator: \.isNewline).map(String.init)
        guard let start = lines.firstIndex(where: { $0.lowercased().contains("description") }) else { return text }
        let end = lines[(start + 1)...].firstIndex(where: { $0.lowercased().hasPrefix("items") }) ?? lines.endIndex
        let body = lines[(start + 1)..<end].joined(separator: " ").trimmingCharacters(in: .whitespaces)
        return body.isEmpty ? text : body
    }

    /// Relative difference between the claimed total and the scanned one (0 when they agree).
    static func mismatch(claimed: Double, scanned: Double?) -> Double {
        guard let scanned, claimed > 0 else { return 0 }
        return abs(claimed - scanned) / claimed
    }

    static func features(for claim: Claim, ocr: OCRResult, document: DocumentClass) -> FraudFeatures {
        let total = claimedTotal(claim)
        return FraudFeatures(
            logAmount: log(max(total, 1)), itemCount: Double(claim.items.count),
            policyAgeDays: Double(claim.policyAgeDays), priorClaims: Double(claim.priorClaims),
            fraudSimilarity: document.fraudSimilarity,
            amountMismatch: mismatch(claimed: total, scanned: scannedTotal(in: ocr.text)),
            ocrConfidence: Double(ocr.confidence))
    }

    /// The rule findings that send a claim to a person whatever its score, in a fixed order.
    static func flags(for claim: Claim, ocr: OCRResult, document: DocumentClass) -> [String] {
        var flags: [String] = []
        let total = claimedTotal(claim)
        let scanned = scannedTotal(in: ocr.text)
        if scanned == nil {
            flags.append("scan total unreadable")
        } else if mismatch(claimed: total, scanned: scanned) > 0.02 {
            flags.append(String(format: "claimed %.2f but the scan says %.2f", total, scanned ?? 0))
        }
        if ocr.confidence < 40 { flags.append("OCR confidence \(ocr.confidence)") }
        if let limit = coverLimits[document.category], total > limit {
            flags.append(String(format: "%.2f over the %@ cover limit %.0f", total, document.category, limit))
        }
        if total > reviewAmount { flags.append(String(format: "amount %.2f above %.0f", total, reviewAmount)) }
        return flags
    }

    enum Route: Equatable, Sendable {
        case approve
        case review(reasons: [String])
        case reject(reason: String)
    }

    static func route(score: Double, flags: [String]) -> Route {
        if score >= rejectScore { return .reject(reason: String(format: "fraud score %.2f", score)) }
        var reasons = flags
        if score >= reviewScore { reasons.append(String(format: "fraud score %.2f", score)) }
        return reasons.isEmpty ? .approve : .review(reasons: reasons)
    }
}
