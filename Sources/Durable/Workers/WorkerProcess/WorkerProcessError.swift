import Foundation

/// Why a worker process could not start or could not answer a request.
///
/// The description names the process and its command, and ends with the tail of its stderr, e.g.
/// `process 1234 (python3 model_worker.py) exited with signal 9 during request 17; stderr: ...`.
/// Errors reported by the worker itself are thrown as ``ApplicationError`` instead.
package struct WorkerProcessError: Error, Sendable, CustomStringConvertible {
    enum Code: Sendable {
        case launchFailed(String)
        case exitedBeforeReady(Termination)
        case notReady(line: String)
        case readyTimeout(Duration)
        case badModel(String)
        case exited(Termination, request: Int)
        case malformed(line: String, problem: String, request: Int?)
        case busy(request: Int)
        case unusable(String)
        case invalidRequest(request: Int, problem: String)
    }

    let code: Code
    /// The process id; 0 when the process could not be started.
    package let pid: Int32
    package let command: [String]
    /// The tail of the process's stderr when the error was made.
    package let stderr: String

    init(_ code: Code, pid: Int32, command: [String], stderr: String = "") {
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
        case .badModel(let problem):
            text = "\(process) printed a ready line whose model cannot be read: \(problem); killed"
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

/// How a process ended, as `waitpid` reported it.
package enum Termination: Sendable, Equatable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// It was killed by this signal.
    case signaled(Int32)
    /// It was reaped by someone else, or stopped rather than ended.
    case unknown

    /// Decodes a `waitpid` status (the `WIFEXITED`/`WIFSIGNALED` macros, which Swift does not import).
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

    package var description: String {
        switch self {
        case .exited(let status): "status \(status)"
        case .signaled(let signal): "signal \(signal)"
        case .unknown: "an unknown status"
        }
    }
}
