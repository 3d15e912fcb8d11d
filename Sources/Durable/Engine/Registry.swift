import CoreMetrics
import DurableJournal
import Foundation

/// What the engine knows of a registered workflow type.
struct WorkflowRegistration: Sendable {
    var name: String
    var body: WorkflowBody
    /// Checks that JSON decodes as the workflow's input type.
    var validateInput: @Sendable (Data) throws -> Void
    /// Whether the workflow names the input types of its signals (``Workflow/signals``).
    var declaresSignals: Bool
    /// Checks that a signal's JSON decodes as the type the workflow names for it (run ID, name, input).
    var validateSignal: @Sendable (String, String, Data) throws -> Void
    /// The type's run counters.
    var metrics: WorkflowMetrics

    /// - Parameter metrics: where the type's run counters go (nowhere for a registration that only replays).
    init<W: Workflow>(_: W.Type, metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.metrics = WorkflowMetrics(workflowType: W.name, factory: metrics)
        let decoder = JSONDecoder.payload()
        let encoder = JSONEncoder.payload()
        name = W.name
        body = { context, data in
            let input: W.Input
            do {
                input = try decoder.decode(W.Input.self, from: data)
            } catch {
                throw DurableError(.badInput(type: "\(W.name) input (\(W.Input.self))", reason: describeDecoding(error)))
            }
            let output = try encoder.encode(try await W().run(context, input: input))
            try DurableError.checkPayload(output, "the result of workflow \(W.name)")
            return output
        }
        declaresSignals = !W.signals.isEmpty
        validateSignal = { runID, name, data in
            guard let type = W.signals[name] else { return }
            func decode<Value: Decodable>(_: Value.Type) throws { _ = try decoder.decode(Value.self, from: data) }
            do {
                try decode(type)
            } catch {
                throw DurableError(.badSignalInput(runID: runID, signal: name, type: "\(type)", reason: describeDecoding(error)))
            }
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

/// What the engine knows of a registered activity type: its pool and how to run an attempt on a slot.
struct ActivityRegistration: Sendable {
    var name: String
    var pool: SlotPool
    /// Runs one attempt on a slot's resource: decodes the input, runs, encodes the output.
    var invoke: @Sendable (_ resource: any Sendable, ActivityContext, Data) async throws -> Data
    /// The slots' resources are ``WorkerProcess``es.
    var isProcessPool = false
    /// The model the activity declares (``ActivityDeclaration/modelIdentity``), read once.
    var model: ModelIdentity?
    /// The lineage every attempt of the activity journals, made once: the declared model's fields.
    var modelDetails: AttemptDetails?
    /// What an attempt with this input asks of the pool's rate limits; `nil` when it has none.
    var rateClaim: (@Sendable (Data) -> RateClaim)?

    init(
        name: String, pool: SlotPool, model: ModelIdentity?,
        invoke: @escaping @Sendable (_ resource: any Sendable, ActivityContext, Data) async throws -> Data,
        isProcessPool: Bool = false
    ) {
        self.name = name
        self.pool = pool
        self.invoke = invoke
        self.isProcessPool = isProcessPool
        self.model = model
        if let model {
            var details = AttemptDetails()
            details.record(model: model)
            modelDetails = details
        }
    }

    /// Sets ``rateClaim`` from `A`'s key and cost, when the pool has rate limits. Input that does not
    /// decode counts one unit without a key (the attempt then fails on it).
    func claimingRates<A: ActivityDeclaration>(of _: A.Type) -> ActivityRegistration {
        guard pool.options.isRateLimited else { return self }
        var registration = self
        let decoder = JSONDecoder.payload()
        registration.rateClaim = { data in
            guard let input = try? decoder.decode(A.Input.self, from: data) else { return RateClaim() }
            return RateClaim(key: A.rateLimitKey(for: input), cost: A.rateLimitCost(for: input))
        }
        return registration
    }

    /// Whether attempts record lineage: the activity declares a model, or its processes may report one.
    var recordsLineage: Bool { model != nil || isProcessPool }

    /// An in-process activity: `resource` is an `A`.
    static func inProcess<A: Activity>(_: A.Type, pool: SlotPool) -> ActivityRegistration {
        let decoder = JSONDecoder.payload()
        let encoder = JSONEncoder.payload()
        return ActivityRegistration(name: A.name, pool: pool, model: A.modelIdentity) { resource, context, data in
            let input: A.Input
            do {
                input = try decoder.decode(A.Input.self, from: data)
            } catch {
                throw ApplicationError(
                    "input is not a valid \(A.Input.self): \(describeDecoding(error))", type: "BadActivityInput",
                    nonRetryable: true)
            }
            // The pool holds only values its factory made, all `A`s.
            return try encoder.encode(try await (resource as! A).run(context, input: input))
        }.claimingRates(of: A.self)
    }
}

extension ActivityRegistration {
    /// A process-pool activity: `resource` is a ``WorkerProcess``. The process's output is checked
    /// against `A.Output`, so a worker that answers with the wrong shape fails the attempt, not the
    /// workflow.
    static func process<A: ActivityDeclaration>(_: A.Type, pool: SlotPool) -> ActivityRegistration {
        let decoder = JSONDecoder.payload()
        return ActivityRegistration(name: A.name, pool: pool, model: A.modelIdentity, invoke: { resource, context, input in
            // The pool holds only processes its factory launched.
            let process = resource as! WorkerProcess
            let request = WorkerRequest(
                id: context.sequence, activity: A.name, input: input, attempt: context.attempt,
                idempotencyKey: context.idempotencyKey, heartbeatDetails: context.lastHeartbeatData)
            let output = try await process.call(request) { details in
                try? context.heartbeats?.heartbeat(details)
            } onPartialOutput: { chunk in
                // A chunk over the limit, or one after the attempt ended, is dropped.
                if chunk.count <= PartialOutput.maximumChunkBytes { try? (context.heartbeats as? any OutputSink)?.publish(chunk) }
            }
            do {
                _ = try decoder.decode(A.Output.self, from: output)
            } catch {
                throw ApplicationError(
                    "process \(process.pid) returned output that is not a valid \(A.Output.self): "
                        + describeDecoding(error), type: "BadActivityOutput")
            }
            return output
        }, isProcessPool: true).claimingRates(of: A.self)
    }
}

struct Registry {
    var workflows: [String: WorkflowRegistration] = [:]
    var activities: [String: ActivityRegistration] = [:] { didSet { lastActivity = nil } }
    /// The activity registration looked up last: a run's steps mostly ask for one type again, and
    /// comparing its name costs less than hashing it (Docs/benchmarks.md, "CPU per step").
    private var lastActivity: ActivityRegistration?

    /// The registration of the activity type `name`.
    mutating func activity(_ name: String) -> ActivityRegistration? {
        if let last = lastActivity, last.name == name { return last }
        lastActivity = activities[name]
        return lastActivity
    }

    var workflowNames: [String] { workflows.keys.sorted() }
}
