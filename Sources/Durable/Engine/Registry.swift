import Foundation

/// What the engine knows of a registered workflow type.
struct WorkflowRegistration: Sendable {
    var name: String
    var body: WorkflowBody
    /// Checks that JSON decodes as the workflow's input type.
    var validateInput: @Sendable (Data) throws -> Void

    init<W: Workflow>(_: W.Type) {
        let decoder = JSONDecoder()
        let encoder = JSONEncoder.payload()
        name = W.name
        body = { context, data in
            let input: W.Input
            do {
                input = try decoder.decode(W.Input.self, from: data)
            } catch {
                throw DurableError(.badInput(type: "\(W.name) input (\(W.Input.self))", reason: describeDecoding(error)))
            }
            let output = try await W().run(context, input: input)
            return try encoder.encode(output)
        }
        validateInput = { data in
            do {
                _ = try decoder.decode(W.Input.self, from: data)
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
        let decoder = JSONDecoder()
        let encoder = JSONEncoder.payload()
        name = A.name
        invoke = { context, data in
            let input: A.Input
            do {
                input = try decoder.decode(A.Input.self, from: data)
            } catch {
                throw ApplicationError(
                    "input is not a valid \(A.Input.self): \(describeDecoding(error))", type: "BadActivityInput",
                    nonRetryable: true)
            }
            return try encoder.encode(try await activity.run(context, input: input))
        }
    }
}

struct Registry {
    var workflows: [String: WorkflowRegistration] = [:]
    var activities: [String: ActivityRegistration] = [:]

    var workflowNames: [String] { workflows.keys.sorted() }
}
