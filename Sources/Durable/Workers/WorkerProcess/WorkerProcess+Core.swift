import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

#if canImport(Glibc)

/// The I/O of one worker process: its descriptors, threads and timers, carrying out what its
/// ``WorkerProcessStateMachine`` decides.
///
/// Kept apart from ``WorkerProcess`` so that releasing the facade kills the process even though the
/// threads still hold the core. Every event goes through ``perform(_:)``: the machine changes under a
/// lock, signals are sent before the lock is released (once the process is reaped its pid may name
/// another process, and reaping happens under the same lock), and continuations, callbacks, writes
/// and timers run after it is released.
final class Core: Sendable {
    typealias Machine = WorkerProcessStateMachine<ReadyWaiter, CallWaiter, ExitWaiter>
    typealias ReadyWaiter = CheckedContinuation<Data, any Error>

    struct CallWaiter: Sendable {
        var continuation: CheckedContinuation<Data, any Error>
        var onHeartbeat: @Sendable (Data) -> Void
        var onPartialOutput: @Sendable (Data) -> Void
    }

    enum ExitWaiter: Sendable {
        /// A caller of ``terminate()``.
        case continuation(CheckedContinuation<Void, Never>)
        /// An ``onExit(_:)`` action.
        case action(@Sendable () -> Void)
    }

    let configuration: WorkerProcessConfiguration
    let pid: Int32
    let stdinFD: Int32
    let stdoutFD: Int32
    let stderrFD: Int32
    let wakeRead: Int32
    let wakeWrite: Int32
    let machine: Mutex<Machine>

    init(_ configuration: WorkerProcessConfiguration) throws {
        self.configuration = configuration
        let spawned = try Spawner.spawn(configuration)
        pid = spawned.pid
        stdinFD = spawned.stdin
        stdoutFD = spawned.stdout
        stderrFD = spawned.stderr
        guard let wake = Spawner.makePipe() else {
            let problem = String(cString: strerror(errno))
            _ = Glibc.kill(spawned.pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(spawned.pid, &status, 0)
            for fd in [spawned.stdin, spawned.stdout, spawned.stderr] { _ = close(fd) }
            throw WorkerProcessError(
                .launchFailed("cannot create a pipe: \(problem)"),
                pid: 0, command: configuration.command)
        }
        wakeRead = wake.read
        wakeWrite = wake.write
        machine = Mutex(Machine(pid: spawned.pid, configuration: configuration))
    }

    deinit {
        // The reader thread closed stdout, stderr and the wake pipe; stdin stays open until no call can
        // write to it any more, so that its number is never reused under a writer.
        _ = close(stdinFD)
    }

    func start() {
        let reader = Thread { [self] in readLoop() }
        reader.name = "worker \(pid) out"
        reader.start()
        let reaper = Thread { [self] in reapLoop() }
        reaper.name = "worker \(pid) wait"
        reaper.stackSize = 1 << 18
        reaper.start()
        after(configuration.readyTimeout) { $0.readyTimeoutFired() }
    }

    // MARK: Actions

    /// Applies one event to the machine and carries out the actions it returns.
    func perform(_ event: (inout Machine) -> [Machine.Action]) {
        let actions = machine.withLock { machine in
            let actions = event(&machine)
            for action in actions { performLocked(action) }
            return actions
        }
        for action in actions { performUnlocked(action) }
    }

    /// The actions that must happen before anything else reaches the machine.
    private func performLocked(_ action: Machine.Action) {
        switch action {
        case .signal(let signal):
            let number = signal == .kill ? SIGKILL : SIGTERM
            if Glibc.kill(-pid, number) != 0 { _ = Glibc.kill(pid, number) }
        case .killGroup:
            _ = Glibc.kill(-pid, SIGKILL)
        case .closeStdin:
            // Before the SIGTERM that follows it, as the process would see them.
            _ = shutdown(stdinFD, Int32(SHUT_WR))
        case .resumeLaunch, .resumeCall, .heartbeat, .partialOutput, .write, .killAfterGrace, .giveUpWaitingForExit,
            .resumeExitWaiter:
            break
        }
    }

    private func performUnlocked(_ action: Machine.Action) {
        switch action {
        case .resumeLaunch(let continuation, let result):
            continuation.resume(with: result)
        case .resumeCall(let waiter, let result):
            waiter.continuation.resume(with: result)
        case .heartbeat(let waiter, let details):
            waiter.onHeartbeat(details)
        case .partialOutput(let waiter, let chunk):
            waiter.onPartialOutput(chunk)
        case .write(let line):
            write(line)
        case .killAfterGrace:
            after(configuration.terminationGrace) { $0.graceExpired() }
        case .giveUpWaitingForExit(let token):
            after(configuration.terminationGrace + .seconds(5)) { $0.exitWaitTimedOut(token: token) }
        case .resumeExitWaiter(.continuation(let continuation)):
            continuation.resume()
        case .resumeExitWaiter(.action(let action)):
            action()
        case .signal, .killGroup, .closeStdin:
            break  // done under the lock
        }
    }

    /// Performs `event` after `delay`, unless the core is gone by then.
    private func after(_ delay: Duration, _ event: @escaping @Sendable (inout Machine) -> [Machine.Action]) {
        DispatchQueue.global().asyncAfter(deadline: .now() + dispatchInterval(delay)) { [weak self] in
            self?.perform(event)
        }
    }

    // MARK: Launch

    func waitUntilReady() async throws -> Data {
        try await withCheckedThrowingContinuation { continuation in
            perform { $0.waitForReady(continuation) }
        }
    }

    func cancelLaunch() {
        perform { $0.cancelLaunch() }
    }

    // MARK: Calls

    var isUsable: Bool {
        machine.withLock { $0.isUsable }
    }

    func call(
        id: Int, line: [UInt8], onHeartbeat: @escaping @Sendable (Data) -> Void,
        onPartialOutput: @escaping @Sendable (Data) -> Void
    ) async throws -> Data {
        try Task.checkCancellation()
        let token = machine.withLock { $0.makeToken() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let waiter = CallWaiter(continuation: continuation, onHeartbeat: onHeartbeat, onPartialOutput: onPartialOutput)
                perform { $0.call(waiter, id: id, token: token, line: line, isCancelled: Task.isCancelled) }
            }
        } onCancel: {
            perform { $0.cancelCall(token: token) }
        }
    }

