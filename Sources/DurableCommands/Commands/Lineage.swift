import ArgumentParser
import Durable
import DurableServer
import Foundation

/// `lineage <id>`: which model made each decision of a run; `lineage --model NAME[@VERSION]`: which
/// runs a model (version) touched.
struct Lineage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Which model served each activity attempt of a run, or which runs a model version touched.",
        discussion: "With a run ID or workflow ID: every activity attempt of the run with the model that served it "
            + "(name, version, weights digest, metadata), the SHA-256 of its input and output, its slot and timing; "
            + "then the same for each child run it started, and theirs (at most 100 runs). "
            + "With --model NAME[@VERSION]: the runs, newest first, with at least one attempt served by that model; "
            + "it reads the history of every run it scans, so it is bounded by --limit (and --since).")

    @OptionGroup var options: JournalOptions

    @Argument(help: "Run ID, or workflow ID (its newest run).", transform: OptionValue.nonEmpty)
    var id: String?

    @Option(
        help: ArgumentHelp("Find the runs this model served: NAME or NAME@VERSION.", valueName: "name[@version]"),
        transform: { try ModelQuery($0) })
    var model: ModelQuery?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "With --model: only runs started at or after this time: ISO 8601 (2026-11-29T09:00:00Z, 2026-11-29) or "
                + "an age (90s, 30m, 2h, 7d; at most 100 years).",
            valueName: "time"),
        transform: { try OptionValue.time($0) })
    var since: Date?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "With --model: scan at most this many runs, newest first, 0 to 1000000 (default: 10000).",
            valueName: "count"),
        transform: { try OptionValue.integer($0, in: OptionLimits.limit) })
    var limit: Int?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        switch (id, model) {
        case (nil, nil): throw ValidationError("give a run ID or workflow ID, or --model NAME[@VERSION]")
        case (.some, .some): throw ValidationError("give a run ID or workflow ID, or --model, not both")
        case (.some, nil) where since != nil || limit != nil:
            throw ValidationError("--since and --limit go with --model only")
        default: break
        }
    }

    func run() async throws {
        let client = try await options.openClient(encryptedPayloads: .markMissing)
        if let model {
            try await runsTouched(by: model, client)
        } else if let id {
            try await lineage(of: id, client)
        }
    }

    // MARK: - One run

    /// Most runs one `lineage <id>` reads: the run and its descendants.
    static let maximumRuns = 100

    private func lineage(of id: String, _ client: DurableClient) async throws {
        let (run, events) = try await client.history(id)
        var budget = Self.maximumRuns - 1
        var notShown = 0
        let root = try await LineageNode.read(run, events, parentSeq: nil, client, budget: &budget, notShown: &notShown)
        if json {
            var object = root.json
            if notShown > 0 { object["childRunsNotShown"] = notShown }
            try Format.printJSON(object)
            return
        }
        root.print()
        if notShown > 0 {
            print("\(notShown) more child run(s) not shown: lineage reads at most \(Self.maximumRuns) runs; "
                + "give a child's run ID to see its own")
        }
    }

    // MARK: - Runs a model touched

    private func runsTouched(by query: ModelQuery, _ client: DurableClient) async throws {
        let limit = limit ?? 10_000
        // One more than the limit says whether runs were left unscanned.
        var runs = try await client.runs(RunFilter(startedAfter: since, limit: limit + 1))
        let limitReached = runs.count > limit
        if limitReached { runs.removeLast(runs.count - limit) }
        var touched: [(run: RunRecord, attempts: [LineageAttempt])] = []
        var unreadable = 0
        for run in runs {
            let events: [HistoryEvent]
            do {
                events = try await client.journal.history(run, from: 0)
            } catch {
                unreadable += 1
                let warning = "run \(run.runID): its history cannot be read (\(error)); skipped"
                FileHandle.standardError.write(Data("warning: \(warning.escaped)\n".utf8))
                continue
            }
            let matching = LineageAttempt.all(in: events).filter { query.matches($0.details) }
            if !matching.isEmpty { touched.append((run, matching)) }
        }
        if json {
            try Format.printJSON([
                "model": query.name, "version": query.version ?? NSNull(), "scanned": runs.count,
                "limitReached": limitReached, "unreadable": unreadable,
                "runs": touched.map { entry in
                    var object = RunJSON.run(entry.run)
                    object["attempts"] = entry.attempts.count
                    object["versions"] = Self.distinct(entry.attempts.map { $0.details?.modelVersion ?? "" })
                    object["activities"] = Self.distinct(entry.attempts.map(\.activityType))
                    return object
                },
            ] as [String: Any])
            return
        }
        if !touched.isEmpty {
            print(Format.table(
                ["RUN ID", "WORKFLOW ID", "TYPE", "STATUS", "STARTED", "ATTEMPTS", "VERSIONS", "ACTIVITIES"],
                touched.map { entry in
                    [entry.run.runID, entry.run.workflowID, entry.run.workflowType, entry.run.status.rawValue,
                     Format.time(entry.run.createdAt), "\(entry.attempts.count)",
                     Self.distinct(entry.attempts.map { $0.details?.modelVersion ?? "" }).joined(separator: ","),
                     Self.distinct(entry.attempts.map(\.activityType)).joined(separator: ",")]
                }))
        }
        var summary = "\(touched.count) of \(runs.count) run(s) scanned were served by model \(query.label.escaped)"
        if limitReached { summary += " (--limit \(limit) reached: older runs were not scanned)" }
        print(summary)
    }

    private static func distinct(_ values: [String]) -> [String] {
        var seen: Set<String> = []
        return values.filter { seen.insert($0).inserted }
    }
}

