package import Foundation

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
