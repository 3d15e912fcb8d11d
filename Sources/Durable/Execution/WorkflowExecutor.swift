#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The executor every task of one workflow run runs on: it makes workflow code deterministic.
///
/// `enqueue` only buffers jobs; ``drain()`` runs them inline, first in first out, on the thread that
/// drives the activation, until none is left. The root task is started with this executor as its
/// task-executor preference, which `async let` and task-group children inherit, so the whole task
/// tree is scheduled here and interleaves the same way on every replay.
///
/// A job that arrives from another thread, or while no activation is running, comes from
/// something outside the engine (a `Task.sleep` ending, an actor hop returning): the executor
/// records it as a stray and the activation fails instead of running non-deterministic code.
final class WorkflowExecutor: TaskExecutor, SerialExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var activationThread: pthread_t?
        var strayEnqueue = false
    }

    private let state = Mutex(State())

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let current = pthread_self()
        state.withLock { state in
            state.jobs.append(job)
            if let thread = state.activationThread, pthread_equal(thread, current) != 0 { return }
            state.strayEnqueue = true
        }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Marks the calling thread as the one that drives this run's activation.
    func beginActivation() {
        let current = pthread_self()
        state.withLock { $0.activationThread = current }
    }

    func endActivation() {
        state.withLock { $0.activationThread = nil }
    }

    /// Whether the caller runs inside an activation of this executor, on the activation's thread.
    var isActivationThread: Bool {
        let current = pthread_self()
        return state.withLock { state in
            guard let thread = state.activationThread else { return false }
            return pthread_equal(thread, current) != 0
        }
    }

    /// `true` once a job arrived from outside an activation; reading it clears it.
    func takeStrayEnqueue() -> Bool {
        state.withLock { state in
            defer { state.strayEnqueue = false }
            return state.strayEnqueue
        }
    }

    /// Runs buffered jobs, and the jobs they enqueue, in FIFO order until none is left.
    func drain() {
        // The buffered jobs and an emptied buffer change places each round: a copy of the jobs, then
        // emptying the shared buffer, allocated a new buffer for every round (Docs/benchmarks.md,
        // "CPU per step"). The order is the same: what the jobs enqueue runs in the next round.
        var jobs: [UnownedJob] = []
        while true {
            state.withLock { state in swap(&jobs, &state.jobs) }
            if jobs.isEmpty { return }
            for job in jobs {
                job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
            }
            jobs.removeAll(keepingCapacity: true)
        }
    }
}
