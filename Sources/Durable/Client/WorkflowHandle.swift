import Foundation

/// A started run of a known workflow type, from ``DurableClient/start(_:input:id:idReuse:)`` or
/// ``Engine/start(_:input:id:idReuse:)``.
public struct WorkflowHandle<W: Workflow>: Sendable {
    public let runID: String
    public let workflowID: String
    let client: DurableClient

    /// Waits for the run to end and returns its output; a run that continued as new is followed to
    /// the run that ends the chain.
    /// - Throws: ``WorkflowFailure`` when the run failed; ``DurableError`` when it is held.
    public func result() async throws -> W.Output {
        var outcome = try await client.outcome(of: runID)
        var current = runID
        while case .continuedAsNew(let next) = outcome {
            current = next
            outcome = try await client.outcome(of: next)
        }
        let runID = current
        switch outcome {
        case .completed(let data):
            do {
                return try JSONDecoder.payload().decode(W.Output.self, from: data)
            } catch {
                throw DurableError(.badOutput(type: String(describing: W.Output.self), reason: describeDecoding(error)))
            }
        case .failed(let failure):
            throw WorkflowFailure(runID: runID, cause: failure)
        case .cancelled(let reason):
            throw WorkflowFailure(runID: runID, cause: FailureInfo(type: "Cancelled", message: reason))
        case .terminated(let reason):
            throw WorkflowFailure(runID: runID, cause: FailureInfo(type: "Terminated", message: reason))
        case .continuedAsNew:
            preconditionFailure("followed above")
        }
    }
}
