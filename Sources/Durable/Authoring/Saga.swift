/// Compensations for a multi-step business transaction: register an undo as each step completes;
/// when a later step fails, run the undos in reverse order. Each undo is ordinary workflow code
/// (usually an activity), so it is journaled, retried by its options, and continues after a crash
/// where it stopped.
///
/// ```swift
/// let saga = Saga(ctx)
/// return try await saga.run {
///     let hold = try await ctx.execute(ReserveFunds.self, claim.payout)
///     saga.addCompensation(ReleaseFunds.self, hold)
///     let payment = try await ctx.execute(PayOut.self, hold)
///     saga.addCompensation(Reverse.self, payment)
///     return try await ctx.execute(NotifyCustomer.self, payment)   // if this fails: Reverse, then ReleaseFunds
/// }
/// ```
///
/// Use it only from the workflow's own task tree, like the context.
public final class Saga: @unchecked Sendable {
    // @unchecked Sendable: like WorkflowContext, a saga is used only on the run's serial workflow
    // executor (its operations go through the context, which checks that).
    private let context: WorkflowContext
    private var compensations: [@Sendable () async throws -> Void] = []

    public init(_ context: WorkflowContext) {
        self.context = context
    }

    /// Registers the undo of a step that has completed.
    public func addCompensation(_ undo: @escaping @Sendable () async throws -> Void) {
        compensations.append(undo)
    }

    /// Registers an activity as the undo of a step that has completed.
    public func addCompensation<A: ActivityDeclaration>(
        _ activity: A.Type, _ input: A.Input, options: ActivityOptions = .default
    ) {
        let context = self.context
        compensations.append { _ = try await context.execute(activity, input, options: options) }
    }

    /// Runs the registered compensations, the last registered first, each to its end; one that
    /// fails for good does not stop the others.
    /// - Returns: the errors of the compensations that failed, in the order they ran.
    @discardableResult
    public func compensate() async -> [any Error] {
        var errors: [any Error] = []
        while let undo = compensations.popLast() {
            do {
                try await undo()
            } catch {
                errors.append(error)
            }
        }
        return errors
    }

    /// Runs `body`; if it throws, compensates and rethrows the error (the compensations' own
    /// failures are returned by ``compensate()`` and recorded in the run's history).
    /// Compensation runs even when the workflow was cancelled (the undos are not cancelled with it);
    /// continuing as new is not a failure and compensates nothing.
    public func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let request as ContinueAsNew {
            throw request
        } catch {
            _ = try? await context.withoutCancellation { [self] in await compensate() }
            throw error
        }
    }
}
