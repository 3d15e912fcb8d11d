import Durable
public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, its standard output and error going to files.
///
/// The suites start hundreds of processes. Foundation's `Process.run()` on Linux (swift-corelibs-
/// foundation before its PR #5472, which this toolchain predates) reads the whole 256-byte `d_name`
/// of every `/proc/self/fd` entry and now and then reads past the end of glibc's buffer: the test
/// process died of a bad pointer dereference in `memcpy` under `Process.run()` during a full run.
/// This spawns without it.
public final class SpawnedProcess: @unchecked Sendable {
    // @unchecked: the state is behind `lock`.
    public let pid: pid_t
    private let lock = NSLock()
    private var exit: (status: Int32, reason: Process.TerminationReason)?

    /// Starts `executable` (a path) with `arguments` and this process's environment with
    /// `environment` over it; standard input is /dev/null.
    /// - Parameters:
    ///   - stdout: the file standard output goes to (appended to, created if missing).
    ///   - stderr: the file standard error goes to; `nil`: the same as standard output.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], stdout: String,
        stderr: String? = nil
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let flags = O_WRONLY | O_CREAT | O_APPEND
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout, flags, 0o644)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr, flags, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)
        }
        _ = Spawner.addCloseFrom?(&actions, 3)  // the test process's journals and sockets stay out

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        Spawner.resetSignals(&attributes)

        let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw TestProcessError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// Whether the process has not exited yet (it is reaped when it has).
    public var isRunning: Bool { poll(blocking: false) == nil }

    /// The exit status, or the signal that ended it; waits for the process to end.
    public var terminationStatus: Int32 { waitUntilExit().status }
    public var terminationReason: Process.TerminationReason { waitUntilExit().reason }

    @discardableResult
    public func waitUntilExit() -> (status: Int32, reason: Process.TerminationReason) {
        poll(blocking: true)!
    }

    public func terminate() { _ = kill(pid, SIGTERM) }

    private func poll(blocking: Bool) -> (status: Int32, reason: Process.TerminationReason)? {
        lock.lock()
        defer { lock.unlock() }
        if let exit { return exit }
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if result == 0 { return nil }
            if result == -1 && errno == EINTR { continue }
            guard result == pid else {
                // Reaped by someone else (nothing in the tests should): ended, status unknown.
                if result == -1 && errno == ECHILD {
                    exit = (-1, .exit)
                    return exit
                }
                return nil
            }
            break
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import (macros).
        let signal = status & 0x7f
        exit = signal == 0 ? ((status >> 8) & 0xff, .exit) : (signal, .uncaughtSignal)
        return exit
    }
}
