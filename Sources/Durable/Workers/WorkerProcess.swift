import Dispatch
package import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Configuration and requests

/// What to run as a worker process, and how patiently to treat it.
///
/// `command[0]` is an absolute or relative path (when it contains a `/`) or a name looked up in the
/// `PATH` of the child's environment, which is ``environment`` merged over the parent's. Unless the
/// environment says otherwise, `PYTHONUNBUFFERED=1` is added so that Python workers flush each line.
package struct WorkerProcessConfiguration: Sendable {
    /// The executable and its arguments.
    package var command: [String]
    /// Variables merged over the parent's environment.
    package var environment: [String: String]
    /// The child's working directory; the parent's when nil.
    package var workingDirectory: String?
    /// How long the process may take to print its ready line before it is killed.
    package var readyTimeout: Duration
    /// The delay between SIGTERM and SIGKILL when the process is stopped.
    package var terminationGrace: Duration
    /// How many bytes of the end of stderr are kept for error messages.
    package var stderrLimit: Int
    /// The longest stdout line accepted; a process that writes more without a newline broke the
    /// protocol and is killed (its output is not buffered without bound).
    package var lineLimit: Int

    package init(
        command: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        readyTimeout: Duration = .seconds(30),
        terminationGrace: Duration = .seconds(2),
        stderrLimit: Int = 8192,
        lineLimit: Int = 64 << 20
    ) {
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.readyTimeout = readyTimeout
        self.terminationGrace = terminationGrace
        self.stderrLimit = stderrLimit
        self.lineLimit = max(1, lineLimit)
    }
}

/// One activity attempt sent to a worker process.
///
/// `input` and `heartbeatDetails` are JSON texts, embedded verbatim in the request line (line breaks,
/// which valid JSON can only hold as whitespace, are replaced by spaces).
package struct WorkerRequest: Sendable {
    /// Echoed by every response line for this request.
    package var id: Int
    package var activity: String
    /// Any JSON value.
    package var input: Data
    package var attempt: Int
    package var idempotencyKey: String
    /// The JSON details of the last heartbeat of a previous attempt, if any.
    package var heartbeatDetails: Data?

    package init(
        id: Int,
        activity: String,
        input: Data,
        attempt: Int = 1,
        idempotencyKey: String,
        heartbeatDetails: Data? = nil
    ) {
        self.id = id
        self.activity = activity
        self.input = input
        self.attempt = attempt
        self.idempotencyKey = idempotencyKey
        self.heartbeatDetails = heartbeatDetails
    }
}

// MARK: - Errors

/// Why a worker process could not start or could not answer a request.
///
/// The description names the process and its command, and ends with the tail of its stderr, e.g.
/// `process 1234 (python3 model_worker.py) exited with signal 9 during request 17; stderr: ...`.
/// Errors reported by the worker itself are thrown as ``ApplicationError`` instead.
package struct WorkerProcessError: Error, Sendable, CustomStringConvertible {
    fileprivate enum Code: Sendable {
        case launchFailed(String)
        case exitedBeforeReady(Termination)
        case notReady(line: String)
        case readyTimeout(Duration)
        case exited(Termination, request: Int)
        case malformed(line: String, problem: String, request: Int?)
        case busy(request: Int)
        case unusable(String)
        case invalidRequest(request: Int, problem: String)
    }

    fileprivate let code: Code
    /// The process id; 0 when the process could not be started.
    package let pid: Int32
    package let command: [String]
    /// The tail of the process's stderr when the error was made.
    package let stderr: String

    fileprivate init(_ code: Code, pid: Int32, command: [String], stderr: String = "") {
        self.code = code
        self.pid = pid
        self.command = command
        self.stderr = stderr
    }

    package var description: String {
        let process = pid > 0 ? "process \(pid) (\(Self.summary(command)))" : "(\(Self.summary(command)))"
        let text: String
        switch code {
        case .launchFailed(let reason):
            text = "could not start \(process): \(reason)"
        case .exitedBeforeReady(let termination):
            text = "\(process) exited with \(termination) before it was ready"
        case .notReady(let line):
            text = "\(process) printed \(line) instead of its ready line; killed"
        case .readyTimeout(let timeout):
            text = "\(process) was not ready within \(timeout); killed"
        case .exited(let termination, let request):
            text = "\(process) exited with \(termination) during request \(request)"
        case .malformed(let line, let problem, let request):
            let when = request.map { "during request \($0)" } ?? "between requests"
            text = "\(process) broke the protocol \(when) (\(problem)): \(line); killed"
        case .busy(let request):
            text = "\(process) is busy with request \(request)"
        case .unusable(let reason):
            text = "\(process) is not usable: \(reason)"
        case .invalidRequest(let request, let problem):
            text = "request \(request) for \(process) is invalid: \(problem)"
        }
        let tail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !tail.isEmpty else { return text }
        return "\(text); stderr: \(tail)"  // at most the configured stderrLimit
    }

    /// The command for messages: absolute paths shortened to their last component.
    private static func summary(_ command: [String]) -> String {
        let words = command.map { $0.hasPrefix("/") ? URL(fileURLWithPath: $0).lastPathComponent : $0 }
        let text = words.joined(separator: " ")
        return text.count > 120 ? String(text.prefix(120)) + "…" : text
    }
}

/// How a process ended.
private enum Termination: Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    case unknown

    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        if signal == 0 {
            self = .exited((status >> 8) & 0xff)
        } else if signal != 0x7f {
            self = .signaled(signal)
        } else {
            self = .unknown
        }
    }

    var description: String {
        switch self {
        case .exited(let status): "status \(status)"
        case .signaled(let signal): "signal \(signal)"
        case .unknown: "an unknown status"
        }
    }
}

// MARK: - WorkerProcess

