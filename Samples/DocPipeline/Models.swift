import Foundation

// The values that flow between the workflow and its activities. Every one is Codable: the engine
// records activity inputs and results in the journal as JSON, and replays them after a crash.

/// A document as it is submitted: `{"id": "doc-1", "title": "...", "text": "..."}`.
struct Document: Codable, Sendable {
    var id: String
    var title: String
    var text: String
}

/// What `Extract` reads out of a document: clean text, its sentences and a few counted facts.
struct ExtractedDocument: Codable, Sendable {
    var documentID: String
    var title: String
    /// The text with runs of whitespace collapsed to one space.
    var text: String
    var sentences: [String]
    var wordCount: Int
    var characterCount: Int
}

/// The label `Classify` gives a document, with the keyword hits that decided it.
struct Classification: Codable, Sendable {
    var category: String
    /// Share of all keyword hits that went to the winning category, 0...1.
    var confidence: Double
    /// Keyword hits per category, best first (an array, not a dictionary: the order is stable).
    var scores: [CategoryScore]
}

struct CategoryScore: Codable, Sendable {
    var category: String
    var hits: Int
}

/// `Summarize`'s result: the lead sentence and the most frequent content words.
struct Summary: Codable, Sendable {
    var summary: String
    var keywords: [String]
}

/// `DetectLanguage`'s guess, from counts of very common words.
struct LanguageGuess: Codable, Sendable {
    /// ISO 639-1 code, or "und" when no language's common words were found.
    var language: String
    var confidence: Double
}

/// What `ExtractEntities` found: e-mail addresses, dates, money amounts and capitalised names.
struct Entities: Codable, Sendable {
    var emails: [String]
    var dates: [String]
    var amounts: [String]
    var names: [String]
}

/// The record the workflow assembles and `Store` writes as `<document id>.json`.
struct DocumentRecord: Codable, Sendable {
    /// Drawn from `ctx.uuid()`: the same on every replay of the run.
    var recordID: String
    var documentID: String
    var title: String
    /// `ctx.now` when the record was assembled, as recorded in the run's history.
    var processedAt: Date
    var wordCount: Int
    var category: String
    var categoryConfidence: Double
    var language: String
    var summary: String
    var keywords: [String]
    var entities: Entities
}

/// `Store`'s result: where the record was written.
struct StoredRecord: Codable, Sendable {
    var recordID: String
    var documentID: String
    var path: String
    var bytes: Int
    /// The idempotency key of the `Store` activity that wrote the file (stable across attempts).
    var writtenBy: String
}
