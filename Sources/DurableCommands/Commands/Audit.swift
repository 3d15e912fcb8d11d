import ArgumentParser
import Durable
import Foundation

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the journal's append-only audit log of control actions.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List audit entries, oldest first: the last ones, or those after --after.",
            discussion: """
                Each entry says who (user:<OS user>, token:<name>), from where, what, to which target, and how it \
                ended (ok, an error code or an HTTP status). Page forward with --after and the last seq printed. \
                `journal check` verifies that no entry was changed or removed.
                """)

        @OptionGroup var options: JournalOptions

        @Option(
            parsing: .unconditional,
            help: ArgumentHelp(
                "Only entries after this seq, 0 to 10^15; 0 for all from the first (default: the last ones).",
                valueName: "seq"),
            transform: { try OptionValue.integer($0, in: OptionLimits.auditSeq) })
        var after: Int?

        @Option(
            parsing: .unconditional,
            help: ArgumentHelp("At most this many entries, 0 to 1000000 (default: 100).", valueName: "count"),
            transform: { try OptionValue.integer($0, in: OptionLimits.limit) })
        var limit: Int = 100

        @Flag(help: "Print JSON: an array of entries.")
        var json = false

        func run() async throws {
            let client = try await options.openClient()
            let entries = if let after {
                try await client.auditLog(after: Int64(after), limit: limit)
            } else {
                Array(try await client.auditLog(limit: limit, newestFirst: true).reversed())
            }
            if json {
                let encoded = try JSONEncoder().encode(entries)
                try Format.printJSON(try JSONSerialization.jsonObject(with: encoded))
                return
            }
            if entries.isEmpty {
                print("no audit entries" + (after.map { " after seq \($0)" } ?? ""))
                return
            }
            print(Format.table(
                ["SEQ", "TIME", "ACTOR", "SOURCE", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
                entries.map { entry in
                    [
                        "\(entry.seq)", Format.time(entry.time), entry.actor, entry.source, entry.action,
                        Format.clipped(entry.target, to: 60), entry.outcome, Format.clipped(entry.detail ?? "", to: 100),
                    ]
                }))
        }
    }
}