/// A long-lived child process that serves activity requests as JSON lines, one at a time.
///
/// Wire protocol (UTF-8, one JSON value per `\n`-terminated line; blank lines are ignored):
///
/// 1. On start the process prints a ready line: a JSON object with `"ready": true` (other keys are
///    allowed, e.g. `{"ready":true,"pid":4242,"model":"sentiment-v3"}`). Anything else printed first,
///    exiting first, or taking longer than the configured ready timeout fails the launch.
/// 2. The engine writes one request line on stdin and waits for its answer before sending another:
///    `{"id":17,"activity":"Sentiment","attempt":1,"key":"<idempotency key>","input":<JSON>}`,
///    plus `"heartbeat":<JSON>` (the last heartbeat details of a previous attempt) when there is one.
/// 3. While working, the process may print `{"id":17,"heartbeat":<JSON>}` any number of times.
/// 4. It then prints exactly one of
///    `{"id":17,"output":<JSON>}` (success; any JSON value) or
///    `{"id":17,"error":{"type":"T","message":"M","nonRetryable":false}}` (failure; the three keys are
///    optional and default to `"ApplicationError"`, `""` and `false`).
/// 5. Any other line on stdout (not a JSON object, no integer `id`, another request's `id`, not exactly
///    one of `output`/`error`/`heartbeat`, or anything between requests) breaks the protocol: the
///    process is killed and replaced. Logs belong on stderr, which is read continuously; its last bytes
///    are quoted in error messages.
/// 6. EOF on stdin means "exit now". SIGTERM asks the process to stop; SIGKILL follows after a grace
///    period. Signals go to the process group the worker leads, so helper processes it forks are
///    stopped with it, and whatever is left of the group is killed once the worker has exited.
///
/// Stdout is read by a dedicated thread that splits lines and resumes the waiting call directly; a
/// second thread waits for the process to exit and wakes the reader, which reaps it (no zombies).
/// Timeouts are the caller's: cancelling the task awaiting ``call(_:onHeartbeat:)`` stops the process.
package final class WorkerProcess: Sendable {
    private let core: Core
    /// The process id, which also names its process group.
    package let pid: Int32
    /// The ready line the process printed, as JSON.
    package let readyLine: Data

    private init(core: Core, readyLine: Data) {
        self.core = core
        self.pid = core.pid
        self.readyLine = readyLine
    }

    deinit {
        // Nothing can call this process any more; do not leave it running.
        core.kill(reason: "it was released")
    }

    package var configuration: WorkerProcessConfiguration { core.configuration }

    /// Spawns the process and waits for its ready line.
    ///
    /// Throws ``WorkerProcessError`` (quoting the stderr tail) when the process cannot be started, exits
    /// before it is ready, prints something other than a ready line first, or is not ready within
    /// ``WorkerProcessConfiguration/readyTimeout`` (it is then killed). Throws `CancellationError` when the
    /// task is cancelled meanwhile (the process is killed). In every failure case the process is gone
    /// when this returns.
    package static func launch(_ configuration: WorkerProcessConfiguration) async throws -> WorkerProcess {
        try Task.checkCancellation()
        let core = try Core(configuration)
        core.start()
        let readyLine = try await withTaskCancellationHandler {
            try await core.waitUntilReady()
        } onCancel: {
            core.cancelLaunch()
        }
        return WorkerProcess(core: core, readyLine: readyLine)
    }

    /// False once the process exited, was killed or stopped, or broke the protocol.
    package var isUsable: Bool { core.isUsable }

    /// Calls `action` once the process has exited and been reaped (at once if it has), on the reader
    /// thread; keep it quick.
    package func onExit(_ action: @escaping @Sendable () -> Void) {
        core.onExit(action)
    }

    /// Sends one request and waits for its output.
    ///
    /// Heartbeat lines for this request call `onHeartbeat` with their details, on the reader thread and
    /// in order; keep it quick. Returns the `output` JSON verbatim. A worker error is thrown as
    /// ``ApplicationError`` (with its type and `nonRetryable` flag); the process stays usable.
    ///
    /// Throws ``WorkerProcessError`` when the process is busy or unusable, when the request's JSON is
    /// invalid (the process stays usable), when the process breaks the protocol (it is killed, and the
    /// error quotes the line) or exits (the error gives its status or signal). Cancelling the task sends
    /// SIGTERM, then SIGKILL after the grace period, and throws `CancellationError` once the process is
    /// gone; a task cancelled before the request is sent leaves the process untouched. Every error but
    /// busy, invalid-request and early cancellation leaves the process unusable and gone.
    package func call(_ request: WorkerRequest, onHeartbeat: @escaping @Sendable (Data) -> Void) async throws -> Data {
        let line = try core.requestLine(request)
        return try await core.call(id: request.id, line: line, onHeartbeat: onHeartbeat)
    }

    /// Sends SIGKILL now (to the process group); idempotent. (A timeout or cancellation sends SIGTERM
    /// first and SIGKILL after the grace period.)
    package func kill() {
        core.kill(reason: "it was killed")
    }

    /// Closes stdin and sends SIGTERM, then SIGKILL after the grace period; returns once the process is
    /// gone, or 5 s after the SIGKILL if it survives that.
    package func terminate() async {
        await core.terminate()
    }

    /// The kept stderr (at most ``WorkerProcessConfiguration/stderrLimit`` bytes) written since the last
    /// call began, or all of it before the first call; `…` first when its start was not kept.
    package func stderrTail() -> String {
        core.stderrTail()
    }
}

// MARK: - Core

/// The state shared by a worker's facade, its reader and reaper threads, and its timers.
///
/// Kept apart from ``WorkerProcess`` so that releasing the facade kills the process even though the
/// threads still hold the core.
private final class Core: Sendable {
    private enum Phase {
        case starting
        case ready
    }

    private enum Failure {
        case cancelled
        case code(WorkerProcessError.Code)
    }

    private struct Call {
        var token: Int
        var id: Int
        var continuation: CheckedContinuation<Data, any Error>
        var onHeartbeat: @Sendable (Data) -> Void
        var cancelled = false
    }

