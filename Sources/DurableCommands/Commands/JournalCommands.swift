import ArgumentParser
import Durable
import Foundation

struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal", abstract: "Check, measure, compact and copy the journal; delete old closed runs.",
        subcommands: [Check.self, Stats.self, Backup.self, Prune.self, Compact.self, Copy.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the file, every run's history and the audit log; exit 0 when healthy, 3 when not.")

        @OptionGroup var options: JournalOptions

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let engine = try await options.openClient()
            let json = self.json
            let report = try await engine.journal.check { done, total in
                if !json && total >= 1_000 { printProgress("checked \(done)/\(total) runs") }
            }
            if json {
                try Format.printJSON([
                    "healthy": report.isHealthy, "formatVersion": report.formatVersion, "integrity": report.integrity,
                    "runs": report.runsChecked, "events": report.eventsChecked, "auditEntries": report.auditEntriesChecked,
                    "outOfLinePayloads": report.outOfLinePayloadsChecked, "problems": report.problems,
                    "unverifiedPayloads": report.unverifiedPayloads,
                ] as [String: Any])
            } else {
                print("journal \(options.path.escaped): format \(report.formatVersion), \(report.runsChecked) runs, "
                      + "\(report.eventsChecked) events, \(report.auditEntriesChecked) audit entries"
                      + (report.outOfLinePayloadsChecked == 0 ? "" : ", \(report.outOfLinePayloadsChecked) payloads stored out of line"))
                print("file integrity: " + report.integrity.prefix(20).map(\.escaped).joined(separator: "\n  "))
                for (keyID, count) in report.unverifiedPayloads.sorted(by: { $0.key < $1.key }) {
                    print("not verified: \(count) payload(s) encrypted with key '\(keyID.escaped)', not held here (frames checked)")
                }
                for problem in report.problems.prefix(50) { print("problem: \(problem.escaped)") }
                if report.problems.count > 50 { print("… and \(report.problems.count - 50) more problems") }
                print(report.isHealthy ? "healthy" : "NOT healthy")
            }
            if !report.isHealthy {
                throw CommandFailure(
                    message: "journal \(options.path) is not healthy (\(report.problems.count) problem(s), integrity "
                        + "\(report.integrity == ["ok"] ? "ok" : "failed"))", exitCode: .journal)
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Size, runs by status, events and payload compression.")

        @OptionGroup var options: JournalOptions

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let stats = try await options.openClient().journal.stats()
            let ratio = stats.storedPayloadBytes == 0 ? 1 : Double(stats.rawPayloadBytes) / Double(stats.storedPayloadBytes)
            let byStatus = Dictionary(uniqueKeysWithValues: stats.runsByStatus.map { ($0.key.rawValue, $0.value) })
            if json {
                try Format.printJSON([
                    "formatVersion": stats.formatVersion, "fileBytes": stats.fileBytes, "walBytes": stats.walBytes,
                    "runs": stats.runs, "runsByStatus": byStatus, "events": stats.events,
                    "storedPayloadBytes": stats.storedPayloadBytes, "rawPayloadBytes": stats.rawPayloadBytes,
                    "compressionRatio": (ratio * 100).rounded() / 100, "queuedSignals": stats.queuedSignals,
                    "packedRuns": stats.packedRuns, "outOfLinePayloads": stats.outOfLinePayloads,
                    "outOfLineBytes": stats.outOfLineBytes,
                ] as [String: Any])
                return
            }
            print("""
                journal:   \(options.path.escaped) (format \(stats.formatVersion))
                size:      \(Format.bytes(stats.fileBytes))\(stats.walBytes > 0 ? " + WAL \(Format.bytes(stats.walBytes))" : "")
                runs:      \(stats.runs)\(stats.runs == 0 ? "" : " (" + RunStatus.allCases.compactMap { status in
                    stats.runsByStatus[status].map { "\(status.rawValue) \($0)" } }.joined(separator: ", ") + ")")
                events:    \(stats.events)\(stats.events == 0 ? "" : String(format: ", %.1f bytes of file per event", Double(stats.fileBytes) / Double(stats.events)))
                payloads:  \(Format.bytes(Int64(stats.rawPayloadBytes))) written, \(Format.bytes(Int64(stats.storedPayloadBytes))) stored (\(String(format: "%.2f", ratio))×)
                packed:    \(stats.packedRuns) closed run(s) in one compressed block each
                large:     \(stats.outOfLinePayloads) payload(s) stored out of line, \(Format.bytes(Int64(stats.outOfLineBytes))) (in the payloads stored)
                signals:   \(stats.queuedSignals) queued
                """)
        }
    }

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a consistent copy of the journal to a new file, while workers keep running.")

        @OptionGroup var options: JournalOptions

        @Argument(help: "The copy to write (must not exist).", transform: OptionValue.nonEmpty)
        var destination: String

        func run() async throws {
            let bytes = try await options.openClient().journal.backup(to: destination)
            print("backed up \(options.path.escaped) to \(destination.escaped) (\(Format.bytes(bytes)))")
        }
    }

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete closed runs that closed longer ago than --older-than (retention).",
            discussion: "Open runs are never deleted. Run `journal compact` afterwards to give the space back to the file system.")

        @OptionGroup var options: JournalOptions

        @Option(
            parsing: .unconditional,
            help: ArgumentHelp("Age of the runs to delete: 90s, 30m, 2h, 7d (at most 100 years).", valueName: "age"),
            transform: OptionValue.age)
        var olderThan: TimeInterval

        @Option(
            help: ArgumentHelp(
                "Only runs with these closed statuses, comma-separated (default: all closed ones).", valueName: "status"),
            transform: OptionValue.statuses)
        var status: [RunStatus]?

        @Flag(help: "Count what would be deleted; delete nothing.")
        var dryRun = false

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            if let open = status?.first(where: \.isOpen) {
                throw ValidationError("--status \(open.rawValue): only closed runs can be deleted")
            }
        }

        func run() async throws {
            let statuses = status
            let cutoff = Date().addingTimeInterval(-olderThan)
            let json = self.json
            let client = try await options.openClient()
            func prune() async throws -> (runs: Int, events: Int) {
                try await client.journal.deleteClosedRuns(closedBefore: cutoff, statuses: statuses, dryRun: dryRun) { runs in
                    if !json { printProgress("deleted \(runs) runs") }
                }
            }
            // A dry run changes nothing and is not recorded.
            let what = "closed before \(Format.time(cutoff))"
                + (statuses.map { "; status " + $0.map(\.rawValue).joined(separator: ",") } ?? "")
            let deleted = dryRun ? try await prune() : try await audited(client, "prune", target: options.path, detail: what) { note in
                let deleted = try await prune()
                note.add("deleted \(deleted.runs) runs (\(deleted.events) events)")
                return deleted
            }
            if json {
                try Format.printJSON(["runs": deleted.runs, "events": deleted.events, "dryRun": dryRun,
                                      "closedBefore": Format.time(cutoff)] as [String: Any])
            } else {
                print("\(dryRun ? "would delete" : "deleted") \(deleted.runs) closed runs (\(deleted.events) events) "
                      + "closed before \(Format.time(cutoff))")
            }
        }
    }

    struct Compact: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pack closed histories into compressed blocks and give free space back to the file system.",
            discussion: """
                Each closed run's events become one compressed block (they compress far better together than \
                payload by payload), 100 runs per transaction; then the file is rebuilt (VACUUM), which also gives \
                back the space of pruned runs. Workers keep running; they wait for their commits during the rebuild.
                """)

        @OptionGroup var options: JournalOptions

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let client = try await options.openClient()
            let json = self.json
            let report = try await audited(client, "compact", target: options.path) { note in
                let report = try await client.journal.compact { done, total in
                    if !json { printProgress("packed \(done)/\(total) closed runs") }
                }
                note.add("packed \(report.packedRuns) runs, skipped \(report.skippedRuns)")
                return report
            }
            if json {
                try Format.printJSON([
                    "packedRuns": report.packedRuns, "skippedRuns": report.skippedRuns,
                    "bytesBefore": report.bytesBefore, "bytesAfter": report.bytesAfter,
                ] as [String: Any])
            } else {
                print("packed \(report.packedRuns) closed run(s)"
                      + (report.skippedRuns > 0 ? ", left \(report.skippedRuns) unreadable one(s) as they were (see journal check)" : "")
                      + "; file \(Format.bytes(report.bytesBefore)) → \(Format.bytes(report.bytesAfter))")
            }
        }
    }
}

