import DurableJournal
import Foundation
import Synchronization

extension DurableWorker {
    /// Answers a query registered with ``WorkflowContext/setQueryHandler(_:_:)`` with this worker's
    /// code, as JSON: from the live state of a run driven here (between activations), else from a
    /// replay of the run's history in this process (a run driven by another process, held, or ended).
    /// Nothing is recorded. (``DurableClient/query(_:name:)`` of this worker's client comes here.)
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
}
