import Foundation

#if canImport(Glibc)
package import Glibc
#endif

#if canImport(Glibc)

/// posix_spawn with pipes, a fresh process group and default signal dispositions.
package enum Spawner {
    package typealias FileActions = UnsafeMutablePointer<posix_spawn_file_actions_t>
    typealias AddChdir = @convention(c) (FileActions?, UnsafePointer<CChar>?) -> Int32
    package typealias AddCloseFrom = @convention(c) (FileActions?, Int32) -> Int32
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32

    // glibc extensions the Swift Glibc module does not declare (it is imported without _GNU_SOURCE).
    static let addChdir = symbol("posix_spawn_file_actions_addchdir_np", as: AddChdir.self)
    package static let addCloseFrom = symbol("posix_spawn_file_actions_addclosefrom_np", as: AddCloseFrom.self)
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
        posix_spawnattr_setpgroup(&attributes, 0)
        resetSignals(&attributes, flags: POSIX_SPAWN_SETPGROUP)

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

    /// Has the child start with every signal's default disposition (what the parent ignores, such as
    /// SIGPIPE, would be inherited) and none blocked; sets the attributes' flags to those and `flags`.
    package static func resetSignals(_ attributes: inout posix_spawnattr_t, flags: Int32 = 0) {
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal: Int32 in 1..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | flags))
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

#endif
