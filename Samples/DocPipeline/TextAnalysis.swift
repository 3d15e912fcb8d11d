import Foundation

/// The deterministic text processing behind the activities: plain Swift, no model, no network.
/// Same input, same output, on every machine.
enum TextAnalysis {
    // MARK: - Extraction

    /// Collapses every run of whitespace (newlines included) to one space and trims the ends.
    static func normalize(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// Splits at `.`, `!` or `?` followed by whitespace or the end of the text.
    static func sentences(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        let characters = Array(text)
        for (i, character) in characters.enumerated() {
            current.append(character)
            let endsSentence = ".!?".contains(character) && (i + 1 == characters.count || characters[i + 1].isWhitespace)
            if endsSentence {
                let sentence = current.trimmingCharacters(in: .whitespaces)
                if !sentence.isEmpty { result.append(sentence) }
                current = ""
            }
        }
        let rest = current.trimmingCharacters(in: .whitespaces)
        if !rest.isEmpty { result.append(rest) }
        return result
    }

    /// Lower-cased words: runs of letters and digits ("l'erreur" gives "l" and "erreur").
    static func words(_ text: String) -> [String] {
        text.lowercased().split { !($0.isLetter || $0.isNumber) }.map(String.init)
    }

    // MARK: - Classification

    /// Keywords per category, in English, German and French. The order of this array breaks ties.
    static let categories: [(name: String, keywords: Set<String>)] = [
        ("invoice", ["invoice", "payment", "due", "amount", "total", "vat", "bill", "paid", "iban", "remit",
                     "rechnung", "betrag", "zahlung", "fällig", "facture", "montant", "paiement", "échéance"]),
        ("insurance-claim", ["claim", "accident", "damage", "damaged", "policy", "insured", "incident", "vehicle",
                             "injury", "schaden", "versicherung", "unfall", "sinistre", "assurance", "dommages"]),
        ("contract", ["agreement", "party", "parties", "term", "terminate", "termination", "clause", "liability",
                      "signed", "vertrag", "kündigung", "laufzeit", "contrat", "résiliation", "signataires"]),
        ("support-ticket", ["error", "crash", "crashes", "bug", "broken", "login", "password", "fails", "failed",
                            "problem", "ticket", "fehler", "erreur", "problème", "panne", "bloqué", "connexion"]),
        ("report", ["quarterly", "revenue", "growth", "market", "results", "percent", "customers", "forecast",
                    "umsatz", "wachstum", "chiffre", "croissance"]),
    ]

    static func classify(_ words: [String]) -> Classification {
        var scores = categories.map { category in
            CategoryScore(category: category.name, hits: words.count(where: { category.keywords.contains($0) }))
        }
        // Stable sort: equal scores keep the order of `categories`.
        scores = scores.enumerated()
            .sorted { $0.element.hits != $1.element.hits ? $0.element.hits > $1.element.hits : $0.offset < $1.offset }
            .map(\.element)
        let total = scores.reduce(0) { $0 + $1.hits }
        guard let best = scores.first, best.hits > 0 else {
            return Classification(category: "other", confidence: 0, scores: scores)
        }
        return Classification(category: best.category, confidence: rounded(Double(best.hits) / Double(total)), scores: scores)
    }

    // MARK: - Summary

    /// The first sentence (at most 160 characters) and the five most frequent content words.
    static func summarize(_ document: ExtractedDocument) -> Summary {
        var lead = document.sentences.first ?? document.title
        if lead.count > 160 { lead = String(lead.prefix(159)) + "…" }
        return Summary(summary: lead, keywords: keywords(TextAnalysis.words(document.text), count: 5))
    }

    /// Most frequent words of four letters or more that are not common words; ties go to the word
    /// that appears first.
    static func keywords(_ words: [String], count: Int) -> [String] {
        var frequency: [String: (count: Int, first: Int)] = [:]
        for (i, word) in words.enumerated()
        where word.count >= 4 && !allStopwords.contains(word) && !fillerWords.contains(word) && !word.allSatisfy(\.isNumber) {
            frequency[word, default: (0, i)].count += 1
        }
        return frequency
            .sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.value.first < $1.value.first }
            .prefix(count)
            .map(\.key)
    }