    /// The request's line, with `input` and the heartbeat details embedded verbatim.
    func requestLine(_ request: WorkerRequest) throws -> [UInt8] {
        do {
            return try request.line()
        } catch {
            throw machine.withLock { $0.error(.invalidRequest(request: request.id, problem: error.problem)) }
        }
    }

    // MARK: Stopping

    func kill(reason: String) {
        perform { $0.kill(reason: reason) }
    }

    func onExit(_ action: @escaping @Sendable () -> Void) {
        perform { $0.waitForExit(.action(action), givingUp: false) }
    }

    func terminate() async {
        perform { $0.terminate() }
        await withCheckedContinuation { continuation in
            perform { $0.waitForExit(.continuation(continuation), givingUp: true) }
        }
    }

    func stderrTail() -> String {
        machine.withLock { $0.stderrTail }
    }
}

private func dispatchInterval(_ duration: Duration) -> DispatchTimeInterval {
    let (seconds, attoseconds) = duration.components
    let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    guard !nanoseconds.overflow, seconds >= 0 else { return seconds < 0 ? .nanoseconds(0) : .never }
    return .nanoseconds(Int(clamping: nanoseconds.partialValue + attoseconds / 1_000_000_000))
}

#else

/// Without glibc (its posix_spawn extensions, `MSG_NOSIGNAL`, `pipe2`) no worker process is spawned:
/// launching throws, so that a process pool reports it for each attempt. As no core can be made, the
/// members below are never reached.
final class Core: Sendable {
    let configuration: WorkerProcessConfiguration
    let pid: Int32 = 0

    init(_ configuration: WorkerProcessConfiguration) throws {
        throw WorkerProcessError(
            .launchFailed("worker processes are only supported on Linux (glibc)"), pid: 0,
            command: configuration.command)
    }

    func start() {}
    func waitUntilReady() async throws -> Data { throw CancellationError() }
    func cancelLaunch() {}
    var isUsable: Bool { false }
    func onExit(_ action: @escaping @Sendable () -> Void) { action() }
    func requestLine(_ request: WorkerRequest) throws -> [UInt8] { try request.line() }
    func call(
        id: Int, line: [UInt8], onHeartbeat: @escaping @Sendable (Data) -> Void,
        onPartialOutput: @escaping @Sendable (Data) -> Void
    ) async throws -> Data {
        throw CancellationError()
    }
    func kill(reason: String) {}
    func terminate() async {}
    func stderrTail() -> String { "" }
}

#endif
