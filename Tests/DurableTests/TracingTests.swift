import Durable
import DurableJournal
import DurableTestSupport
import Foundation
import InMemoryTracing
import Testing
import Tracing

/// Answers the ID of the span current in its code.
struct CurrentSpan: Activity {
    func run(_ ctx: ActivityContext, input: String) async throws -> String {
        ServiceContext.current?.inMemorySpanContext?.spanID ?? "none"
    }
}

struct CurrentSpanFlow: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> String {
        try await ctx.execute(CurrentSpan.self, input)
    }
}

/// The spans of run starts, activations and activity attempts, with an `InMemoryTracer` given to the
/// engine or client (no process-wide bootstrap), and the trace context a run's start event carries.
@Suite(.timeLimit(.minutes(2))) struct TracingTests {
    let log = ProbeLog()

    func engine(_ path: String, tracer: InMemoryTracer? = nil) async throws -> Engine {
        let engine = try await Engine(journal: JournalConfiguration(path), tracer: tracer)
        engine.register(ProbeFlow.self)
        engine.register(Probe(log: log))
        engine.register(CurrentSpanFlow.self)
        engine.register(CurrentSpan())
        engine.register(Family.self)
        engine.register(Nap.self)
        engine.register(Step())
        return engine
    }

    /// IDs that say which tracer made them.
    func tracer(_ prefix: String) -> InMemoryTracer {
        let ids = Counter()
        return InMemoryTracer(idGenerator: .init(
            nextTraceID: { ids.increment(); return "\(prefix)-trace-\(ids.count)" },
            nextSpanID: { ids.increment(); return "\(prefix)-span-\(ids.count)" }))
    }

    func spans(_ tracer: InMemoryTracer, _ name: String) -> [FinishedInMemorySpan] {
        tracer.finishedSpans.filter { $0.operationName == name }
    }

    @Test func attemptsAndActivationsAreTracedUnderTheRunStartInTheCallersTrace() async throws {
        let tracer = tracer("t")
        let engine = try await engine(temporaryJournal(), tracer: tracer)
        let plan = ProbePlan(
            steps: [.init(fail: true), .init()],
            options: ActivityOptions(startToClose: .seconds(10), retry: .exponential(initial: .milliseconds(10), maxAttempts: 2)))
        let handle = try await tracer.withSpan("request") { _ in try await engine.start(ProbeFlow.self, input: [plan]) }
        #expect(try await handle.result() == ["ok a2"])

        let request = try #require(spans(tracer, "request").first)
        let start = try #require(spans(tracer, "durable.start_run").first)
        #expect(start.parentSpanID == request.spanID)
        #expect(start.traceID == request.traceID)
        #expect(start.kind == .producer)
        #expect(start.attributes.get("durable.run_id") == .string(handle.runID))
        #expect(start.attributes.get("durable.workflow_type") == .string("ProbeFlow"))
        #expect(start.attributes.get("durable.existing") == .bool(false))

        let attempts = spans(tracer, "durable.activity")
        #expect(attempts.map { $0.attributes.get("durable.attempt") } == [.int64(1), .int64(2)])
        #expect(attempts.map { $0.attributes.get("durable.outcome") } == [.string("failed"), .string("completed")])
        #expect(attempts.allSatisfy { $0.parentSpanID == start.spanID && $0.traceID == request.traceID })
        #expect(attempts.allSatisfy { $0.attributes.get("durable.run_id") == .string(handle.runID) })
        #expect(attempts.allSatisfy { $0.attributes.get("durable.activity_type") == .string("Probe") })
        #expect(attempts.map(\.errors.count) == [1, 0])
        #expect(attempts.first?.status?.code == .error)

        // Its first activation, and the one the second attempt's result started.
        let activations = spans(tracer, "durable.activation")
        #expect(activations.map { $0.attributes.get("durable.event") }
            == [.string("WorkflowStarted"), .string("ActivityCompleted")])
        #expect(activations.allSatisfy { $0.parentSpanID == start.spanID })
        #expect(tracer.activeSpans.isEmpty)
        await engine.shutdown()
    }

    @Test func aSubmittedRunIsTracedUnderItsStartByTheWorkerThatClaimsIt() async throws {
        let path = temporaryJournal()
        let clientTracer = tracer("client")
        let client = try await DurableClient(journal: JournalConfiguration(path), tracer: clientTracer)
        let (runID, _) = try await client.submit(workflowType: "CurrentSpanFlow", input: Data(#""x""#.utf8))
        let start = try #require(spans(clientTracer, "durable.start_run").first)
        #expect(start.attributes.get("durable.run_id") == .string(runID))

        // Another tracer (another process, as far as the worker can tell): the context is in the journal.
        let workerTracer = tracer("worker")
        let engine = try await engine(path, tracer: workerTracer)
        let started = try #require(try await engine.history(runID).1.first)
        let meta = try #require(started.meta)
        let trace = try JSONDecoder().decode([String: [String: String]].self, from: meta)["trace"]
        #expect(trace?[InMemoryTracer.traceIDKey] == start.traceID)
        #expect(trace?[InMemoryTracer.spanIDKey] == start.spanID)

        try await engine.recover()  // claims the run
        let outcome = try await engine.outcome(of: runID)
        let attempt = try #require(spans(workerTracer, "durable.activity").first)
        #expect(attempt.traceID == start.traceID)
        #expect(attempt.parentSpanID == start.spanID)
        // The attempt's span is the current one in the activity's code.
        #expect(outcome == .completed(Data(#""\#(attempt.spanID)""#.utf8)))
        #expect(spans(workerTracer, "durable.activation").allSatisfy { $0.traceID == start.traceID })
        await engine.shutdown()
        await client.close()
    }

    @Test func aChildRunKeepsItsParentLinkAndGoesOnInItsParentsTrace() async throws {
        let tracer = tracer("t")
        let engine = try await engine(temporaryJournal(), tracer: tracer)
        let handle = try await engine.start(Family.self, input: 1)
        #expect(try await handle.result() == "family nap!")
        let child = try #require(try await engine.describe(handle.runID).children.first)
        #expect(try await engine.describe(child.runID).parent == ParentLink(parentRunID: handle.runID, parentSeq: child.seq))

        let start = try #require(spans(tracer, "durable.start_run").first)
        let childAttempt = try #require(spans(tracer, "durable.activity").first)
        #expect(childAttempt.attributes.get("durable.run_id") == .string(child.runID))
        #expect(childAttempt.traceID == start.traceID)
        await engine.shutdown()
    }

    @Test func withoutATracerNothingIsAddedToTheHistory() async throws {
        // No tracer given and none bootstrapped: the no-op tracer injects nothing.
        let engine = try await engine(temporaryJournal())
        let handle = try await engine.start(Family.self, input: 1)
        #expect(try await handle.result() == "family nap!")
        #expect(try await engine.history(handle.runID).1.first?.meta == nil)
        let child = try #require(try await engine.describe(handle.runID).children.first)
        let childStart = try #require(try await engine.history(child.runID).1.first?.meta)
        #expect(try JSONDecoder().decode([String: AnyCodableValue].self, from: childStart).keys.sorted() == ["parentRunID", "parentSeq"])
        await engine.shutdown()
    }
}

/// A JSON value of any shape, to read an object's keys.
private enum AnyCodableValue: Decodable {
    case value

    init(from decoder: any Decoder) throws { self = .value }
}