    private struct State {
        var phase = Phase.starting
        var readyLine: Data?
        var readyWaiter: CheckedContinuation<Data, any Error>?
        var call: Call?
        /// The protocol failure, timeout or cancellation that made us kill the process.
        var failure: Failure?
        /// Why the process may not be called any more (set once; termination has priority in messages).
        var unusableReason: String?
        var stdoutClosed = false
        /// Set by the reaper thread once the process is a zombie waiting to be reaped.
        var exited = false
        /// Set once reaped; from then on the pid may name another process, so no more signals.
        var termination: Termination?
        /// Callers of ``terminate()``, by token, and ``onExit(_:)`` actions.
        var exitWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var exitActions: [@Sendable () -> Void] = []
        /// The end of stderr (``WorkerProcessConfiguration/stderrLimit`` bytes).
        var stderr: [UInt8] = []
        /// Bytes of stderr ever read, and that count when the last call began: a call's errors quote
        /// only what the process wrote since, not what it wrote while serving other runs.
        var stderrRead = 0
        var stderrAtCall: Int?
        /// A request line is being written; lines of later calls wait in `queuedLines`, so that lines
        /// are never interleaved on stdin (a process may answer before it has read its whole line).
        var writing = false
        var queuedLines: [[UInt8]] = []
        var nextToken = 0
    }

    /// A continuation to resume or a callback to call, once the lock is released.
    private enum Action {
        case resume(CheckedContinuation<Data, any Error>, Result<Data, any Error>)
        case exited(CheckedContinuation<Void, Never>)
        case heartbeat(@Sendable (Data) -> Void, Data)
        case call(@Sendable () -> Void)

        func run() {
            switch self {
            case .resume(let continuation, let result): continuation.resume(with: result)
            case .exited(let continuation): continuation.resume()
            case .heartbeat(let callback, let details): callback(details)
            case .call(let action): action()
            }
        }
    }

