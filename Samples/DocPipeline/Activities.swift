import Durable
import Foundation

// The activities: the side effects of the pipeline. Each one announces itself on stdout, waits a
// little as a model call would, then does real text processing. Activities run at least once: after
// a crash, an attempt whose result was not recorded runs again, so each must be safe to repeat.

/// Reads a document: normalises whitespace, splits sentences, counts words.
struct Extract: Activity {
    func run(_ ctx: ActivityContext, input: Document) async throws -> ExtractedDocument {
        announce(ctx, document: input.id)
        try await simulateModelLatency(ctx, document: input.id, base: 250, spread: 250)
        let text = TextAnalysis.normalize(input.text)
        guard !text.isEmpty else {
            throw ApplicationError("document \(input.id) has no text", type: "EmptyDocument", nonRetryable: true)
        }
        return ExtractedDocument(
            documentID: input.id, title: TextAnalysis.normalize(input.title), text: text,
            sentences: TextAnalysis.sentences(text), wordCount: TextAnalysis.words(text).count,
            characterCount: text.count)
    }
}

/// Labels a document (invoice, insurance claim, contract, support ticket, report) by keyword hits.
///
/// Runs in a warm pool (see main.swift): each slot holds a loaded ``ClassifierModel``, so only the
/// first attempt on a slot pays for the load.
struct Classify: Activity {
    let model: ClassifierModel

    func run(_ ctx: ActivityContext, input: ExtractedDocument) async throws -> Classification {
        announce(ctx, document: input.documentID)
        try await simulateModelLatency(ctx, document: input.documentID, base: 400, spread: 300)
        return model.classify(TextAnalysis.words(input.title + " " + input.text))
    }
}

/// The classifier's "weights": a word-to-category table, built once per pool slot. Loading takes
/// about 300 ms, as a small model's would.
struct ClassifierModel: Sendable {
    let loadedAt = Date()

    static func load() async throws -> ClassifierModel {
        try await Task.sleep(for: .milliseconds(300))
        return ClassifierModel()
    }

    func classify(_ words: [String]) -> Classification { TextAnalysis.classify(words) }
}

/// Picks the lead sentence and the top keywords.
struct Summarize: Activity {
    func run(_ ctx: ActivityContext, input: ExtractedDocument) async throws -> Summary {
        announce(ctx, document: input.documentID)
        try await simulateModelLatency(ctx, document: input.documentID, base: 450, spread: 300)
        return TextAnalysis.summarize(input)
    }
}

/// Guesses the language (en, de, fr, es) from counts of very common words.
struct DetectLanguage: Activity {
    func run(_ ctx: ActivityContext, input: ExtractedDocument) async throws -> LanguageGuess {
        announce(ctx, document: input.documentID)
        try await simulateModelLatency(ctx, document: input.documentID, base: 300, spread: 200)
        return TextAnalysis.detectLanguage(TextAnalysis.words(input.text))
    }
}

/// Finds e-mail addresses, dates, money amounts and names.
struct ExtractEntities: Activity {
    func run(_ ctx: ActivityContext, input: ExtractedDocument) async throws -> Entities {
        announce(ctx, document: input.documentID)
        try await simulateModelLatency(ctx, document: input.documentID, base: 350, spread: 250)
        return TextAnalysis.entities(input.text)
    }
}

/// Writes the record as `<output folder>/<document id>.json`, atomically (temporary file, then
/// rename). Running it twice writes the same bytes to the same file, so a retry is harmless. The
/// folder is `$DOC_PIPELINE_OUT`, or `./out`.
struct Store: Activity {
    /// What the file holds: the record and the key of the activity that wrote it.
    struct File: Codable {
        var idempotencyKey: String
        var record: DocumentRecord
    }

    func run(_ ctx: ActivityContext, input: DocumentRecord) async throws -> StoredRecord {
        announce(ctx, document: input.documentID)
        try await simulateModelLatency(ctx, document: input.documentID, base: 150, spread: 150)
        let folder = URL(
            fileURLWithPath: ProcessInfo.processInfo.environment["DOC_PIPELINE_OUT"] ?? "./out", isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent(Self.fileName(for: input.documentID)).standardizedFileURL
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(File(idempotencyKey: ctx.idempotencyKey, record: input))
        try data.write(to: file, options: .atomic)
        return StoredRecord(
            recordID: input.recordID, documentID: input.documentID, path: file.path, bytes: data.count,
            writtenBy: ctx.idempotencyKey)
    }

    /// The document ID made safe as a file name: letters, digits, `-`, `_` and `.`, never a path.
    static func fileName(for documentID: String) -> String {
        var name = String(documentID.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" })
        if name.isEmpty || name.hasPrefix(".") { name = "_" + name }
        return name + ".json"
    }
}

// MARK: - Helpers

/// Prints one line such as `  [pid 1234] Classify doc-3 (attempt 1)`.
///
/// Written straight to file descriptor 1, not through `print`'s buffer, so that the line is in the
/// worker's log even when the process is killed a moment later.
func announce(_ ctx: ActivityContext, document: String) {
    let slot = ctx.slot == ctx.activityType ? "" : ", slot \(ctx.slot)"
    let line = "  [pid \(ProcessInfo.processInfo.processIdentifier)] \(ctx.activityType) \(document) (attempt \(ctx.attempt)\(slot))\n"
    FileHandle.standardOutput.write(Data(line.utf8))
}

/// Sleeps as long as a small model would take: `base` plus up to `spread` milliseconds, fixed per
/// activity and document (a stable hash, not `hashValue`, which changes between processes).
/// Activities may sleep; workflows may not. Cancellation (timeout, worker stop) ends the sleep.
func simulateModelLatency(_ ctx: ActivityContext, document: String, base: Int, spread: Int) async throws {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
    for byte in (ctx.activityType + "/" + document).utf8 {
        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
    }
    try await Task.sleep(for: .milliseconds(base + Int(hash % UInt64(max(spread, 1)))))
}
