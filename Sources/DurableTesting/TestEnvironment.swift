public import Durable
public import Foundation

/// A workflow test bench: an engine on a temporary journal whose clock skips ahead, with stubs for
/// activities.
///
/// Time skips only while something awaits a run's result (``WorkflowHandle/result()``,
/// ``Engine/outcome(of:)``) and nothing is in progress (no activation, commit, activity attempt or
/// fired timer being handled): the clock then jumps to the next deadline (a durable timer, a retry
/// delay, a timeout), so a workflow that sleeps for 30 days finishes in milliseconds. While an
/// activity runs, time moves at the real rate. ``advanceTime(by:)`` moves it on explicitly, for
/// tests that act in the middle (send a signal on day 3).
///
/// ```swift
/// let env = try await TestEnvironment()
/// env.register(ClaimIntake.self)
/// env.stub(ScoreFraud.self) { claim in claim.amount > 10_000 ? 0.9 : 0.1 }
/// let run = try await env.engine.start(ClaimIntake.self, input: claim)
/// #expect(try await run.result() == .approved)   // its 30-day wait took no time
/// await env.close()
/// ```
///
/// Everything the engine does is real: the journal is a real SQLite file (on `/dev/shm` when
/// there is one), and every run's history can be read, described and replayed as in production.
public final class TestEnvironment: Sendable {
    /// The engine under test: start runs, signal, query, cancel, read histories with it.
    public let engine: Engine
    private let journal: JournalConfiguration
    private let ownsJournal: Bool

    /// A test environment on a new temporary journal (deleted by ``close()``), or on `journal`.
    public init(journal: JournalConfiguration? = nil, worker: WorkerOptions = WorkerOptions()) async throws {
        self.journal = journal ?? .temporary()
        ownsJournal = journal == nil
        engine = try await Engine(journal: self.journal, worker: worker, clock: EngineClock(skipping: true))
    }

    /// The engine's current time (what `ctx.now` reads in a new activation).
    public var now: Date { engine.clock.now() }

    /// How far the clock has skipped ahead of real time so far.
    public var skipped: Duration { engine.clock.skipped }

    /// Where the journal is: a file path, or a URL without its password.
    public var journalLocation: String { journal.displayLocation }

    // MARK: - Registration

    public func register<W: Workflow>(_ workflow: W.Type) {
        engine.register(W.self)
    }

    /// Registers a real activity implementation.
    public func register<A: Activity>(_ activity: A) {
        engine.register(activity)
    }

    /// Registers a stub in place of activity `A`: each attempt calls `body` with the attempt's
    /// context (its number, heartbeat details) and input. A stub that throws fails the attempt,
    /// which is retried by the activity's policy like a real failure.
    public func stub<A: ActivityDeclaration>(
        _ activity: A.Type, _ body: @escaping @Sendable (ActivityContext, A.Input) async throws -> A.Output
    ) {
        engine.register(ActivityStub<A>(body: body))
    }

    /// Registers a stub in place of activity `A` that computes its output from the input.
    public func stub<A: ActivityDeclaration>(
        _ activity: A.Type, _ body: @escaping @Sendable (A.Input) async throws -> A.Output
    ) {
        stub(A.self) { _, input in try await body(input) }
    }

    /// Registers a stub in place of activity `A` that returns `output` every time.
    public func stub<A: ActivityDeclaration>(_ activity: A.Type, returning output: A.Output) {
        stub(A.self) { _, _ in output }
    }

    // MARK: - Time

    /// Moves the clock ahead by `duration`, firing every timer, retry and timeout due on the way in
    /// order, each once the work before it has settled; then waits until the engine is idle.
    /// Work in progress (an activity running) is waited for first, at the real rate.
    public func advanceTime(by duration: Duration) async {
        await engine.advanceClock(by: duration)
    }

    /// Stops the engine and deletes the temporary journal (one passed to ``init(journal:worker:)``
    /// is kept).
    public func close() async {
        await engine.shutdown()
        if ownsJournal { journal.removeFiles() }
    }
}

/// Stands in for activity `Declared` under its name.
struct ActivityStub<Declared: ActivityDeclaration>: Activity {
    typealias Input = Declared.Input
    typealias Output = Declared.Output

    static var name: String { Declared.name }

    let body: @Sendable (ActivityContext, Declared.Input) async throws -> Declared.Output

    func run(_ ctx: ActivityContext, input: Declared.Input) async throws -> Declared.Output {
        try await body(ctx, input)
    }
}
