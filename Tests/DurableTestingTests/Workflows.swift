import Durable
import Foundation

/// Activities declared without an implementation: the tests stub them.
struct SendReminder: ActivityDeclaration {
    typealias Input = String
    typealias Output = Bool
}

struct CheckPayment: ActivityDeclaration {
    typealias Input = String
    typealias Output = Bool
}

struct LookUp: ActivityDeclaration {
    typealias Input = String
    typealias Output = String
}

let day: Duration = .seconds(86_400)

/// Waits 30 days, then reminds the customer (retrying hourly, then every two hours). Since change
/// "check-payment-first", it first checks whether the customer has paid meanwhile.
/// `Histories/renewal-before-check-payment.json` was recorded by the code before that change.
struct Renewal: Workflow {
    func run(_ ctx: WorkflowContext, input customer: String) async throws -> String {
        try await ctx.sleep(for: day * 30)
        if ctx.patched("check-payment-first"), try await ctx.execute(CheckPayment.self, customer) {
            return "\(customer) paid"
        }
        let reached = try await ctx.execute(
            SendReminder.self, customer, options: ActivityOptions(retry: .exponential(initial: .seconds(3600), maxAttempts: 3)))
        return reached ? "\(customer) reminded" : "\(customer) not reached"
    }
}

/// The same workflow type with the change made carelessly (no `patched`): old histories diverge.
struct UnpatchedRenewal: Workflow {
    static var name: String { "Renewal" }

    func run(_ ctx: WorkflowContext, input customer: String) async throws -> String {
        try await ctx.sleep(for: day * 30)
        if try await ctx.execute(CheckPayment.self, customer) { return "\(customer) paid" }
        let reached = try await ctx.execute(
            SendReminder.self, customer, options: ActivityOptions(retry: .exponential(initial: .seconds(3600), maxAttempts: 3)))
        return reached ? "\(customer) reminded" : "\(customer) not reached"
    }
}

/// Waits up to three days for a person's decision, then escalates.
struct Approval: Workflow {
    func run(_ ctx: WorkflowContext, input request: String) async throws -> String {
        do {
            let decision = try await ctx.waitForSignal(String.self, named: "decision", timeout: day * 3)
            return "\(request): \(decision)"
        } catch is WorkflowTimeout {
            return "\(request): escalated"
        }
    }
}

/// Looks something up within an hour.
struct BoundedLookUp: Workflow {
    func run(_ ctx: WorkflowContext, input key: String) async throws -> String {
        do {
            return try await ctx.withTimeout(.seconds(3600)) { try await ctx.execute(LookUp.self, key) }
        } catch is WorkflowTimeout {
            return "timed out"
        }
    }
}

/// A child that cools down for ten days.
struct Cooldown: Workflow {
    func run(_ ctx: WorkflowContext, input days: Int) async throws -> Int {
        try await ctx.sleep(for: day * days)
        return days
    }
}

/// Runs a 10-day child, then waits five more days; returns the days that passed by `ctx.now`.
struct Onboarding: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> Double {
        let start = ctx.now
        _ = try await ctx.executeChild(Cooldown.self, 10)
        try await ctx.sleep(for: day * 5)
        return ctx.now.timeIntervalSince(start) / 86_400
    }
}

/// Branches that start together (`async let`, a task group, a timer in each): which branch issues its
/// command first is decided by how the workflow's executor runs child tasks, not by the code's text.
/// `Histories/interleaving.json` was recorded on 5 December 2026 (at 60d90e4); a change to the
/// executor or to the context's own `async` layers that reorders the branches would no longer replay it.
struct Interleaving: Workflow {
    func run(_ ctx: WorkflowContext, input: String) async throws -> [String] {
        async let left = ctx.execute(LookUp.self, input + "-left")
        async let right = ctx.execute(LookUp.self, input + "-right")
        let grouped = try await withThrowingTaskGroup(of: String.self) { group in
            for branch in ["a", "b", "c"] {
                group.addTask {
                    let found = try await ctx.execute(LookUp.self, "\(input)-\(branch)")
                    try await ctx.sleep(for: .seconds(60))
                    return try await ctx.execute(LookUp.self, found)
                }
            }
            var results: [String] = []
            for try await result in group { results.append(result) }
            return results
        }
        return try await [left, right] + grouped
    }
}