    let configuration: WorkerProcessConfiguration
    let pid: Int32
    private let stdinFD: Int32
    private let stdoutFD: Int32
    private let stderrFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())

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
        let timeout = configuration.readyTimeout
        DispatchQueue.global().asyncAfter(deadline: .now() + dispatchInterval(timeout)) { [weak self] in
            self?.fail(.code(.readyTimeout(timeout)), whileStarting: true)
        }
    }

    // MARK: Errors

    private func error(_ code: WorkerProcessError.Code, _ state: borrowing State) -> WorkerProcessError {
        WorkerProcessError(code, pid: pid, command: configuration.command, stderr: stderrText(state))
    }

    /// The kept stderr written since the last call began (all of it before the first call); `…` first
    /// when the start was not kept.
    private func stderrText(_ state: borrowing State) -> String {
        guard !state.stderr.isEmpty else { return "" }
        var since = state.stderr.count
        if let mark = state.stderrAtCall { since = state.stderrRead - mark }
        let text = String(decoding: state.stderr.suffix(since), as: UTF8.self)
        return since > state.stderr.count ? "…" + text : text
    }

    private func unusableError(_ state: borrowing State) -> WorkerProcessError {
        let reason =
            if let termination = state.termination { "it exited with \(termination)" }
            else if let reason = state.unusableReason { reason }
            else if state.stdoutClosed { "it closed its stdout" }
            else { "it is not ready" }
        return error(.unusable(reason), state)
    }

    // MARK: Launch

    func waitUntilReady() async throws -> Data {
        try await withCheckedThrowingContinuation { continuation in
            let result = state.withLock { state -> Result<Data, any Error>? in
                if let readyLine = state.readyLine { return .success(readyLine) }
                if state.termination != nil { return .failure(launchError(state)) }
                state.readyWaiter = continuation
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }

    func cancelLaunch() {
        fail(.cancelled, whileStarting: true)
    }

    /// Kills the process for `failure` (a timeout or cancellation) unless it already failed or,
    /// when `whileStarting`, it already became ready.
    private func fail(_ failure: Failure, whileStarting: Bool) {
        state.withLock { state in
            guard state.failure == nil, !whileStarting || state.phase == .starting else { return }
            state.failure = failure
            state.unusableReason = state.unusableReason ?? "it did not start"
            signal(SIGKILL, &state)
        }
    }

    /// The error for a launch that ended without a ready line; the process is gone.
    private func launchError(_ state: borrowing State) -> any Error {
        switch state.failure {
        case .cancelled: CancellationError()
        case .code(let code): error(code, state)
        case nil: error(.exitedBeforeReady(state.termination ?? .unknown), state)
        }
    }

    // MARK: Calls

    var isUsable: Bool {
        state.withLock { state in
            state.phase == .ready && state.unusableReason == nil && !state.stdoutClosed && !state.exited
                && state.termination == nil
        }
    }

    func call(id: Int, line: [UInt8], onHeartbeat: @escaping @Sendable (Data) -> Void) async throws -> Data {
        try Task.checkCancellation()
        let token = state.withLock { state in
            state.nextToken += 1
            return state.nextToken
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let refusal = state.withLock { state -> (any Error)? in
                    guard state.phase == .ready, state.unusableReason == nil, !state.stdoutClosed, !state.exited,
                        state.termination == nil
                    else { return unusableError(state) }
                    if let call = state.call { return error(.busy(request: call.id), state) }
                    // Checked under the lock: a cancellation handler that ran before found no call to stop.
                    if Task.isCancelled { return CancellationError() }
                    state.call = Call(token: token, id: id, continuation: continuation, onHeartbeat: onHeartbeat)
                    state.stderrAtCall = state.stderrRead
                    return nil
                }
                if let refusal {
                    continuation.resume(throwing: refusal)
                } else {
                    write(line)
                }
            }
        } onCancel: {
            cancelCall(token)
        }
    }

    private func cancelCall(_ token: Int) {
        let stopping = state.withLock { state -> Bool in
            guard var call = state.call, call.token == token, !call.cancelled else { return false }
            call.cancelled = true
            state.call = call
            state.unusableReason = state.unusableReason ?? "request \(call.id) was cancelled"
            return signal(SIGTERM, &state)
        }
        if stopping { killAfterGrace() }
    }

    /// Writes the request line to stdin, after any line still being written. What the socket does not
    /// take at once (a large input to a process that is not reading yet) is written from a thread of
    /// its own, so that the caller's thread, a Swift concurrency one, never blocks on the process. A
    /// write that fails kills the process, unless it is being stopped already (its grace period is
    /// kept); the reader thread then resolves the call.
    private func write(_ line: [UInt8]) {
        let first = state.withLock { state -> Bool in
            if state.writing {
                state.queuedLines.append(line)
                return false
            }
            state.writing = true
            return true
        }
        guard first else { return }
        switch send(line, from: 0, blocking: false) {
        case .sent:
            if let next = nextLine() { Thread { self.writeBlocking(next, from: 0) }.start() }
        case .failed(let problem):
            writeFailed(problem)
        case .wouldBlock(let offset):
            Thread { self.writeBlocking(line, from: offset) }.start()
        }
    }

    /// Writes `line` from `offset`, then every queued line, blocking this (dedicated) thread.
    private func writeBlocking(_ line: [UInt8], from offset: Int) {
        var line = line
        var offset = offset
        while true {
            if case .failed(let problem) = send(line, from: offset, blocking: true) {
                writeFailed(problem)
                return
            }
            guard let next = nextLine() else { return }
            (line, offset) = (next, 0)
        }
    }

    /// The next queued line, or nil after marking the writer idle.
    private func nextLine() -> [UInt8]? {
        state.withLock { state in
            guard !state.queuedLines.isEmpty else {
                state.writing = false
                return nil
            }
            return state.queuedLines.removeFirst()
        }
    }

    private func writeFailed(_ problem: String) {
        let stopping = state.withLock { state -> Bool in
            state.writing = false
            state.queuedLines = []  // the process is gone or going; their calls fail with it
            return state.unusableReason != nil
        }
        if !stopping { kill(reason: "its stdin could not be written (\(problem))") }
    }

    private enum SendResult {
        case sent
        /// The socket's buffer is full; `offset` bytes were written.
        case wouldBlock(offset: Int)
        case failed(String)
    }

    private func send(_ line: [UInt8], from start: Int, blocking: Bool) -> SendResult {
        // A socket, so that a dead reader gives EPIPE without raising SIGPIPE in this process.
        let flags = Int32(MSG_NOSIGNAL) | (blocking ? 0 : Int32(MSG_DONTWAIT))
        return line.withUnsafeBytes { bytes -> SendResult in
            var offset = start
            while offset < bytes.count {
                let written = Glibc.send(stdinFD, bytes.baseAddress! + offset, bytes.count - offset, flags)
                if written >= 0 {
                    offset += written
                } else if errno == EAGAIN || errno == EWOULDBLOCK {
                    return .wouldBlock(offset: offset)
                } else if errno != EINTR {
                    return .failed(String(cString: strerror(errno)))
                }
            }
            return .sent
        }
    }

    /// The request's line, with `input` and the heartbeat details embedded verbatim.
    func requestLine(_ request: WorkerRequest) throws -> [UInt8] {
        func invalid(_ problem: String) -> WorkerProcessError {
            state.withLock { error(.invalidRequest(request: request.id, problem: problem), $0) }
        }
        var line: [UInt8] = []
        line.reserveCapacity(request.input.count + (request.heartbeatDetails?.count ?? 0) + 80
            + request.activity.utf8.count + request.idempotencyKey.utf8.count)
        line.append(contentsOf: #"{"id":"#.utf8)
        line.append(contentsOf: String(request.id).utf8)
        line.append(contentsOf: #","activity":"#.utf8)
        JSONText.appendString(request.activity, to: &line)
        line.append(contentsOf: #","attempt":"#.utf8)
        line.append(contentsOf: String(request.attempt).utf8)
        line.append(contentsOf: #","key":"#.utf8)
        JSONText.appendString(request.idempotencyKey, to: &line)
        line.append(contentsOf: #","input":"#.utf8)
        guard JSONText.appendValue(request.input, to: &line) else { throw invalid("input is not valid JSON") }
        if let details = request.heartbeatDetails {
            line.append(contentsOf: #","heartbeat":"#.utf8)
            guard JSONText.appendValue(details, to: &line) else {
                throw invalid("heartbeat details are not valid JSON")
            }
        }
        line.append(contentsOf: "}\n".utf8)
        return line
    }

    // MARK: Stopping

    func kill(reason: String) {
        state.withLock { state in
            state.unusableReason = state.unusableReason ?? reason
            signal(SIGKILL, &state)
        }
    }

    func onExit(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.termination != nil { return true }
            state.exitActions.append(action)
            return false
        }
        if now { action() }
    }

    func terminate() async {
        let stopping = state.withLock { state -> Bool in
            state.unusableReason = state.unusableReason ?? "it was terminated"
            _ = shutdown(stdinFD, Int32(SHUT_WR))
            return signal(SIGTERM, &state)
        }
        if stopping { killAfterGrace() }
        await withCheckedContinuation { continuation in
            let token = state.withLock { state -> Int? in
                if state.termination != nil { return nil }
                state.nextToken += 1
                state.exitWaiters[state.nextToken] = continuation
                return state.nextToken
            }
            guard let token else { return continuation.resume() }
            // A process that survives SIGKILL (stuck in the kernel, say on a device) must not hold
            // its pool or a shutdown for ever: give up waiting 5 s after the SIGKILL was due.
            let delay = dispatchInterval(configuration.terminationGrace + .seconds(5))
            DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in
                self?.state.withLock { $0.exitWaiters.removeValue(forKey: token) }?.resume()
            }
        }
    }

    private func killAfterGrace() {
        let delay = dispatchInterval(configuration.terminationGrace)
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in
            guard let self else { return }
            state.withLock { state in _ = signal(SIGKILL, &state) }
        }
    }

    /// Signals the process group (or the process, if it left its group); false once the process is reaped.
    @discardableResult
    private func signal(_ signal: Int32, _ state: inout State) -> Bool {
        guard state.termination == nil else { return false }
        if Glibc.kill(-pid, signal) != 0 { _ = Glibc.kill(pid, signal) }
        return true
    }

    func stderrTail() -> String {
        state.withLock { stderrText($0) }
    }

    // MARK: Threads

    /// Waits for the process to exit, without reaping it, and wakes the reader thread.
    private func reapLoop() {
        var info = siginfo_t()
        var result: Int32
        repeat {
            result = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT)
        } while result == -1 && errno == EINTR
        if result == 0 { state.withLock { $0.exited = true } }
        var byte: UInt8 = 1
        while Glibc.write(wakeWrite, &byte, 1) == -1 && errno == EINTR {}
        _ = close(wakeWrite)
    }

    /// Reads stdout lines and stderr until the process exits, then reaps it and resolves the waiters.
    private func readLoop() {
        let capacity = 1 << 16
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { chunk.deallocate() }
        var lines = LineBuffer()
        var stdoutOpen = true
        var stderrOpen = true

        /// Reads once from `fd` into `chunk`; nil at EOF or on error.
        func readChunk(_ fd: Int32) -> UnsafeBufferPointer<UInt8>? {
            while true {
                let count = Glibc.read(fd, chunk, capacity)
                if count > 0 {
                    return UnsafeBufferPointer(start: chunk.assumingMemoryBound(to: UInt8.self), count: count)
                }
                if count == -1 && errno == EINTR { continue }
                return nil
            }
        }
        func readStdout() {
            if let bytes = readChunk(stdoutFD) {
                guard !lines.overflowed else { return }  // killed for it; what follows is moot
                lines.append(bytes) { handle(line: $0) }
                if lines.pendingCount > configuration.lineLimit { lineTooLong(lines.discard()) }
            } else {
                stdoutOpen = false
                stdoutDidClose()
            }
        }
        func readStderr() {
            if let bytes = readChunk(stderrFD) {
                appendStderr(bytes)
            } else {
                stderrOpen = false
            }
        }

        var fds = [
            pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            fds[0].fd = stdoutOpen ? stdoutFD : -1
            fds[1].fd = stderrOpen ? stderrFD : -1
            if poll(&fds, 3, -1) == -1 {
                if errno == EINTR { continue }
                // Cannot happen with valid descriptors; stop the process rather than spin.
                kill(reason: "its output could not be read")
                var byte: UInt8 = 0
                while Glibc.read(wakeRead, &byte, 1) == -1 && errno == EINTR {}
                break
            }
            if fds[0].revents != 0 { readStdout() }
            if fds[1].revents != 0 { readStderr() }
            if fds[2].revents != 0 { break }
        }
        // The process has exited: whatever it wrote is in the pipes. Helpers that inherited them may keep
        // them open, so stop those (the unreaped leader keeps the group id from being reused) and take
        // only what is there now.
        state.withLock { state in
            if state.exited { _ = Glibc.kill(-pid, SIGKILL) }
        }
        func readable(_ fd: Int32) -> Bool {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&entry, 1, 0) == 1
        }
        var reads = 0
        while stdoutOpen && reads < 256 && readable(stdoutFD) {
            readStdout()
            reads += 1
        }
        lines.flush { handle(line: $0) }
        while stderrOpen && reads < 512 && readable(stderrFD) {
            readStderr()
            reads += 1
        }
        for fd in [stdoutFD, stderrFD, wakeRead] { _ = close(fd) }
        finish()
    }

    private func appendStderr(_ bytes: UnsafeBufferPointer<UInt8>) {
        let limit = max(0, configuration.stderrLimit)
        state.withLock { state in
            state.stderrRead += bytes.count
            state.stderr.append(contentsOf: bytes.suffix(limit))
            if state.stderr.count > limit { state.stderr.removeFirst(state.stderr.count - limit) }
        }
    }

    private func stdoutDidClose() {
        let alive = state.withLock { state -> Bool in
            state.stdoutClosed = true
            return state.termination == nil
        }
        // The process normally exits right after; if it lives on without stdout, it is of no use.
        if alive { killAfterGrace() }
    }

    /// Reaps the process and fails whatever still waits on it.
    private func finish() {
        let actions = state.withLock { state -> [Action] in
            // Without the reaper's word (someone else reaped it?), do not block under the lock.
            var status: Int32 = 0
            var result: Int32
            repeat {
                result = waitpid(pid, &status, state.exited ? 0 : WNOHANG)
            } while result == -1 && errno == EINTR
            state.termination = result == pid ? Termination(waitStatus: status) : .unknown

            var actions: [Action] = state.exitWaiters.values.map { .exited($0) }
                + state.exitActions.map { .call($0) }
            state.exitWaiters = [:]
            state.exitActions = []
            if let waiter = state.readyWaiter {
                state.readyWaiter = nil
                actions.append(.resume(waiter, .failure(launchError(state))))
            }
            if let call = state.call {
                state.call = nil
                let failure: any Error =
                    if call.cancelled { CancellationError() }
                    else if case .code(let code) = state.failure { error(code, state) }
                    else { error(.exited(state.termination ?? .unknown, request: call.id), state) }
                actions.append(.resume(call.continuation, .failure(failure)))
            }
            return actions
        }
        for action in actions { action.run() }
    }

    // MARK: Lines

    /// The process wrote a line of more than ``WorkerProcessConfiguration/lineLimit`` bytes.
    private func lineTooLong(_ quoted: String) {
        state.withLock { state in
            guard state.failure == nil else { return }
            let problem = "a line longer than \(configuration.lineLimit) bytes"
            state.failure = .code(.malformed(line: quoted, problem: problem, request: state.call?.id))
            state.unusableReason = "it broke the protocol"
            signal(SIGKILL, &state)
        }
    }

    private func handle(line: UnsafeBufferPointer<UInt8>) {
        guard line.count <= configuration.lineLimit else {
            lineTooLong(WireMessage.quote(line))
            return
        }
        guard let message = WireMessage(line) else { return }  // blank
        let actions = state.withLock { state -> [Action] in
            guard state.failure == nil else { return [] }  // being killed; the line is moot
            switch state.phase {
            case .starting:
                guard message.isReady else {
                    state.failure = .code(.notReady(line: WireMessage.quote(line)))
                    state.unusableReason = "it did not start"
                    signal(SIGKILL, &state)
                    return []
                }
                let readyLine = Data(line)
                state.phase = .ready
                state.readyLine = readyLine
                guard let waiter = state.readyWaiter else { return [] }
                state.readyWaiter = nil
                return [.resume(waiter, .success(readyLine))]

            case .ready:
                guard let call = state.call else {
                    // A line between requests: only meaningful if the process is still in service.
                    guard state.unusableReason == nil else { return [] }
                    let problem = message.problem ?? "unexpected line"
                    state.failure = .code(.malformed(line: WireMessage.quote(line), problem: problem, request: nil))
                    state.unusableReason = "it broke the protocol"
                    signal(SIGKILL, &state)
                    return []
                }
                guard !call.cancelled else { return [] }
                switch message.response(for: call.id) {
                case .heartbeat(let details):
                    return [.heartbeat(call.onHeartbeat, details)]
                case .output(let output):
                    state.call = nil
                    return [.resume(call.continuation, .success(output))]
                case .error(let error):
                    state.call = nil
                    return [.resume(call.continuation, .failure(error))]
                case .malformed(let problem):
                    let code = WorkerProcessError.Code.malformed(
                        line: WireMessage.quote(line), problem: problem, request: call.id)
                    state.failure = .code(code)
                    state.unusableReason = "it broke the protocol"
                    signal(SIGKILL, &state)
                    return []
                }
            }
        }
        for action in actions { action.run() }
    }
}

private func dispatchInterval(_ duration: Duration) -> DispatchTimeInterval {
    let (seconds, attoseconds) = duration.components
    let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    guard !nanoseconds.overflow, seconds >= 0 else { return seconds < 0 ? .nanoseconds(0) : .never }
    return .nanoseconds(Int(clamping: nanoseconds.partialValue + attoseconds / 1_000_000_000))
}

// MARK: - Lines

/// Splits bytes into `\n`-terminated lines (without the `\n`; a trailing `\r` is kept and treated as
/// whitespace by the JSON scanner).
private struct LineBuffer {
    private var pending: [UInt8] = []
    /// Set by ``discard()``: the rest of the output is ignored.
    private(set) var overflowed = false

    /// Bytes of the unterminated line so far.
    var pendingCount: Int { pending.count }

    /// Drops the unterminated line and ignores the rest of the output.
    /// - Returns: the start of the dropped line, quoted for messages.
    mutating func discard() -> String {
        defer {
            pending = []
            overflowed = true
        }
        return pending.withUnsafeBufferPointer { WireMessage.quote($0) }
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        if pending.isEmpty {
            // Fast path: whole lines straight from the read buffer.
            let start = Self.split(bytes, from: 0, body)
            if start < bytes.count { pending.append(contentsOf: bytes[start...]) }
            return
        }
        let searchFrom = pending.count
        pending.append(contentsOf: bytes)
        let consumed = pending.withUnsafeBufferPointer { Self.split($0, from: searchFrom, body) }
        pending.removeFirst(consumed)
    }

    /// Hands over each complete line, searching for line ends from `index`; returns where the rest starts.
    private static func split(
        _ buffer: UnsafeBufferPointer<UInt8>, from index: Int, _ body: (UnsafeBufferPointer<UInt8>) -> Void
    ) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var lineStart = 0
        var index = index
        while index < buffer.count, let found = memchr(base + index, 0x0A, buffer.count - index) {
            let newline = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            body(UnsafeBufferPointer(rebasing: buffer[lineStart..<newline]))
            lineStart = newline + 1
            index = lineStart
        }
        return lineStart
    }

    /// Hands over an unterminated last line, if any.
    mutating func flush(_ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard !pending.isEmpty, !overflowed else { return }
        pending.withUnsafeBufferPointer { body($0) }
        pending.removeAll()
    }
}