    // MARK: - Language

    /// Very common words per language. The order of this array breaks ties.
    static let stopwords: [(language: String, words: Set<String>)] = [
        ("en", ["the", "and", "of", "to", "is", "in", "that", "for", "with", "was", "on", "are", "this", "please",
                "our", "we", "you", "it", "be", "has", "have", "from", "will", "after"]),
        ("de", ["der", "die", "das", "und", "ist", "nicht", "mit", "ein", "eine", "zu", "den", "von", "für", "wir",
                "sie", "bitte", "auf", "dem", "des", "wurde", "ihre", "nach", "bis", "unter", "mein", "einem", "sich",
                "bei", "im"]),
        ("fr", ["le", "la", "les", "et", "est", "une", "un", "des", "du", "pour", "dans", "que", "nous", "vous",
                "pas", "sur", "au", "avec", "depuis", "mon", "je", "ne", "votre"]),
        ("es", ["el", "los", "las", "y", "es", "una", "del", "para", "en", "por", "con", "no", "se", "su", "al",
                "como", "pero", "usted"]),
    ]

    /// Greetings and courtesy words: frequent in letters, useless as keywords.
    static let fillerWords: Set<String> = [
        "dear", "please", "find", "kind", "regards", "hello", "thanks", "thank", "best", "would", "could", "also",
        "sehr", "geehrte", "damen", "herren", "freundlichen", "grüßen", "bonjour", "merci", "cordialement",
    ]

    static let allStopwords: Set<String> = stopwords.reduce(into: Set<String>()) { $0.formUnion($1.words) }

    static func detectLanguage(_ words: [String]) -> LanguageGuess {
        let hits = stopwords.map { entry in (entry.language, words.count(where: { entry.words.contains($0) })) }
        let total = hits.reduce(0) { $0 + $1.1 }
        // `max(by:)` returns the last of equal maxima; reverse so that the first listed language wins ties.
        guard let best = hits.reversed().max(by: { $0.1 < $1.1 }), best.1 > 0 else {
            return LanguageGuess(language: "und", confidence: 0)
        }
        return LanguageGuess(language: best.0, confidence: rounded(Double(best.1) / Double(total)))
    }

    // MARK: - Entities

    static func entities(_ text: String) -> Entities {
        let emails = text.split(whereSeparator: \.isWhitespace)
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "<>()[],;:.!?\"'")) }
            .filter { token in
                guard let at = token.firstIndex(of: "@") else { return false }
                return at != token.startIndex && token[token.index(after: at)...].contains(".")
            }
        let dates = text.matches(of: #/\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{4})\b/#).map { String($0.output) }
        let amounts = text.matches(of: #/(?:[$€£]\s?\d[\d,.]*\d|\b\d[\d,.]*\d?\s?(?:EUR|USD|CHF|GBP|€))/#)
            .map { String($0.output) }
        return Entities(emails: unique(emails), dates: unique(dates), amounts: unique(amounts), names: unique(names(text)))
    }

    /// Runs of two or three capitalised words ("Anna Schmidt", "Acme Logistics GmbH"), skipping
    /// common words such as "The" that start sentences.
    static func names(_ text: String) -> [String] {
        var found: [String] = []
        var run: [String] = []
        func flush() {
            if run.count >= 2 { found.append(run.prefix(3).joined(separator: " ")) }
            run = []
        }
        for raw in text.split(whereSeparator: \.isWhitespace) {
            let word = raw.trimmingCharacters(in: CharacterSet(charactersIn: ",;:.!?()\"'"))
            let capitalised = word.first?.isUppercase == true && word.count > 1 && word.allSatisfy(\.isLetter)
                && !allStopwords.contains(word.lowercased())
            if capitalised { run.append(word) } else { flush() }
            // A sentence or clause ends at punctuation: names do not run across it.
            if let last = raw.last, ",;:.!?".contains(last) { flush() }
        }
        flush()
        return found
    }

    // MARK: - Helpers

    static func unique(_ values: [String]) -> [String] {
        var seen: Set<String> = []
        return values.filter { seen.insert($0).inserted }
    }

    static func rounded(_ value: Double) -> Double { (value * 100).rounded() / 100 }
}