extension JournalCommand {
    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy every run from one journal to another (SQLite to PostgreSQL and back).",
            discussion: """
                Each run (its record, whole history and queued signals) is written to the destination in one \
                transaction, oldest first; runs the destination has already are skipped, so an interrupted copy \
                can be run again. Stop the workers of the source first: the copy refuses while any holds a lease. \
                Point the workers at the destination afterwards.
                """)

        @Option(
            help: ArgumentHelp("The journal to copy: a SQLite file or a postgres:// URL.", valueName: "path|url"),
            transform: OptionValue.nonEmpty)
        var from: String

        @Option(
            help: ArgumentHelp("The journal to copy into (created if missing).", valueName: "path|url"),
            transform: OptionValue.nonEmpty)
        var to: String

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            let (source, destination) = (JournalConfiguration(from), JournalConfiguration(to))
            if source.backend == destination.backend && source.location == destination.location {
                throw ValidationError("--from and --to name the same journal")
            }
        }

        func run() async throws {
            let source = try await DurableClient(journal: JournalConfiguration(from, createIfMissing: false))
            let destination = try await DurableClient(journal: JournalConfiguration(to))
            let json = self.json
            // Recorded in the journal it writes, after the source's audit entries it copied there.
            let report = try await audited(
                destination, "copy", target: destination.journalLocation, detail: "from \(source.journalLocation)"
            ) { note in
                let report = try await copyJournal(from: source.journal, to: destination.journal) { done, total in
                    if !json && (done % 1_000 == 0 || done == total) { printProgress("copied \(done)/\(total) runs") }
                }
                note.add("copied \(report.copiedRuns) runs (\(report.copiedEvents) events, \(report.copiedSignals) signals), "
                         + "skipped \(report.skippedRuns), \(report.copiedAuditEntries) audit entries"
                         + (report.auditNotCopied == nil ? "" : " (the rest not copied)"))
                return report
            }
            await destination.journal.close()
            await source.journal.close()
            if let reason = report.auditNotCopied { printProgress("warning: \(reason)") }
            if json {
                try Format.printJSON([
                    "runs": report.copiedRuns, "events": report.copiedEvents, "signals": report.copiedSignals,
                    "skippedRuns": report.skippedRuns, "auditEntries": report.copiedAuditEntries,
                    "auditNotCopied": report.auditNotCopied ?? NSNull(),
                    "from": source.journalLocation, "to": destination.journalLocation,
                ] as [String: Any])
            } else {
                print("copied \(report.copiedRuns) run(s) (\(report.copiedEvents) events, \(report.copiedSignals) queued "
                      + "signal(s)) and \(report.copiedAuditEntries) audit entries from \(source.journalLocation.escaped) "
                      + "to \(destination.journalLocation.escaped)"
                      + (report.skippedRuns > 0 ? "; \(report.skippedRuns) run(s) were there already" : ""))
            }
        }
    }
}

/// A progress line on standard error (standard output stays for results).
func printProgress(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
