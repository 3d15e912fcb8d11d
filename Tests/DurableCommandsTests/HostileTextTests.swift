import DurableTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Workflow IDs and signal names are stored as given, but the human-readable output shows their control
/// characters escaped, so a hostile name cannot recolour, retitle or rewrite an operator's terminal.
/// Empty and over-long IDs and names are refused.
@Suite(.timeLimit(.minutes(2))) struct HostileTextTests {
    let durable: String
    let app: String

    init() throws {
        durable = try productPath("durable")
        app = try productPath("durable-test-worker")
    }

    /// ESC and BEL (a colour change and a bell), a newline and a right-to-left override.
    static let hostileID = "evil\u{1B}[31mRED\u{07}\nforged line\u{202E}"
    static let escapedID = #"evil\e[31mRED\u{7}\nforged line\u{202e}"#
    static let hostileSignal = "sig\u{1B}]0;title\u{07}\r"
    static let escapedSignal = #"sig\e]0;title\u{7}\r"#

    /// Nothing raw: no ESC, BEL, carriage return or override, and no line the hostile newline forged.
    func expectClean(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for raw in ["\u{1B}", "\u{07}", "\r", "\u{202E}"] {
            #expect(!text.contains(raw), "\(what) printed a raw control character: \(text.debugDescription)",
                    sourceLocation: sourceLocation)
        }
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("forged line") }, "\(what): \(text.debugDescription)",
                sourceLocation: sourceLocation)
    }

    @Test func hostileWorkflowIDsAndSignalNamesArePrintedEscaped() async throws {
        let journal = temporaryJournal()
        let first = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"h"}"#, "--id", "h-1", "--journal", journal], environment: ["STEP_MS": "1"])
        try #require(first.status == 0, "\(first.stderr)")  // the workflow types are registered now

        let submit = try await runCommand(durable, ["submit", "Gather", "--input", "1", "--id", Self.hostileID, "--journal", journal])
        try #require(submit.status == 0, "\(submit.stderr)")
        let again = try await runCommand(durable, ["submit", "Gather", "--input", "1", "--id", Self.hostileID, "--journal", journal])
        expectClean(again.stdout, "submit")
        #expect(again.stdout.contains("(workflow ID \(Self.escapedID) was already open)"), "\(again.stdout.debugDescription)")

        let signal = try await runCommand(
            durable, ["signal", Self.hostileID, Self.hostileSignal, "--input", #""x""#, "--journal", journal])
        #expect(signal.status == 0, "\(signal.stderr)")
        expectClean(signal.stdout, "signal")
        #expect(signal.stdout.contains("signal '\(Self.escapedSignal)' queued for run"), "\(signal.stdout.debugDescription)")

        let list = try await runCommand(durable, ["runs", "list", "--journal", journal])
        expectClean(list.stdout, "runs list")
        #expect(list.stdout.contains(Self.escapedID), "\(list.stdout.debugDescription)")

        let audit = try await runCommand(durable, ["audit", "list", "--journal", journal])
        expectClean(audit.stdout, "audit list")
        #expect(audit.stdout.contains(Self.escapedID) && audit.stdout.contains(Self.escapedSignal),
                "\(audit.stdout.debugDescription)")

        let show = try await runCommand(durable, ["runs", "show", Self.hostileID, "--journal", journal])
        #expect(show.status == 0, "\(show.stderr)")
        expectClean(show.stdout, "runs show")
        #expect(show.stdout.contains("workflow ID:  \(Self.escapedID)"), "\(show.stdout.debugDescription)")
        #expect(show.stdout.contains("queued:       signal \(Self.escapedSignal)"), "\(show.stdout.debugDescription)")

        // JSON keeps the text as it is (JSON escapes it).
        let json = try await runCommand(durable, ["runs", "show", Self.hostileID, "--json", "--journal", journal])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["workflowID"] as? String == Self.hostileID)

        // A worker delivers both signals ("item" ends the run); the history shows the hostile one escaped.
        let worker = try Child(app, ["worker", "--journal", journal], environment: ["STEP_MS": "1"])
        defer { worker.kill(SIGKILL) }
        let item = try await runCommand(durable, ["signal", Self.hostileID, "item", "--input", #""one""#, "--journal", journal])
        #expect(item.status == 0, "\(item.stderr)")
        try await eventually("the run completed") {
            try await runCommand(durable, ["runs", "show", Self.hostileID, "--journal", journal]).stdout
                .contains("status:       completed")
        }
        worker.kill(SIGTERM)
        _ = try await worker.wait()
        expectClean(worker.output, "worker")

        let history = try await runCommand(durable, ["history", Self.hostileID, "--journal", journal])
        #expect(history.status == 0, "\(history.stderr)")
        expectClean(history.stdout, "history")
        #expect(history.stdout.contains("workflow ID \(Self.escapedID)"), "\(history.stdout.debugDescription)")
        #expect(history.stdout.contains(Self.escapedSignal), "\(history.stdout.debugDescription)")
        let timeline = try await runCommand(durable, ["history", Self.hostileID, "--timeline", "--journal", journal])
        expectClean(timeline.stdout, "history --timeline")
        let follow = try await runCommand(durable, ["history", Self.hostileID, "--follow", "--journal", journal])
        expectClean(follow.stdout, "history --follow")
        #expect(follow.stdout.contains(Self.escapedSignal), "\(follow.stdout.debugDescription)")

        // An error message quoting the ID escapes it too.
        let missing = try await runCommand(durable, ["runs", "show", Self.hostileID + "x", "--journal", journal])
        #expect(missing.status == 2)
        expectClean(missing.stderr, "an error")
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr.debugDescription)")
    }

    @Test func emptyAndOverLongIDsAndSignalNamesAreRefused() async throws {
        let journal = temporaryJournal()
        let first = try await runCommand(
            app, ["run", "CrashFlow", "--input", #"{"tag":"h"}"#, "--id", "h-1", "--journal", journal], environment: ["STEP_MS": "1"])
        try #require(first.status == 0, "\(first.stderr)")
        let longest = String(repeating: "é", count: 500)  // 1,000 bytes of UTF-8
        let tooLong = longest + "x"
        let cases: [([String], String)] = [
            (["submit", "Nap", "--input", "1", "--id", tooLong], "--id"),
            (["submit", "Nap", "--input", "1", "--id", ""], "--id"),
            (["signal", "h-1", tooLong], "name"),
            (["signal", "h-1", ""], "name"),
        ]
        for (arguments, named) in cases {
            for binary in [durable, app] {
                let result = try await runCommand(binary, arguments + ["--journal", journal])
                #expect(result.status == 64, "\(arguments.map(\.count)): \(result.stderr)")
                #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
                #expect(result.stderr.contains(named), "\(result.stderr)")
                #expect(result.stderr.count < 300, "the message does not repeat the whole name: \(result.stderr)")
            }
        }
        let longestID = try await runCommand(durable, ["submit", "Nap", "--input", "1", "--id", longest, "--journal", journal])
        #expect(longestID.status == 0, "1,000 bytes are allowed: \(longestID.stderr)")
    }
}
