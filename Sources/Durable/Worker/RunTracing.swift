import DurableJournal
import Foundation
import Tracing

// The spans the engine starts through swift-distributed-tracing, with the tracer the worker or client
// was given (`tracer:`, else `InstrumentationSystem.tracer`); `Docs/operations.md` says more.
//
// | span | kind | what |
// |---|---|---|
// | `durable.start_run` | producer | a client's submit, a worker's start |
// | `durable.activation` | internal | one activation, until its batch is committed |
// | `durable.activity` | consumer | one activity attempt, from its issue to its end |
//
// Attributes: `durable.workflow_type`, `durable.run_id`; `durable.workflow_id` and `durable.existing`
// on a start; `durable.event` (the event's kind) on an activation; `durable.activity_type`,
// `durable.attempt`, `durable.seq` and `durable.outcome` on an attempt, which also records the error
// of a failed or timed-out attempt.
//
// A run's trace context: `durable.start_run` injects its span's context (whatever the tracer puts in
// a carrier: `traceparent` and `tracestate` for W3C tracers) into the run's `WorkflowStarted` event,
// as `meta` `{"trace": {...}}` (beside a child's ``ParentLink`` keys). Whichever worker drives the
// run, in whichever process, extracts it and parents the run's activation and attempt spans on it;
// children and continued runs carry it on. Nothing is written when the tracer injects nothing (the
// no-op tracer), and replay never reads it. With the no-op tracer, activations and attempts make no
// spans at all (see ``DurableWorker/traces``).

/// The spans' names.
enum DurableSpan {
    static let startRun = "durable.start_run"
    static let activation = "durable.activation"
    static let activity = "durable.activity"
}

/// The part of a `WorkflowStarted` event's `meta` that carries the trace context: a ``ParentLink``'s
/// keys (for a child) and `trace`.
struct StartedMeta: Codable {
    var parentRunID: String?
    var parentSeq: Int?
    var trace: [String: String]?

    /// The `meta` of a `WorkflowStarted` event: the parent link alone, as before, when there is no trace
    /// context to carry.
    static func encode(parent: ParentLink?, trace: [String: String]) -> Data? {
        guard !trace.isEmpty else { return parent.flatMap { try? JSONEncoder().encode($0) } }
        return try? JSONEncoder().encode(
            StartedMeta(parentRunID: parent?.parentRunID, parentSeq: parent?.parentSeq, trace: trace))
    }
}

/// A span in a box, so that "no span" (no tracer) is a nil reference: an optional existential would be
/// copied and tested through value-witness calls on every step.
final class SpanBox: Sendable {
    let span: any Span

    init(_ span: any Span) {
        self.span = span
    }
}

/// Carries a trace context in a `[String: String]`.
struct TraceCarrier: Injector, Extractor {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

extension Tracer {
    /// The context `context` as a carrier for a `WorkflowStarted` event (empty for the no-op tracer).
    func carrier(_ context: ServiceContext) -> [String: String] {
        var carrier: [String: String] = [:]
        inject(context, into: &carrier, using: TraceCarrier())
        return carrier
    }

    /// The trace context recorded in a run's `WorkflowStarted` event; `.topLevel` without one.
    func runContext(_ started: HistoryEvent?) -> ServiceContext {
        var context = ServiceContext.topLevel
        guard let meta = started?.meta, let trace = (try? JSONDecoder().decode(StartedMeta.self, from: meta))?.trace
        else { return context }
        extract(trace, into: &context, using: TraceCarrier())
        return context
    }

    /// Runs `body` in a `durable.start_run` span, a child of the current one, recording what it throws.
    ///
    /// The span is not made the task's current one: a run started in this process takes its first
    /// steps on this task, and the tasks of its activity attempts would inherit it (and copy one more
    /// task-local value each). The run's spans are parented on it explicitly instead.
    func startingRun<T>(workflowType: String, _ body: (any Tracing.Span) async throws -> T) async throws -> T {
        let span = startSpan(DurableSpan.startRun, context: ServiceContext.current ?? .topLevel, ofKind: .producer)
        defer { span.end() }
        if span.isRecording { span.attributes["durable.workflow_type"] = workflowType }
        do {
            return try await body(span)
        } catch {
            span.recordFailure(error)
            throw error
        }
    }
}

extension Span {
    /// Records `error` as what the span's operation failed with.
    func recordFailure(_ error: any Error) {
        recordError(error)
        setStatus(SpanStatus(code: .error))
    }

    /// Names the run a `durable.start_run` span started (or found open, `existing`).
    func startedRun(_ runID: String, workflowID: String, existing: Bool) {
        guard isRecording else { return }
        updateAttributes { attributes in
            attributes["durable.run_id"] = runID
            attributes["durable.workflow_id"] = workflowID
            attributes["durable.existing"] = existing
        }
    }
}
