import DurableJournal

/// What starting a run does when its workflow ID was used by an earlier run.
///
/// Whatever the policy, a workflow ID has at most one open run at a time. Starting a workflow ID that
/// has an open run returns that run (the start is idempotent) unless the policy is
/// ``terminateIfRunning``. The policy decides what happens when the ID's last run has ended:
///
/// | Last run with the ID | `allowDuplicate` | `allowDuplicateFailedOnly` (default) | `rejectDuplicate` | `terminateIfRunning` |
/// |---|---|---|---|---|
/// | none | new run | new run | new run | new run |
/// | open | that run | that run | that run | terminated; new run |
/// | completed | new run | refused | refused | new run |
/// | failed, cancelled, terminated | new run | new run | refused | new run |
///
/// A refused start throws ``DurableError`` with code ``DurableError/Code/workflowIDReused`` (its
/// `runID` is the earlier run). The default means a claim submitted again after its run completed
/// (and paid) is not run again, while one whose run failed can be retried under the same ID.
public enum WorkflowIDReusePolicy: String, Sendable, CaseIterable, Codable {
    /// A new run whatever the earlier runs with the ID did.
    case allowDuplicate = "allow"
    /// A new run only when the last run with the ID did not complete (it failed, was cancelled or was
    /// terminated). The default.
    case allowDuplicateFailedOnly = "allow-failed"
    /// Never a second run for a workflow ID.
    case rejectDuplicate = "reject"
    /// Terminate the open run with the ID (if any), then start a new run.
    case terminateIfRunning = "terminate-if-running"

    /// Whether a new run may follow a closed run of this status.
    func admits(after status: RunStatus) -> Bool {
        switch self {
        case .allowDuplicate, .terminateIfRunning: true
        case .allowDuplicateFailedOnly: status != .completed
        case .rejectDuplicate: false
        }
    }
}

extension DurableClient {
    /// Applies `policy` before a run with an explicit workflow ID is recorded.
    /// - Returns: the open run to return instead of starting one, or `nil` to start.
    /// - Throws: ``DurableError`` `workflowIDReused` when the policy refuses a new run,
    ///   `invalidIdentifier` when the ID is empty or too long (a worker's `start` checks it here).
    func admitStart(workflowID: String, policy: WorkflowIDReusePolicy) async throws -> RunRecord? {
        try Self.checkIdentifier(workflowID, "workflow ID")
        if let open = try await journal.openRun(workflowID: workflowID) {
            guard policy == .terminateIfRunning else { return open }
            try await terminate(open.runID, reason: "a new run of workflow ID \(workflowID) replaced it (terminate-if-running)")
            _ = try? await outcome(of: open.runID)  // closed by the worker driving it, or at once
        }
        guard let last = try await latestRun(workflowID: workflowID), !last.status.isOpen,
            !policy.admits(after: last.status)
        else { return nil }
        throw DurableError(.workflowIDReused(
            workflowID: workflowID, runID: last.runID, status: last.status.rawValue, policy: policy.rawValue))
    }

    /// The newest run with this workflow ID, whatever its status.
    func latestRun(workflowID: String) async throws -> RunRecord? {
        guard let run = try await journal.findRun(workflowID) else { return nil }  // no run has it as either ID
        if run.workflowID == workflowID { return run }
        // `findRun` matched another run's run ID: look among the runs whose workflow ID starts with it.
        return try await journal.runs(RunFilter(workflowIDPrefix: workflowID)).first { $0.workflowID == workflowID }
    }
}
