public import Foundation
import DurableJournal
import Synchronization

extension Engine {
    /// Asks a run a query registered with ``WorkflowContext/setQueryHandler(_:_:)`` and returns the
    /// answer as JSON: the bytes the handler's return value encodes to (see
    /// ``query(_:name:as:)`` for the decoded value). A run driven here answers from its live state, between activations; any other
    /// run (driven by another process, held, or ended) answers from a replay of its history in this
    /// process. Nothing is recorded.
    /// - Throws: ``JournalError`` for an unknown ID; ``DurableError`` for an unregistered workflow
    ///   type, a history the code no longer replays, or a query the run does not answer.
    public func query(_ id: String, name: String) async throws -> Data {
        guard let run = try await journal.findRun(id) else { throw JournalError(.runNotFound(id)) }
        return try await answer(run, query: name)
    }

    func answer(_ run: RunRecord, query name: String) async throws -> Data {
        if let driver = drivers.withLock({ $0[run.runID] }), let answer = try await driver.query(name) {
            return answer
        }
        guard let registration = workflowRegistration(run.workflowType) else {
            throw DurableError(.unknownWorkflowType(run.workflowType, known: workflowTypes))
        }
        let instance = WorkflowInstance(run: run, body: registration.body)
        defer { instance.tearDown() }
        let events = try await journal.history(run, from: 0)
        _ = try instance.replay(events, openEnded: true)
        return try instance.answer(query: name)
    }

    /// Asks a run a query and decodes the answer as `Value`, the type the query handler returns.
    ///
    /// ```swift
    /// let progress = try await engine.query("claim-1042", name: "progress", as: ClaimProgress.self)
    /// ```
    /// - Throws: what ``query(_:name:)`` throws; ``DurableError`` `badOutput` when the answer is not a
    ///   valid `Value`.
    public func query<Value: Decodable>(_ id: String, name: String, as type: Value.Type) async throws -> Value {
        try DurableClient.decodeAnswer(try await query(id, name: name), name: name, as: Value.self)
    }
}
