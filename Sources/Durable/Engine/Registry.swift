import Foundation

/// What the engine knows of a registered workflow type.
struct WorkflowRegistration: Sendable {
    var name: String
    var inputTypeName: String
    var body: WorkflowBody
    /// Checks that JSON decodes as the workflow's input type.
    var validateInput: @Sendable (Data) throws -> Void
    /// Re-encodes a JSON result for display (identity when it decodes as the output type).
    var outputTypeName: String

    init<W: Workflow>(_: W.Type) {
        name = W.name
        inputTypeName = String(describing: W.Input.self)
        outputTypeName = String(describing: W.Output.self)
        body = { context, data in
            let input: W.Input
            do {
                input = try JSONDecoder().decode(W.Input.self, from: data)
            } catch {
                throw DurableError(.badInput(type: "\(W.name) input (\(W.Input.self))", reason: describeDecoding(error)))
            }
            let output = try await W().run(context, input: input)
            return try JSONEncoder.payload().encode(output)
        }
        validateInput = { data in
            do {
                _ = try JSONDecoder().decode(W.Input.self, from: data)
            } catch {
                throw DurableError(.badInput(type: "\(W.name) input (\(W.Input.self))", reason: describeDecoding(error)))
            }
        }
    }
}

/// What the engine knows of a registered activity type.
struct ActivityRegistration: Sendable {
    var name: String
    var invoke: @Sendable (ActivityContext, Data) async throws -> Data

    init<A: Activity>(_ activity: A) {
        name = A.name
        invoke = { context, data in
            let input: A.Input
            do {
                input = try JSONDecoder().decode(A.Input.self, from: data)
            } catch {
                throw ApplicationError(
                    "input is not a valid \(A.Input.self): \(describeDecoding(error))", type: "BadActivityInput",
                    nonRetryable: true)
            }
            return try JSONEncoder.payload().encode(try await activity.run(context, input: input))
        }
    }
}

struct Registry {
    var workflows: [String: WorkflowRegistration] = [:]
    var activities: [String: ActivityRegistration] = [:]

    var workflowNames: [String] { workflows.keys.sorted() }
}