/// A run's attempts and, through the children its history started, those of its descendants.
struct LineageNode {
    var run: RunRecord
    /// The sequence number of the decision that started this run, in its parent.
    var parentSeq: Int?
    var attempts: [LineageAttempt]
    var children: [LineageNode] = []
    /// Children whose history could not be read (pruned, for instance), with why.
    var unreadable: [(child: ChildSummary, reason: String)] = []

    /// Reads `run`'s children depth first while `budget` runs remain; counts the rest in `notShown`.
    static func read(
        _ run: RunRecord, _ events: [HistoryEvent], parentSeq: Int?, _ client: DurableClient,
        budget: inout Int, notShown: inout Int
    ) async throws -> LineageNode {
        var node = LineageNode(run: run, parentSeq: parentSeq, attempts: LineageAttempt.all(in: events))
        for child in ChildSummary.from(events) {
            guard budget > 0 else {
                notShown += 1
                continue
            }
            budget -= 1
            do {
                let (childRun, childEvents) = try await client.history(child.runID)
                node.children.append(try await read(
                    childRun, childEvents, parentSeq: child.seq, client, budget: &budget, notShown: &notShown))
            } catch let error as JournalError where error.code == .runNotFound {
                node.unreadable.append((child, "not in the journal (pruned?)"))
            }
        }
        return node
    }

    func print() {
        let heading = "run \(run.runID.escaped)  workflow ID \(run.workflowID.escaped)  \(run.workflowType.escaped)  \(run.status.rawValue)"
        if let parentSeq {
            Swift.print("\nchild \(heading)  (started by seq \(parentSeq) of its parent)")
        } else {
            Swift.print(heading)
        }
        if attempts.isEmpty {
            Swift.print("no activity attempt has ended in this run")
        } else {
            Swift.print(Format.table(
                ["#", "SEQ", "ACTIVITY", "ATTEMPT", "OUTCOME", "MODEL", "WEIGHTS", "INPUT", "OUTPUT", "SLOT", "RUN", "METADATA"],
                attempts.map(\.row)))
            let served = attempts.count { $0.details?.model != nil }
            Swift.print("\(served) of \(attempts.count) attempt(s) recorded a model; hashes are SHA-256, first 12 hex digits (--json: whole)")
        }
        for (child, reason) in unreadable {
            Swift.print("child run \(child.runID.escaped) (seq \(child.seq), \(child.workflowType.escaped)): \(reason)")
        }
        for child in children { child.print() }
    }

    var json: [String: Any] {
        var object = RunJSON.run(run)
        object["attempts"] = attempts.map(\.json)
        if let parentSeq { object["parentSeq"] = parentSeq }
        if !children.isEmpty { object["children"] = children.map(\.json) }
        if !unreadable.isEmpty {
            object["unreadableChildren"] = unreadable.map { ["runID": $0.child.runID, "seq": $0.child.seq, "reason": $0.reason] }
        }
        return object
    }
}

/// `--model NAME[@VERSION]`: the version follows the last `@`.
struct ModelQuery: Sendable {
    var name: String
    var version: String?

    init(_ text: String) throws {
        guard !text.isEmpty else { throw BadOptionValue("must not be empty") }
        guard let at = text.lastIndex(of: "@") else {
            name = text
            return
        }
        name = String(text[..<at])
        version = String(text[text.index(after: at)...])
        guard !name.isEmpty else { throw BadOptionValue("the model name before @ is empty") }
        guard version?.isEmpty == false else { throw BadOptionValue("the version after @ is empty") }
    }

    var label: String { version.map { "\(name)@\($0)" } ?? name }

    func matches(_ details: AttemptDetails?) -> Bool {
        guard let details, details.model == name else { return false }
        return version == nil || details.modelVersion == version
    }
}

extension LineageAttempt {
    var row: [String] {
        func short(_ hash: String?) -> String { hash.map { String($0.prefix(12)) } ?? "-" }
        let slot = details?.slot.map { slot in slot + (details?.cold.map { $0 ? " cold" : " warm" } ?? "") } ?? ""
        let metadata = (details?.modelMetadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return [
            "\(event.index)", "\(event.seq)", activityType, "\(event.attempt)", outcome, details?.modelLabel ?? "-",
            short(details?.weightsSHA256), short(details?.inputSHA256), short(details?.outputSHA256), slot,
            details?.runMs.map { $0 >= 100 ? "\(Int($0.rounded())) ms" : "\(($0 * 10).rounded() / 10) ms" } ?? "",
            Format.clipped(metadata.joined(separator: ","), to: 60),
        ]
    }

    var json: [String: Any] {
        var object: [String: Any] = [
            "index": event.index, "time": RunJSON.time(event.time), "seq": event.seq, "activityType": activityType,
            "attempt": event.attempt, "outcome": outcome,
            "model": details?.model.map { name -> Any in
                var model: [String: Any] = ["name": name, "version": details?.modelVersion ?? ""]
                model["weightsSHA256"] = details?.weightsSHA256 ?? NSNull()
                model["metadata"] = details?.modelMetadata ?? [:]
                return model
            } ?? NSNull(),
            "inputSHA256": details?.inputSHA256 ?? NSNull(), "outputSHA256": details?.outputSHA256 ?? NSNull(),
        ]
        if let details {
            if let slot = details.slot { object["slot"] = slot }
            if let cold = details.cold { object["cold"] = cold }
            if let pid = details.pid { object["pid"] = pid }
            if let queueMs = details.queueMs { object["queueMs"] = queueMs }
            if let warmUpMs = details.warmUpMs { object["warmUpMs"] = warmUpMs }
            if let runMs = details.runMs { object["runMs"] = runMs }
        }
        return object
    }
}