/// One line from a worker's stdout, scanned once.
private struct WireMessage {
    enum Response {
        case heartbeat(Data)
        case output(Data)
        case error(ApplicationError)
        case malformed(String)
    }

    private struct WireError: Decodable {
        var type: String?
        var message: String?
        var nonRetryable: Bool?
    }

    /// `"ready": true` in a JSON object.
    let isReady: Bool
    /// Why the line cannot be a response at all, if it cannot.
    let problem: String?
    private let id: Int?
    private let output: Data?
    private let errorJSON: Data?
    private let heartbeat: Data?

    /// Nil for a blank line.
    init?(_ line: UnsafeBufferPointer<UInt8>) {
        guard line.contains(where: { !JSONText.isWhitespace($0) }) else { return nil }
        var isReady = false
        var id: Int?
        var hasID = false
        var output: Data?
        var errorJSON: Data?
        var heartbeat: Data?
        if let members = JSONText.objectMembers(line) {
            for (key, value) in members {
                let keyBytes = line[key]
                let valueBytes = UnsafeBufferPointer(rebasing: line[value])
                if keyBytes.elementsEqual("id".utf8) {
                    hasID = true
                    id = JSONText.integer(valueBytes)
                } else if keyBytes.elementsEqual("output".utf8) {
                    output = Data(valueBytes)
                } else if keyBytes.elementsEqual("error".utf8) {
                    errorJSON = Data(valueBytes)
                } else if keyBytes.elementsEqual("heartbeat".utf8) {
                    heartbeat = Data(valueBytes)
                } else if keyBytes.elementsEqual("ready".utf8) {
                    isReady = valueBytes.elementsEqual("true".utf8)
                }
            }
            let kinds = [output, errorJSON, heartbeat].count { $0 != nil }
            problem =
                if !hasID { "no id" }
                else if id == nil { "the id is not an integer" }
                else if kinds == 0 { "neither output, error nor heartbeat" }
                else if kinds > 1 { "more than one of output, error and heartbeat" }
                else { nil }
        } else {
            problem = "not a JSON object"
        }
        self.isReady = isReady
        self.id = id
        self.output = output
        self.errorJSON = errorJSON
        self.heartbeat = heartbeat
    }

