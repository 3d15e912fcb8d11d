/// A workflow: a deterministic `async` function whose progress survives crashes.
///
/// Workflow code must be deterministic: given the same history it must make the same calls in
/// the same order. Do side effects in activities, read time and randomness from the context
/// (`ctx.now`, `ctx.random`, `ctx.uuid()`), and await only the context's operations. Concurrency
/// with `async let` and task groups is allowed and deterministic; unstructured tasks, other actors
/// and `Task.sleep` are not (the engine detects them and holds the run).
///
/// ```swift
/// struct Greet: Workflow {
///     func run(_ ctx: WorkflowContext, input: String) async throws -> String {
///         try await ctx.execute(Shout.self, input, options: .init(startToClose: .seconds(5)))
///     }
/// }
/// ```
public protocol Workflow: Sendable {
    associatedtype Input: Codable & Sendable
    associatedtype Output: Codable & Sendable

    /// The name recorded in the journal. Defaults to the Swift type name; override it before renaming
    /// the type so that histories of open runs keep matching.
    static var name: String { get }

    /// The input types of the signals this workflow waits for, by signal name (optional). A signal
    /// named here whose input does not decode as its type is refused by ``Engine/signal(_:name:json:)``
    /// (and the `signal` command of an application that registers the workflow, exit 2) before it is
    /// sent. Signals not named here are checked only when the workflow takes them: one that does not
    /// decode is recorded as rejected and the workflow goes on waiting.
    ///
    /// ```swift
    /// static var signals: [String: any Decodable.Type] { ["review": Review.self] }
    /// ```
    static var signals: [String: any Decodable.Type] { get }

    init()

    func run(_ ctx: WorkflowContext, input: Input) async throws -> Output
}

extension Workflow {
    public static var name: String { TypeNames.name(of: Self.self) }

    public static var signals: [String: any Decodable.Type] { [:] }
}
