import DurableJournal
import DurableTestSupport
import Foundation
import GRDB
import Testing

/// The audit log, on every backend: appended in one numbered, hash-chained line; read back in pages;
/// never changed or deleted through the database; every change made behind its back named by `check`.
@Suite(.timeLimit(.minutes(2))) struct AuditConformanceTests {
    func draft(_ n: Int, detail: String? = nil) -> AuditDraft {
        AuditDraft(
            actor: "user:alice", source: "cli pid \(n) on test", action: "signal", target: "claim-\(n)", outcome: "ok",
            detail: detail)
    }

    @Test(arguments: Backend.allCases) func entriesAreNumberedInOrderAndReadBackInPages(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location)
        var written: [AuditEntry] = []
        for n in 1...5 { written.append(try await journal.appendAudit(draft(n, detail: n == 2 ? "signal 'review'" : nil))) }
        #expect(written.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(written[1].detail == "signal 'review'" && written[0].detail == nil && written[3].target == "claim-4")
        #expect(written.allSatisfy { Date(journalMillis: $0.time.journalMillis) == $0.time }, "times are whole milliseconds")
        #expect(Set(written.map(\.hash)).count == 5 && written.allSatisfy { $0.hash.count == 64 })
        #expect(try await journal.auditEntries(limit: 100) == written, "every entry reads back as it was returned")
        #expect(try await journal.auditEntries(after: 2, limit: 2) == Array(written[2...3]))
        #expect(try await journal.auditEntries(after: 5, limit: 2).isEmpty)
        #expect(try await journal.auditEntries(after: nil, limit: 2, newestFirst: true).map(\.seq) == [5, 4])
        #expect(try await journal.auditEntries(after: 3, limit: 10, newestFirst: true).map(\.seq) == [2, 1])
        #expect(try await journal.auditEntries(limit: 0).isEmpty)
        // By target (the index `POST /v1/events` looks a handled event up in), oldest first.
        let again = try await journal.appendAudit(draft(4))
        #expect(try await journal.auditEntries(target: "claim-4", limit: 10) == [written[3], again])
        #expect(try await journal.auditEntries(target: "claim-4", limit: 1) == [written[3]])
        #expect(try await journal.auditEntries(target: "claim-9", limit: 10).isEmpty)
        written.append(again)
        // Each hash follows from the one before.
        var previous = AuditChain.start
        for entry in written {
            #expect(entry.hash == AuditChain.hash(of: entry, previous: previous))
            previous = entry.hash
        }
        let report = try await journal.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 6, "\(report.problems)")
        #expect(try await journal.effectiveDurability() == .fast, "the synced audit commit leaves the journal's durability as it was")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func oversizedFieldsAreClippedAndNULIsReplaced(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location)
        let long = String(repeating: "é", count: 5_000)  // 10,000 bytes
        let entry = try await journal.appendAudit(AuditDraft(
            actor: "token:a\u{0}b", source: long, action: "POST /v1/workflows/\(long)/runs", target: "t", outcome: "201",
            detail: long))
        #expect(entry.actor == "token:a\u{FFFD}b")
        #expect(entry.source.utf8.count <= DurableLimits.maximumAuditFieldBytes && entry.source.hasSuffix("é…"))
        #expect(entry.action.utf8.count <= DurableLimits.maximumAuditFieldBytes && entry.action.hasPrefix("POST /v1/workflows/éé"))
        #expect(entry.detail.map { $0.utf8.count <= DurableLimits.maximumAuditDetailBytes && $0.utf8.count > 4_000 } == true)
        #expect(try await journal.auditEntries(limit: 1) == [entry])
        #expect(try await journal.check().isHealthy)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func appendsFromSeveralConnectionsFormOneChain(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let first = try await openJournal(location)
        let second = try await openJournal(location)
        let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
            for n in 0..<24 {
                let (journal, draft) = (n % 2 == 0 ? first : second, draft(n))
                group.addTask { try await journal.appendAudit(draft).seq }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(seqs.sorted() == Array(1...24))
        let report = try await first.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 24, "\(report.problems)")
        await first.close()
        await second.close()
    }

    @Test(arguments: Backend.allCases) func concurrentAppendsEachGetTheirOwnEntryInOneChain(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location)
        let returned = try await withThrowingTaskGroup(of: (Int, AuditEntry).self) { group in
            for n in 0..<100 {
                let draft = draft(n)
                group.addTask { (n, try await journal.appendAudit(draft)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(returned.allSatisfy { n, entry in entry.target == "claim-\(n)" && entry.source == "cli pid \(n) on test" },
                "each caller gets the entry of its own draft")
        #expect(returned.map(\.1.seq).sorted() == Array(1...100))
        #expect(try await journal.auditEntries(limit: 1_000) == returned.map(\.1).sorted { $0.seq < $1.seq },
                "every entry reads back as it was returned")
        let report = try await journal.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 100, "\(report.problems)")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func anEntryWrittenWithANewRunIsWrittenIfAndOnlyIfTheRunIs(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location)
        _ = try await journal.appendAudit(draft(0))
        // Starts that carry their entry, concurrently (several in one group commit), pending as an HTTP
        // start's are; one of them for a workflow ID another holds open, which fails and writes nothing.
        let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for n in 1...20 {
                var batch = newRun("run-\(n)", workflowID: n == 20 ? "wf-1" : "wf-\(n)", status: .pending)
                batch.audit = draft(n)
                group.addTask { (n, (try? await journal.append(batch)) != nil) }
            }
            return try await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(outcomes.filter(\.value).count == 19, "\(outcomes)")
        let lost = try #require(outcomes.first { !$0.value }?.key)
        #expect([1, 20].contains(lost))
        _ = try await journal.appendAudit(draft(21))
        let entries = try await journal.auditEntries(limit: 100)
        #expect(entries.map(\.seq) == Array(1...21))
        #expect(Set(entries.map(\.target)) == Set((0...21).filter { $0 != lost }.map { "claim-\($0)" }))
        #expect(entries.last?.target == "claim-21")
        let report = try await journal.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 21, "\(report.problems)")
        #expect(try await journal.effectiveDurability() == .fast, "the synced commit leaves the journal's durability as it was")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func theDatabaseRefusesToChangeOrDeleteEntries(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location)
        for n in 1...3 { _ = try await journal.appendAudit(draft(n)) }
        let before = try await journal.auditEntries(limit: 10)
        var statements = ["UPDATE audit SET actor = 'user:mallory' WHERE seq = 2", "DELETE FROM audit WHERE seq = 3",
                          "DELETE FROM audit"]
        if backend == .postgres { statements.append("TRUNCATE audit") }
        for sql in statements {
            let refusal = try await rawSQL(backend, location, sql)
            #expect(refusal?.contains("append-only") == true, "\(sql): \(refusal ?? "ran")")
        }
        #expect(try await journal.auditEntries(limit: 10) == before)
        #expect(try await journal.check().isHealthy)
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func checkNamesAnEntryChangedBehindTheTriggersBack(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location)
        var entries: [AuditEntry] = []
        for n in 1...5 { entries.append(try await journal.appendAudit(draft(n))) }
        let disable = backend == .sqlite
            ? "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete"
            : "ALTER TABLE audit DISABLE TRIGGER audit_append_only"
        #expect(try await rawSQL(backend, location, disable) == nil)

        // A field changed in place: the entry's hash no longer follows.
        #expect(try await rawSQL(backend, location, "UPDATE audit SET target = 'claim-9' WHERE seq = 2") == nil)
        var problems = try await journal.check().problems
        #expect(!problems.isEmpty && problems.allSatisfy { $0.contains("audit entry 2") }, "\(problems)")

        // An entry removed: the next one does not follow.
        #expect(try await rawSQL(backend, location, "UPDATE audit SET target = 'claim-2' WHERE seq = 2") == nil)
        #expect(try await journal.check().isHealthy, "put back as it was, the chain holds again")
        #expect(try await rawSQL(backend, location, "DELETE FROM audit WHERE seq = 4") == nil)
        problems = try await journal.check().problems
        #expect(problems.contains { $0.hasPrefix("audit entry 5: follows entry 3") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("audit entry 5: its hash does not follow") }, "\(problems)")
        await journal.close()
    }

    @Test func anEntryRewrittenWithAFreshHashBreaksTheLinkToTheNext() async throws {
        // PostgreSQL rows carry no checksum of their own: the chain alone shows the change.
        guard let location = Backend.postgres.freshLocation() else { return }
        let journal = try await openJournal(location)
        var entries: [AuditEntry] = []
        for n in 1...3 { entries.append(try await journal.appendAudit(draft(n))) }
        var forged = entries[1]
        forged.outcome = "runNotFound"
        let hash = AuditChain.hash(of: forged, previous: entries[0].hash)
        #expect(try await rawSQL(.postgres, location, """
            ALTER TABLE audit DISABLE TRIGGER audit_append_only;
            UPDATE audit SET outcome = 'runNotFound', hash = '\(hash)' WHERE seq = 2
            """) == nil)
        let problems = try await journal.check().problems
        #expect(problems == ["audit entry 3: its hash does not follow from its fields and the entry before it "
            + "(this entry or the one before it was changed after it was written)"])
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func pruneCompactAndResetLeaveTheAuditLog(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let journal = try await openJournal(location, owner: "worker-a")
        _ = try await journal.appendAudit(draft(1))
        for id in ["done", "open"] {
            try await journal.append(newRun(id))
            try await journal.append(JournalBatch(run: RunRef(runID: id), events: [completed(1, "1")]))
        }
        try await journal.append(JournalBatch(
            run: RunRef(runID: "done"), events: [EventDraft(HistoryEvent(index: 2, kind: .workflowCompleted, time: t0))],
            statusChange: .init(status: .completed)))
        _ = try await journal.appendAudit(draft(2))
        let open = try #require(try await journal.findRun("open"))
        let replacement = RunRecord(
            runID: "open-2", workflowID: "open-2", workflowType: "Flow", status: .running, createdAt: t0, updatedAt: t0,
            closedAt: nil, seed: 1, error: nil)
        #expect(try await journal.replaceRun(
            RunTermination(runID: "open", reason: "reset", expected: RunLease(of: open), notice: nil),
            with: replacement, events: Array(try await journal.history(open, from: 0).prefix(1)), signals: []))
        _ = try await journal.compact()
        #expect(try await journal.deleteClosedRuns(closedBefore: Date().addingTimeInterval(60)).runs == 2)
        #expect(try await journal.auditEntries(limit: 10).map(\.seq) == [1, 2])
        let report = try await journal.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 2, "\(report.problems)")
        await journal.close()
    }

    @Test(arguments: Backend.allCases) func importedEntriesKeepTheirNumbersAndHashesAndMustContinueTheLog(_ backend: Backend) async throws {
        guard let location = backend.freshLocation(), let other = backend.freshLocation() else { return }
        let source = try await openJournal(location)
        var written: [AuditEntry] = []
        for n in 1...4 { written.append(try await source.appendAudit(draft(n))) }
        let destination = try await openJournal(other)
        // Entries that do not continue the log are refused, and nothing is written.
        let gap = await #expect(throws: JournalError.self) { try await destination.importAudit(Array(written[1...])) }
        #expect("\(gap.map { "\($0)" } ?? "")".contains("audit entry 2 cannot follow entry 0"))
        var forged = written
        forged[2].target = "claim-x"
        let changed = await #expect(throws: JournalError.self) { try await destination.importAudit(forged) }
        #expect("\(changed.map { "\($0)" } ?? "")".contains("audit entry 3: its hash does not follow"))
        #expect(try await destination.auditEntries(limit: 10).isEmpty)
        // In two parts, as they are; the log then goes on from them.
        try await destination.importAudit(Array(written[0...1]))
        try await destination.importAudit(Array(written[2...]))
        #expect(try await destination.auditEntries(limit: 10) == written)
        let next = try await destination.appendAudit(draft(5))
        #expect(next.seq == 5 && next.hash == AuditChain.hash(of: next, previous: written[3].hash))
        await #expect(throws: JournalError.self) { try await destination.importAudit([written[3]]) }
        let report = try await destination.check()
        #expect(report.isHealthy && report.auditEntriesChecked == 5, "\(report.problems)")
        await destination.close()
        await source.close()
    }

    @Test(arguments: Backend.allCases) func copyAuditAppendsWhatTheDestinationLacksOrSaysWhyNot(_ backend: Backend) async throws {
        guard let location = backend.freshLocation(), let other = backend.freshLocation() else { return }
        let source = try await openJournal(location)
        let destination = try await openJournal(other)
        for n in 1...3 { _ = try await source.appendAudit(draft(n)) }
        #expect(try await copyAudit(from: source, to: destination) == (3, nil) as (Int, String?))
        #expect(try await copyAudit(from: source, to: destination) == (0, nil) as (Int, String?), "again: nothing to copy")
        _ = try await source.appendAudit(draft(4))
        #expect(try await copyAudit(from: source, to: destination) == (1, nil) as (Int, String?), "an interrupted copy goes on")
        #expect(try await destination.auditEntries(limit: 10) == (try await source.auditEntries(limit: 10)))
        // The destination's own entry after them (the copy's record): the source's are all there.
        _ = try await destination.appendAudit(draft(9))
        #expect(try await copyAudit(from: source, to: destination) == (0, nil) as (Int, String?))
        // The source goes on too: its entries cannot be appended after the destination's own.
        _ = try await source.appendAudit(draft(5))
        let (copied, reason) = try await copyAudit(from: source, to: destination)
        #expect(copied == 0)
        #expect(reason?.contains("goes on after entry 4 with entries the source does not have") == true, "\(reason ?? "nil")")
        #expect(reason?.contains("audit list --after 4 --json") == true)
        #expect(try await destination.auditEntries(limit: 10).count == 5)
        #expect(try await destination.check().isHealthy)
        await destination.close()
        await source.close()
    }

    @Test(arguments: Backend.allCases) func aSignalRecordedOnceGoesOutOnceAmongConcurrentSenders(_ backend: Backend) async throws {
        guard let location = backend.freshLocation() else { return }
        let worker = try await openJournal(location, owner: "worker-a")
        try await worker.append(newRun("r1", workflowID: "claim-1"))
        // An entry that names the target but is not the intake's does not count.
        _ = try await worker.appendAudit(AuditDraft(
            actor: "token:x", source: "http 127.0.0.1:1", action: "POST /v1/runs/{id}/cancel", target: "event:e1", outcome: "404"))
        // Two connections (as two servers), five calls each, one target.
        let other = try await openJournal(location)
        let record: @Sendable (RunRecord) -> AuditDraft = { run in
            AuditDraft(actor: "token:t", source: "http test", action: "event signal review", target: "ignored", outcome: "signalled",
                       detail: "run \(run.runID)")
        }
        let results = try await withThrowingTaskGroup(of: SignalOnce.self) { group in
            for n in 0..<10 {
                let journal = n.isMultiple(of: 2) ? worker : other
                group.addTask {
                    try await journal.sendSignal(
                        toRun: "claim-1", name: "review", data: Data("\(n)".utf8), target: "event:e1",
                        unlessRecordedAs: "event ", recording: record)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        var sent: [AuditEntry] = []
        var found: [AuditEntry] = []
        for result in results {
            switch result {
            case .sent(let run, let entry):
                #expect(run.runID == "r1")
                sent.append(entry)
            case .recordedBefore(let entry): found.append(entry)
            }
        }
        #expect(sent.count == 1 && found.count == 9, "sent \(sent.count), found \(found.count)")
        #expect(found.allSatisfy { $0 == sent.first }, "each later call finds the first one's entry")
        #expect(sent.first.map { $0.target == "event:e1" && $0.detail == "run r1" && $0.action == "event signal review" } == true)
        #expect(try await worker.queuedSignals().count == 1, "one signal queued")
        #expect(try await worker.auditEntries(target: "event:e1", limit: 10).count == 2)
        // A closed run: refused, and nothing recorded.
        try await worker.append(JournalBatch(
            run: RunRef(runID: "r1"), events: [EventDraft(HistoryEvent(index: 1, kind: .workflowCompleted, time: t0))],
            statusChange: .init(status: .completed)))
        let error = try #require(await #expect(throws: JournalError.self) {
            try await other.sendSignal(
                toRun: "claim-1", name: "review", data: nil, target: "event:e2", unlessRecordedAs: "event ", recording: record)
        })
        #expect(error.isRunClosed)
        #expect(try await worker.auditEntries(target: "event:e2", limit: 10).isEmpty)
        #expect(try await worker.check().isHealthy)
        await other.close()
        await worker.close()
    }

    @Test func anEntryEncodesWithStableFieldNames() throws {
        let entry = AuditChain.entry(
            AuditDraft(actor: "token:ops", source: "http 10.0.0.7:51234", action: "POST /v1/runs/r1/cancel", target: "r1",
                       outcome: "202"),
            seq: 7, time: Date(journalMillis: 1_795_000_000_021), previous: AuditChain.start)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = String(decoding: try encoder.encode(entry), as: UTF8.self)
        #expect(json == #"{"action":"POST /v1/runs/r1/cancel","actor":"token:ops","detail":null,"hash":"\#(entry.hash)","#
            + #""outcome":"202","seq":7,"source":"http 10.0.0.7:51234","target":"r1","time":"2026-11-18T11:06:40.021Z"}"#)
        #expect(try JSONDecoder().decode(AuditEntry.self, from: Data(json.utf8)) == entry)
    }
}