    func response(for expectedID: Int) -> Response {
        if let problem { return .malformed(problem) }
        if id != expectedID { return .malformed("id \(id.map(String.init) ?? "?") instead of \(expectedID)") }
        if let output { return .output(output) }
        if let heartbeat { return .heartbeat(heartbeat) }
        guard let errorJSON, let wire = try? JSONDecoder().decode(WireError.self, from: errorJSON) else {
            return .malformed("the error is not an object with string type and message and boolean nonRetryable")
        }
        return .error(
            ApplicationError(
                wire.message ?? "", type: wire.type ?? "ApplicationError", nonRetryable: wire.nonRetryable ?? false))
    }

    /// The line for messages, quoted and cut to about 200 characters.
    static func quote(_ line: UnsafeBufferPointer<UInt8>) -> String {
        let text = String(decoding: line.prefix(200), as: UTF8.self)
        return "\"" + text + (line.count > 200 ? "…\"" : "\"")
    }
}

// MARK: - JSON text

/// Byte-level JSON helpers: validation, top-level members, string escaping.
///
/// Payloads are passed through verbatim rather than decoded and re-encoded, so numbers, key order and
/// booleans come out exactly as the worker (or the caller) wrote them.
private enum JSONText {
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// Appends one JSON value, validated, with line breaks (only possible as whitespace) made spaces.
    static func appendValue(_ json: Data, to line: inout [UInt8]) -> Bool {
        let result = json.withUnsafeBytes { raw -> (valid: Bool, lineBreaks: Bool) in
            var scanner = Scanner(raw.bindMemory(to: UInt8.self))
            scanner.skipWhitespace()
            guard scanner.skipValue(depth: 0) else { return (false, false) }
            scanner.skipWhitespace()
            return (scanner.atEnd, scanner.sawLineBreak)
        }
        guard result.valid else { return false }
        let start = line.count
        line.append(contentsOf: json)
        if result.lineBreaks {
            for index in start..<line.count where line[index] == 0x0A || line[index] == 0x0D {
                line[index] = 0x20
            }
        }
        return true
    }

