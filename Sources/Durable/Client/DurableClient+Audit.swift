public import DurableJournal

extension DurableClient {
    // MARK: - Audit log

    /// Records what someone did in the journal's append-only audit log (see `Docs/operations.md`,
    /// "Audit log"): the command line records each of its control actions, the HTTP server each
    /// request that is not a `GET`.
    ///
    /// The journal numbers and times the entry and chains it to the one before; it returns once the
    /// entry is committed and synced, whatever the journal's durability. Fields over
    /// ``DurableLimits/maximumAuditFieldBytes`` (the detail: ``DurableLimits/maximumAuditDetailBytes``)
    /// are clipped, not refused.
    ///
    /// ```swift
    /// let entry = try await client.recordAudit(AuditDraft(
    ///     actor: "token:alice", source: "http 10.0.0.7:51234", action: "POST /v1/runs/claim-1042/signals/review",
    ///     target: "claim-1042", outcome: "202", detail: "signal review"))
    /// ```
    /// - Returns: the entry as recorded.
    /// - Throws: ``JournalError`` when the journal cannot be written.
    @discardableResult
    public func recordAudit(_ draft: AuditDraft) async throws -> AuditEntry {
        try await journal.appendAudit(draft)
    }

    /// A page of the audit log, in order of ``AuditEntry/seq``: oldest first, the entries after
    /// `after` (from the first when `nil`); with `newestFirst`, newest first, the entries before
    /// `after` (from the last when `nil`). Pass the last seq of a page to get the next one.
    ///
    /// ```swift
    /// var page = try await client.auditLog(after: nil, limit: 100)
    /// while let last = page.last?.seq {
    ///     page = try await client.auditLog(after: last, limit: 100)
    /// }
    /// ```
    /// - Parameter limit: at most this many entries (a negative limit is 0).
    /// - Throws: ``JournalError`` `damaged` naming an entry that cannot be read. Whether the entries
    ///   are as written (their hash chain) is what `durable journal check` verifies.
    public func auditLog(after: Int64? = nil, limit: Int = 100, newestFirst: Bool = false) async throws -> [AuditEntry] {
        try await journal.auditEntries(after: after, limit: limit, newestFirst: newestFirst)
    }

    /// The first `limit` audit entries (oldest first) whose target is `target`: what was done to a run
    /// (by its ID as the actions named it), or, for `event:ID`, how `POST /v1/events` handled an event.
    public func auditLog(target: String, limit: Int = 100) async throws -> [AuditEntry] {
        try await journal.auditEntries(target: target, limit: limit)
    }
}
