package import Foundation

/// The lifecycle of one worker process, as a value: launch, calls, stopping and reaping.
///
/// Every event (a line on stdout, a timer, a call, a cancellation, the process's exit) is a mutating
/// method that returns what the caller must do: resume a waiter, write a line, send a signal, start a
/// timer. The machine does no I/O and knows no time; the worker's core carries out the actions. The
/// waiters are generic, so that tests can drive the machine with plain labels:
///
/// ```swift
/// var machine = WorkerProcessStateMachine<String, String, String>(pid: 42, configuration: configuration)
/// _ = machine.waitForReady("launch")  // []: the launch waits
/// let line = Array(#"{"ready":true}"#.utf8)
/// let actions = line.withUnsafeBufferPointer { machine.lineReceived($0) }
/// // [.resumeLaunch("launch", .success(<the ready line>))]
/// ```
///
/// States: ``State/starting(readyWaiter:)`` until the ready line, then ``State/idle`` and
/// ``State/calling(_:)`` while in service; anything that takes the process out of service (a kill, a
/// protocol break, a timeout, a cancellation, stdout closing, the exit) moves it to
/// ``State/stopping(_:)``, which keeps what must still be answered; ``State/exited(_:failure:)`` once
/// it is reaped.
package struct WorkerProcessStateMachine<ReadyWaiter: Sendable, CallWaiter: Sendable, ExitWaiter: Sendable>: Sendable {
    package let pid: Int32
    package let command: [String]
    let readyTimeout: Duration
    let stderrLimit: Int
    let lineLimit: Int
    private(set) var state: State = .starting(readyWaiter: nil)
    private var writer: Writer = .idle
    /// The ready line, as JSON, once it came.
    package private(set) var readyLine: Data?
    /// Callers of terminate and onExit actions, in arrival order.
    private var exitWaiters: [(token: Int, waiter: ExitWaiter)] = []
    private var nextToken = 0
    /// The end of stderr (`stderrLimit` bytes).
    private var stderr: [UInt8] = []
    /// Bytes of stderr ever read, and that count when the last call began: a call's errors quote only
    /// what the process wrote since, not what it wrote while serving other runs.
    private var stderrRead = 0
    private var stderrAtCall: Int?

    package init(pid: Int32, configuration: WorkerProcessConfiguration) {
        self.pid = pid
        self.command = configuration.command
        self.readyTimeout = configuration.readyTimeout
        self.stderrLimit = max(0, configuration.stderrLimit)
        self.lineLimit = configuration.lineLimit
    }

    // MARK: - Queries

    /// In service: ready, and neither stopped, broken nor exited.
    package var isUsable: Bool {
        switch state {
        case .idle, .calling: true
        case .starting, .stopping, .exited: false
        }
    }

    /// The process exited (it may not be reaped yet).
    package var hasExited: Bool {
        switch state {
        case .stopping(let stopping): stopping.exitSeen
        case .exited: true
        case .starting, .idle, .calling: false
        }
    }

    package var isReaped: Bool {
        if case .exited = state { true } else { false }
    }

    /// A number to tell calls and exit waiters apart.
    package mutating func makeToken() -> Int {
        nextToken += 1
        return nextToken
    }

    /// The kept stderr written since the last call began (all of it before the first call); `…` first
    /// when its start was not kept.
    package var stderrTail: String {
        guard !stderr.isEmpty else { return "" }
        var since = stderr.count
        if let mark = stderrAtCall { since = stderrRead - mark }
        let text = String(decoding: stderr.suffix(since), as: UTF8.self)
        return since > stderr.count ? "…" + text : text
    }

    /// The error for `code`, quoting the stderr tail.
    func error(_ code: WorkerProcessError.Code) -> WorkerProcessError {
        WorkerProcessError(code, pid: pid, command: command, stderr: stderrTail)
    }

    // MARK: - Launch

    /// The launch waits for the ready line (or has it, or learns that the process is gone).
    package mutating func waitForReady(_ waiter: ReadyWaiter) -> [Action] {
        if let readyLine { return [.resumeLaunch(waiter, .success(readyLine))] }
        switch state {
        case .starting:
            state = .starting(readyWaiter: waiter)
        case .stopping(var stopping):
            guard case .launch = stopping.pending else { return [] }
            stopping.pending = .launch(readyWaiter: waiter)
            state = .stopping(stopping)
        case .exited(let termination, let failure):
            return [.resumeLaunch(waiter, .failure(launchError(failure, termination)))]
        case .idle, .calling:
            break  // not without a ready line
        }
        return []
    }

    /// The ready timeout passed: kill a process still starting.
    package mutating func readyTimeoutFired() -> [Action] {
        failLaunch(.code(.readyTimeout(readyTimeout)))
    }

    /// The launching task was cancelled: kill a process still starting.
    package mutating func cancelLaunch() -> [Action] {
        failLaunch(.cancelled)
    }

    private mutating func failLaunch(_ failure: Failure) -> [Action] {
        switch state {
        case .starting(let waiter):
            let stopping = Stopping(pending: .launch(readyWaiter: waiter), failure: failure, reason: "it did not start")
            state = .stopping(stopping)
            return [.signal(.kill)]
        case .stopping(var stopping):
            guard case .launch = stopping.pending, stopping.failure == nil else { return [] }
            stopping.failure = failure
            stopping.reason = stopping.reason ?? "it did not start"
            state = .stopping(stopping)
            return [.signal(.kill)]
        case .idle, .calling, .exited:
            return []
        }
    }

    private func launchError(_ failure: Failure?, _ termination: Termination) -> any Error {
        switch failure {
        case .cancelled: CancellationError()
        case .code(let code): error(code)
        case nil: error(.exitedBeforeReady(termination))
        }
    }

    // MARK: - Calls

    /// A call asks to send its request line.
    ///
    /// - Parameters:
    ///   - token: from ``makeToken()``; names the call for ``cancelCall(token:)``.
    ///   - isCancelled: whether the calling task is cancelled, read where the machine is guarded (a
    ///     cancellation handler that ran before found no call to stop).
    /// - Returns: the line to write (or nothing while another line is being written), or the call's
    ///   refusal: not usable, busy, or cancelled (the process is left untouched).
    package mutating func call(
        _ waiter: CallWaiter, id: Int, token: Int, line: [UInt8], isCancelled: Bool
    ) -> [Action] {
        switch state {
        case .idle:
            if isCancelled { return [.resumeCall(waiter, .failure(CancellationError()))] }
            state = .calling(Call(token: token, id: id, waiter: waiter))
            stderrAtCall = stderrRead
            return write(line)
        case .calling(let current):
            return [.resumeCall(waiter, .failure(error(.busy(request: current.id))))]
        case .starting, .stopping, .exited:
            return [.resumeCall(waiter, .failure(unusableError()))]
        }
    }

    /// The calling task was cancelled: SIGTERM, then SIGKILL after the grace; the call ends with
    /// `CancellationError` once the process is gone.
    package mutating func cancelCall(token: Int) -> [Action] {
        switch state {
        case .calling(let call) where call.token == token:
            let reason = "request \(call.id) was cancelled"
            state = .stopping(Stopping(pending: .cancelledCall(call), reason: reason))
        case .stopping(var stopping):
            guard case .call(let call) = stopping.pending, call.token == token else { return [] }
            stopping.pending = .cancelledCall(call)
            stopping.reason = stopping.reason ?? "request \(call.id) was cancelled"
            state = .stopping(stopping)
        case .starting, .idle, .calling, .exited:
            return []
        }
        return [.signal(.terminate), .killAfterGrace]
    }

    private mutating func write(_ line: [UInt8]) -> [Action] {
        switch writer {
        case .idle:
            writer = .writing(queued: [])
            return [.write(line)]
        case .writing(var queued):
            writer = .idle  // drops the enum's reference, so that the append does not copy
            queued.append(line)
            writer = .writing(queued: queued)
            return []
        }
    }

    /// A line is written.
    /// - Returns: the next queued line to write, or nil (the writer is then idle).
    package mutating func writeFinished() -> [UInt8]? {
        guard case .writing(var queued) = writer, !queued.isEmpty else {
            writer = .idle
            return nil
        }
        writer = .idle
        let next = queued.removeFirst()
        writer = .writing(queued: queued)
        return next
    }

    /// Writing to stdin failed: kill the process, unless it is being stopped already (its grace period
    /// is kept). Queued lines are dropped; their calls fail with the process.
    package mutating func writeFailed(_ problem: String) -> [Action] {
        writer = .idle
        switch state {
        case .stopping(let stopping) where stopping.reason != nil: return []
        case .exited: return []
        default: return kill(reason: "its stdin could not be written (\(problem))")
        }
    }

    // MARK: - Output

    /// One line of stdout (without its `\n`).
    package mutating func lineReceived(_ line: UnsafeBufferPointer<UInt8>) -> [Action] {
        received(line.count <= lineLimit ? WireMessage(line) : nil, line: line)
    }

    /// One line of stdout, scanned already (`message` is nil for a blank line, or a line over the limit).
    mutating func received(_ message: WireMessage?, line: UnsafeBufferPointer<UInt8>) -> [Action] {
        guard line.count <= lineLimit else { return lineTooLong(quoted: WireMessage.quote(line)) }
        guard let message else { return [] }  // blank
        switch state {
        case .starting(let waiter):
            guard message.isReady else { return notReady(line) }
            state = .idle
            return becameReady(Data(line), waiter)
        case .idle:
            return unexpected(message, line)
        case .calling(let call):
            switch answer(message, line, for: call) {
            case .heartbeat(let details):
                return [.heartbeat(call.waiter, details)]
            case .partialOutput(let chunk):
                return [.partialOutput(call.waiter, chunk)]
            case .done(let result):
                state = .idle
                return [.resumeCall(call.waiter, result)]
            case .broken(let code):
                return breakProtocol(code, reason: "it broke the protocol")
            }
        case .stopping(var stopping):
            guard stopping.failure == nil else { return [] }  // being killed; the line is moot
            switch stopping.pending {
            case .launch(let waiter):
                guard message.isReady else { return notReady(line) }
                stopping.pending = .nothing
                state = .stopping(stopping)
                return becameReady(Data(line), waiter)
            case .call(let call):
                // The answer counts even if the process is stopping: it may have exited right after it.
                switch answer(message, line, for: call) {
                case .heartbeat(let details):
                    return [.heartbeat(call.waiter, details)]
                case .partialOutput(let chunk):
                    return [.partialOutput(call.waiter, chunk)]
                case .done(let result):
                    stopping.pending = .nothing
                    state = .stopping(stopping)
                    return [.resumeCall(call.waiter, result)]
                case .broken(let code):
                    return breakProtocol(code, reason: "it broke the protocol")
                }
            case .cancelledCall:
                return []
            case .nothing:
                // A line between requests is only a breach if the process was not stopped on purpose.
                guard stopping.reason == nil else { return [] }
                return unexpected(message, line)
            }
        case .exited:
            return []
        }
    }

    private enum Answer {
        case heartbeat(Data)
        case partialOutput(Data)
        case done(Result<Data, any Error>)
        case broken(WorkerProcessError.Code)
    }

    private func answer(_ message: WireMessage, _ line: UnsafeBufferPointer<UInt8>, for call: Call) -> Answer {
        switch message.response(for: call.id) {
        case .heartbeat(let details): .heartbeat(details)
        case .partialOutput(let chunk): .partialOutput(chunk)
        case .output(let output): .done(.success(output))
        case .error(let error): .done(.failure(error))
        case .malformed(let problem):
            .broken(.malformed(line: WireMessage.quote(line), problem: problem, request: call.id))
        }
    }

    private mutating func becameReady(_ line: Data, _ waiter: ReadyWaiter?) -> [Action] {
        readyLine = line
        guard let waiter else { return [] }
        return [.resumeLaunch(waiter, .success(line))]
    }

    private mutating func notReady(_ line: UnsafeBufferPointer<UInt8>) -> [Action] {
        breakProtocol(.notReady(line: WireMessage.quote(line)), reason: "it did not start")
    }

    private mutating func unexpected(_ message: WireMessage, _ line: UnsafeBufferPointer<UInt8>) -> [Action] {
        let problem = message.problem ?? "unexpected line"
        return breakProtocol(
            .malformed(line: WireMessage.quote(line), problem: problem, request: nil), reason: "it broke the protocol")
    }

    /// The process wrote a line longer than the configured limit (quoted: its start); it is killed.
    package mutating func lineTooLong(quoted: String) -> [Action] {
        let request: Int?
        switch state {
        case .exited: return []
        case .stopping(let stopping):
            guard stopping.failure == nil else { return [] }
            switch stopping.pending {
            case .call(let call), .cancelledCall(let call): request = call.id
            case .launch, .nothing: request = nil
            }
        case .calling(let call): request = call.id
        case .starting, .idle: request = nil
        }
        let problem = "a line longer than \(lineLimit) bytes"
        let code = WorkerProcessError.Code.malformed(line: quoted, problem: problem, request: request)
        return breakProtocol(code, reason: "it broke the protocol")
    }

    /// Kills the process for breaking the protocol; the launch or call waiting learns why once it is gone.
    private mutating func breakProtocol(_ code: WorkerProcessError.Code, reason: String) -> [Action] {
        let stopped: Void? = stop { stopping in
            stopping.failure = .code(code)
            stopping.reason = reason
        }
        return stopped == nil ? [] : [.signal(.kill)]
    }

    /// Bytes of stderr.
    package mutating func stderrReceived(_ bytes: UnsafeBufferPointer<UInt8>) {
        stderrRead += bytes.count
        stderr.append(contentsOf: bytes.suffix(stderrLimit))
        if stderr.count > stderrLimit { stderr.removeFirst(stderr.count - stderrLimit) }
    }

    /// Stdout reached EOF. The process normally exits right after; if it lives on without stdout, it is
    /// of no use, so it is killed after the grace.
    package mutating func stdoutClosed() -> [Action] {
        let stopped: Void? = stop { $0.stdoutClosed = true }
        return stopped == nil ? [] : [.killAfterGrace]
    }

    // MARK: - Stopping

    /// SIGKILL now; idempotent. The first reason given is the one calls are refused with.
    package mutating func kill(reason: String) -> [Action] {
        let stopped: Void? = stop { $0.reason = $0.reason ?? reason }
        return stopped == nil ? [] : [.signal(.kill)]
    }

    /// Close stdin and SIGTERM, then SIGKILL after the grace.
    package mutating func terminate() -> [Action] {
        let stopped: Void? = stop { $0.reason = $0.reason ?? "it was terminated" }
        return stopped == nil ? [.closeStdin] : [.closeStdin, .signal(.terminate), .killAfterGrace]
    }

    /// The grace after SIGTERM (or after stdout closed) is over.
    package mutating func graceExpired() -> [Action] {
        isReaped ? [] : [.signal(.kill)]
    }

    /// Someone waits for the process to be reaped (resumed at once if it is).
    /// - Parameter givingUp: stop waiting 5 s after the SIGKILL would be due.
    package mutating func waitForExit(_ waiter: ExitWaiter, givingUp: Bool) -> [Action] {
        if isReaped { return [.resumeExitWaiter(waiter)] }
        let token = makeToken()
        exitWaiters.append((token, waiter))
        return givingUp ? [.giveUpWaitingForExit(token: token)] : []
    }

    /// The waiter (``Action/giveUpWaitingForExit(token:)``) stops waiting, if it still does.
    package mutating func exitWaitTimedOut(token: Int) -> [Action] {
        guard let index = exitWaiters.firstIndex(where: { $0.token == token }) else { return [] }
        return [.resumeExitWaiter(exitWaiters.remove(at: index).waiter)]
    }

    /// The reaper saw the process exit (it is not reaped yet).
    package mutating func processExited() {
        _ = stop { $0.exitSeen = true }
    }

    /// The reader is about to take what is left in the pipes: once the process has exited, its helpers
    /// may still hold them open, so stop those (the unreaped leader keeps the group id from reuse).
    package mutating func drainingOutput() -> [Action] {
        if case .stopping(let stopping) = state, stopping.exitSeen { [.killGroup] } else { [] }
    }

    /// The process is reaped: every waiter is resumed, and a launch or call still waiting fails.
    package mutating func reaped(_ termination: Termination) -> [Action] {
        var actions: [Action] = exitWaiters.map { .resumeExitWaiter($0.waiter) }
        exitWaiters = []
        var failure: Failure?
        switch state {
        case .starting(let waiter):
            if let waiter { actions.append(.resumeLaunch(waiter, .failure(launchError(nil, termination)))) }
        case .idle:
            break
        case .calling(let call):
            actions.append(.resumeCall(call.waiter, .failure(error(.exited(termination, request: call.id)))))
        case .stopping(let stopping):
            failure = stopping.failure
            switch stopping.pending {
            case .nothing, .launch(readyWaiter: nil):
                break
            case .launch(let waiter?):
                actions.append(.resumeLaunch(waiter, .failure(launchError(failure, termination))))
            case .call(let call):
                let error =
                    if case .code(let code) = failure { error(code) }
                    else { error(.exited(termination, request: call.id)) }
                actions.append(.resumeCall(call.waiter, .failure(error)))
            case .cancelledCall(let call):
                actions.append(.resumeCall(call.waiter, .failure(CancellationError())))
            }
        case .exited:
            return []
        }
        state = .exited(termination, failure: failure)
        return actions
    }

    // MARK: - Private

    /// Takes the process out of service (if it is in service) and applies `change`.
    /// - Returns: nil, changing nothing, once the process is reaped.
    private mutating func stop<Value>(_ change: (inout Stopping) -> Value) -> Value? {
        var stopping: Stopping
        switch state {
        case .starting(let waiter): stopping = Stopping(pending: .launch(readyWaiter: waiter))
        case .idle: stopping = Stopping(pending: .nothing)
        case .calling(let call): stopping = Stopping(pending: .call(call))
        case .stopping(let current): stopping = current
        case .exited: return nil
        }
        let result = change(&stopping)
        state = .stopping(stopping)
        return result
    }

    private func unusableError() -> WorkerProcessError {
        let reason =
            switch state {
            case .exited(let termination, _): "it exited with \(termination)"
            case .stopping(let stopping):
                stopping.reason ?? (stopping.stdoutClosed ? "it closed its stdout" : "it is not ready")
            case .starting, .idle, .calling: "it is not ready"
            }
        return error(.unusable(reason))
    }
}