    static func appendString(_ string: String, to line: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        line.append(0x22)
        for byte in string.utf8 {
            switch byte {
            case 0x22: line.append(contentsOf: [0x5C, 0x22])
            case 0x5C: line.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: line.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: line.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: line.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                line.append(contentsOf: Array(#"\u00"#.utf8))
                line.append(hex[Int(byte >> 4)])
                line.append(hex[Int(byte & 0xF)])
            default: line.append(byte)
            }
        }
        line.append(0x22)
    }

    /// The raw key (without quotes) and value ranges of a line holding one JSON object; nil otherwise.
    static func objectMembers(_ bytes: UnsafeBufferPointer<UInt8>) -> [(key: Range<Int>, value: Range<Int>)]? {
        var scanner = Scanner(bytes)
        var members: [(key: Range<Int>, value: Range<Int>)] = []
        scanner.skipWhitespace()
        guard scanner.consume(0x7B) else { return nil }  // {
        scanner.skipWhitespace()
        if !scanner.consume(0x7D) {  // }
            while true {
                let keyStart = scanner.index + 1
                guard scanner.peek(0x22), scanner.skipString() else { return nil }
                let key = keyStart..<(scanner.index - 1)
                scanner.skipWhitespace()
                guard scanner.consume(0x3A) else { return nil }  // :
                scanner.skipWhitespace()
                let valueStart = scanner.index
                guard scanner.skipValue(depth: 1) else { return nil }
                members.append((key, valueStart..<scanner.index))
                scanner.skipWhitespace()
                if scanner.consume(0x2C) {  // ,
                    scanner.skipWhitespace()
                    continue
                }
                guard scanner.consume(0x7D) else { return nil }
                break
            }
        }
        scanner.skipWhitespace()
        return scanner.atEnd ? members : nil
    }

    /// A JSON number without fraction or exponent, as an Int.
    static func integer(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }) else { return nil }
        return Int(String(decoding: bytes, as: UTF8.self))
    }

    /// A validating scanner over UTF-8 JSON (RFC 8259 grammar; bytes of strings are not UTF-8-checked).
    struct Scanner {
        private let bytes: UnsafeBufferPointer<UInt8>
        private(set) var index = 0
        private(set) var sawLineBreak = false

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
        }

        var atEnd: Bool { index >= bytes.count }

