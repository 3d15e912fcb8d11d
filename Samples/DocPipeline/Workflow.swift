import Durable
import Foundation

/// Extract → (Classify ‖ Summarize ‖ DetectLanguage ‖ ExtractEntities) → Store.
///
/// Workflow code is deterministic: it only awaits activities through `ctx`, and takes time and
/// identifiers from `ctx.now` and `ctx.uuid()`, which replay returns unchanged. `async let` and task
/// groups are fine: the engine runs their children on the run's own deterministic executor.
struct ProcessDocument: Workflow {
    func run(_ ctx: WorkflowContext, input: Document) async throws -> StoredRecord {
        // 1. Sequential: everything else needs the extracted text.
        let extracted = try await ctx.execute(Extract.self, input, options: .extract)

        // 2. Four analyses at once: two with `async let`, two in a task group.
        async let classification = ctx.execute(Classify.self, extracted, options: .analysis)
        async let summary = ctx.execute(Summarize.self, extracted, options: .analysis)
        let (language, entities) = try await withThrowingTaskGroup(of: Enrichment.self) { group in
            group.addTask { .language(try await ctx.execute(DetectLanguage.self, extracted, options: .analysis)) }
            group.addTask { .entities(try await ctx.execute(ExtractEntities.self, extracted, options: .analysis)) }
            var language = LanguageGuess(language: "und", confidence: 0)
            var entities = Entities(emails: [], dates: [], amounts: [], names: [])
            for try await result in group {
                switch result {
                case .language(let value): language = value
                case .entities(let value): entities = value
                }
            }
            return (language, entities)
        }

        let (labels, digest) = try await (classification, summary)

        // 3. Assemble the record (deterministic ID and timestamp) and store it.
        let record = DocumentRecord(
            recordID: ctx.uuid().uuidString.lowercased(),
            documentID: extracted.documentID,
            title: extracted.title,
            processedAt: ctx.now,
            wordCount: extracted.wordCount,
            category: labels.category,
            categoryConfidence: labels.confidence,
            language: language.language,
            summary: digest.summary,
            keywords: digest.keywords,
            entities: entities)
        return try await ctx.execute(Store.self, record, options: .store)
    }

    /// The results of the task group's children.
    private enum Enrichment: Sendable {
        case language(LanguageGuess)
        case entities(Entities)
    }
}

extension ActivityOptions {
    /// Reading a document: generous timeout, a few quick retries; an empty document is not retried.
    static let extract = ActivityOptions(
        startToClose: .seconds(10),
        retry: .exponential(initial: .milliseconds(200), maxAttempts: 5, nonRetryable: ["EmptyDocument"]))

    /// A model call: short timeout (the simulated models answer within a second), four attempts.
    static let analysis = ActivityOptions(
        startToClose: .seconds(5),
        retry: .exponential(initial: .milliseconds(250), coefficient: 2, maximum: .seconds(5), maxAttempts: 4))

    /// Writing the record is idempotent, so it may be retried many times.
    static let store = ActivityOptions(
        startToClose: .seconds(5),
        retry: .exponential(initial: .milliseconds(100), maximum: .seconds(2), maxAttempts: 10))
}
