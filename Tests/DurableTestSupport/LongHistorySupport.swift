import Foundation

/// A journal with two pending runs of `Nap`: `long-1`, whose input alone is over 10 MB (past the
/// continue-as-new threshold), and `short-1`, with a short input. Made with the real `durable` and
/// `durable-test-worker` binaries (the code-less `durable` opens only a journal that exists, so a
/// first run creates it).
public func journalWithLongAndShortRuns() async throws -> String {
    let journal = temporaryJournal()
    let created = try await runCommand(
        try productPath("durable-test-worker"),
        ["run", "CrashFlow", "--input", #"{"tag":"op-1"}"#, "--id", "op-1", "--journal", journal],
        environment: ["STEP_MS": "1"])
    guard created.status == 0 else { throw TestProcessError("creating the journal failed: \(created.stderr)") }
    let input = temporaryPath("long-input") + ".json"
    try Data(("\"" + String(repeating: "x", count: 10 * 1024 * 1024) + "\"").utf8).write(to: URL(fileURLWithPath: input))
    for (id, value) in [("long-1", "@" + input), ("short-1", "60000")] {
        let submit = try await runCommand(try productPath("durable"), ["submit", "Nap", "--input", value, "--id", id, "--journal", journal])
        guard submit.status == 0 else { throw TestProcessError("submitting \(id) failed: \(submit.stderr)") }
    }
    return journal
}