        func peek(_ byte: UInt8) -> Bool {
            index < bytes.count && bytes[index] == byte
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard peek(byte) else { return false }
            index += 1
            return true
        }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09: break
                case 0x0A, 0x0D: sawLineBreak = true
                default: return
                }
                index += 1
            }
        }

        mutating func skipValue(depth: Int) -> Bool {
            guard depth < 512, index < bytes.count else { return false }
            switch bytes[index] {
            case 0x7B: return skipContainer(close: 0x7D, depth: depth, members: true)  // {
            case 0x5B: return skipContainer(close: 0x5D, depth: depth, members: false)  // [
            case 0x22: return skipString()
            case UInt8(ascii: "t"): return skipLiteral("true")
            case UInt8(ascii: "f"): return skipLiteral("false")
            case UInt8(ascii: "n"): return skipLiteral("null")
            case 0x2D, 0x30...0x39: return skipNumber()
            default: return false
            }
        }

        private mutating func skipContainer(close: UInt8, depth: Int, members: Bool) -> Bool {
            index += 1
            skipWhitespace()
            if consume(close) { return true }
            while true {
                if members {
                    guard peek(0x22), skipString() else { return false }
                    skipWhitespace()
                    guard consume(0x3A) else { return false }
                    skipWhitespace()
                }
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                if consume(0x2C) {
                    skipWhitespace()
                    continue
                }
                return consume(close)
            }
        }

        /// Skips a string starting at its opening quote.
        mutating func skipString() -> Bool {
            index += 1
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case 0x22:
                    return true
                case 0x5C:
                    guard index < bytes.count else { return false }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case 0x22, 0x5C, 0x2F, UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                        UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        guard index + 4 <= bytes.count,
                            bytes[index..<index + 4].allSatisfy({ isHexDigit($0) })
                        else { return false }
                        index += 4
                    default:
                        return false
                    }
                case 0..<0x20:
                    return false
                default:
                    continue
                }
            }
            return false
        }

        private mutating func skipLiteral(_ literal: StaticString) -> Bool {
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
            guard bytes[index..<index + count].elementsEqual(expected) else { return false }
            index += count
            return true
        }

        private mutating func skipNumber() -> Bool {
            _ = consume(0x2D)
            guard index < bytes.count else { return false }
            if bytes[index] == 0x30 {
                index += 1
            } else {
                guard skipDigits() else { return false }
            }
            if consume(0x2E) {
                guard skipDigits() else { return false }
            }
            if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
                if !consume(0x2B) { _ = consume(0x2D) }
                guard skipDigits() else { return false }
            }
            return true
        }

        /// Skips one or more digits.
        private mutating func skipDigits() -> Bool {
            let start = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
            return index > start
        }

        private func isHexDigit(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
        }
    }
}

// MARK: - Spawning

/// posix_spawn with pipes, a fresh process group and default signal dispositions.
private enum Spawner {
    typealias FileActions = UnsafeMutablePointer<posix_spawn_file_actions_t>
    typealias AddChdir = @convention(c) (FileActions?, UnsafePointer<CChar>?) -> Int32
    typealias AddCloseFrom = @convention(c) (FileActions?, Int32) -> Int32
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32

    // glibc extensions the Swift Glibc module does not declare (it is imported without _GNU_SOURCE).
    static let addChdir = symbol("posix_spawn_file_actions_addchdir_np", as: AddChdir.self)
    static let addCloseFrom = symbol("posix_spawn_file_actions_addclosefrom_np", as: AddCloseFrom.self)
    static let pipe2 = symbol("pipe2", as: Pipe2.self)

    private static func symbol<Function>(_ name: String, as type: Function.Type) -> Function? {
        guard let address = dlsym(nil, name) else { return nil }
        return unsafeBitCast(address, to: type)
    }

    /// A close-on-exec pipe, so that no other child inherits it.
    static func makePipe() -> (read: Int32, write: Int32)? {
        var fds: [Int32] = [-1, -1]
        if let pipe2 {
            guard pipe2(&fds, O_CLOEXEC) == 0 else { return nil }
        } else {
            guard pipe(&fds) == 0 else { return nil }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        return (fds[0], fds[1])
    }

    static func spawn(_ configuration: WorkerProcessConfiguration) throws -> (
        pid: Int32, stdin: Int32, stdout: Int32, stderr: Int32
    ) {
        let command = configuration.command
        func failure(_ reason: String) -> WorkerProcessError {
            WorkerProcessError(.launchFailed(reason), pid: 0, command: command)
        }
        func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

        guard let name = command.first, !name.isEmpty else { throw failure("the command is empty") }
        var environment = ProcessInfo.processInfo.environment.merging(configuration.environment) { $1 }
        if environment["PYTHONUNBUFFERED"] == nil { environment["PYTHONUNBUFFERED"] = "1" }
        guard let executable = resolve(name, path: environment["PATH"]) else {
            throw failure("\(name) is not an executable found in PATH")
        }
        if let directory = configuration.workingDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
            else { throw failure("working directory \(directory) does not exist") }
            guard addChdir != nil else { throw failure("this C library cannot set a child's working directory") }
        }

        // stdin is a socket so that writes can use MSG_NOSIGNAL; stdout and stderr are pipes.
        var stdinPair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &stdinPair) == 0
        else { throw failure("cannot create a socket pair: \(errnoText())") }
        guard let stdoutPipe = makePipe() else {
            let text = errnoText()
            for fd in stdinPair { _ = close(fd) }
            throw failure("cannot create a pipe: \(text)")
        }
        guard let stderrPipe = makePipe() else {
            let text = errnoText()
            for fd in stdinPair + [stdoutPipe.read, stdoutPipe.write] { _ = close(fd) }
            throw failure("cannot create a pipe: \(text)")
        }
        let childEnds = [stdinPair[1], stdoutPipe.write, stderrPipe.write]
        let parentEnds = [stdinPair[0], stdoutPipe.read, stderrPipe.read]
        defer { for fd in childEnds { _ = close(fd) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, target) in zip(childEnds, [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO]) {
            posix_spawn_file_actions_adddup2(&actions, fd, target)
        }
        // Even descriptors others forgot to mark close-on-exec stay out of the worker.
        _ = addCloseFrom?(&actions, 3)
        if let directory = configuration.workingDirectory, let addChdir {
            _ = addChdir(&actions, directory)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal: Int32 in 1..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        let flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let arguments = [executable] + command.dropFirst()
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }

        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            for fd in parentEnds { _ = close(fd) }
            throw failure("\(executable): \(errnoText(result))")
        }
        return (pid, stdinPair[0], stdoutPipe.read, stderrPipe.read)
    }

    /// The executable's path: `name` itself when it contains a slash, else the first match in PATH.
    private static func resolve(_ name: String, path: String?) -> String? {
        if name.contains("/") { return name }
        let search = path ?? "/usr/local/bin:/usr/bin:/bin"
        let directories = search.split(separator: ":", omittingEmptySubsequences: false)
        for directory in directories {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            var info = stat()
            if access(candidate, X_OK) == 0, stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
                return candidate
            }
        }
        return nil
    }
}
