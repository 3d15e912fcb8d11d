package import Foundation
package import DurableJournal

/// A long-lived child process that serves activity requests as JSON lines, one at a time.
///
/// Wire protocol (UTF-8, one JSON value per `\n`-terminated line; blank lines are ignored):
///
/// 1. On start the process prints a ready line: a JSON object with `"ready": true` (other keys are
///    allowed, e.g. `{"ready":true,"pid":4242}`). Anything else printed first, exiting first, or taking
///    longer than the configured ready timeout fails the launch. A `"model"` key reports the model the
///    process serves: `{"name":"sentiment","version":"3","weights":{"model.onnx":"<sha256>"},
///    "metadata":{"prompt":"<sha256>"}}` (only `name` required) or a string (the name alone); one that
///    is neither fails the launch (``model``).
/// 2. The engine writes one request line on stdin and waits for its answer before sending another:
///    `{"id":17,"activity":"Sentiment","attempt":1,"key":"<idempotency key>","input":<JSON>}`,
///    plus `"heartbeat":<JSON>` (the last heartbeat details of a previous attempt) when there is one.
/// 3. While working, the process may print `{"id":17,"heartbeat":<JSON>}` and `{"id":17,"partial":<JSON>}`
///    (a chunk of partial output) any number of times.
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
/// The lifecycle (starting, idle, calling, stopping, exited) is a ``WorkerProcessStateMachine``; the
/// core behind this facade only carries out the actions it returns.
package final class WorkerProcess: Sendable {
    private let core: Core
    /// The process id, which also names its process group.
    package let pid: Int32
    /// The ready line the process printed, as JSON.
    package let readyLine: Data
    /// The model the process reported in its ready line (`"model": {...}`), if any.
    package let model: ModelIdentity?

    private init(core: Core, readyLine: Data, model: ModelIdentity?) {
        self.core = core
        self.pid = core.pid
        self.readyLine = readyLine
        self.model = model
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
        let model: ModelIdentity?
        do {
            model = try Self.reportedModel(in: readyLine)
        } catch {
            let process = WorkerProcess(core: core, readyLine: readyLine, model: nil)
            process.kill()
            await process.terminate()  // gone when this returns, as for every other failure
            throw WorkerProcessError(
                .badModel(error.problem), pid: core.pid, command: configuration.command, stderr: process.stderrTail())
        }
        return WorkerProcess(core: core, readyLine: readyLine, model: model)
    }

    /// Why a ready line's `model` cannot be read.
    struct BadModel: Error {
        let problem: String
    }

    /// The `model` of a ready line: an object `{"name", "version", "weights": {file: sha256},
    /// "metadata": {key: value}}` (only `name` required), or a string (the name alone); `nil` when
    /// absent or `null`.
    static func reportedModel(in readyLine: Data) throws(BadModel) -> ModelIdentity? {
        guard let object = try? JSONSerialization.jsonObject(with: readyLine) as? [String: Any],
            let value = object["model"], !(value is NSNull)
        else { return nil }
        if let name = value as? String {
            guard !name.isEmpty else { throw BadModel(problem: "its model name is empty") }
            return ModelIdentity(name: name, version: "")
        }
        guard let fields = value as? [String: Any] else {
            throw BadModel(problem: "its model is neither an object nor a string")
        }
        guard let name = fields["name"] as? String, !name.isEmpty else {
            throw BadModel(problem: "its model has no name (a non-empty string)")
        }
        func strings(_ key: String) throws(BadModel) -> [String: String] {
            guard let member = fields[key], !(member is NSNull) else { return [:] }
            guard let map = member as? [String: String] else {
                throw BadModel(problem: "its model's \(key) is not an object of strings")
            }
            return map
        }
        var version = ""
        if let member = fields["version"], !(member is NSNull) {
            guard let text = member as? String else { throw BadModel(problem: "its model's version is not a string") }
            version = text
        }
        let weights = try strings("weights")
        func isHex(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte | 0x20) }
        for (file, digest) in weights where digest.utf8.count != 64 || !digest.utf8.allSatisfy(isHex) {
            throw BadModel(problem: "its model's weights hash for \(file) is not 64 hex digits")
        }
        return ModelIdentity(
            name: name, version: version, weights: weights.mapValues { $0.lowercased() },
            metadata: try strings("metadata"))
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
    /// Heartbeat lines for this request call `onHeartbeat` with their details, and partial-output lines
    /// `onPartialOutput` with their chunk, on the reader thread and in order; keep them quick. Returns the `output` JSON verbatim. A worker error is thrown as
    /// ``ApplicationError`` (with its type and `nonRetryable` flag); the process stays usable.
    ///
    /// Throws ``WorkerProcessError`` when the process is busy or unusable, when the request's JSON is
    /// invalid (the process stays usable), when the process breaks the protocol (it is killed, and the
    /// error quotes the line) or exits (the error gives its status or signal). Cancelling the task sends
    /// SIGTERM, then SIGKILL after the grace period, and throws `CancellationError` once the process is
    /// gone; a task cancelled before the request is sent leaves the process untouched. Every error but
    /// busy, invalid-request and early cancellation leaves the process unusable and gone.
    package func call(
        _ request: WorkerRequest, onHeartbeat: @escaping @Sendable (Data) -> Void,
        onPartialOutput: @escaping @Sendable (Data) -> Void = { _ in }
    ) async throws -> Data {
        let line = try core.requestLine(request)
        return try await core.call(id: request.id, line: line, onHeartbeat: onHeartbeat, onPartialOutput: onPartialOutput)
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
