import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

#if canImport(Glibc)

/// The reader, reaper and writer threads of a worker process.
extension Core {
    // MARK: Reaper

    /// Waits for the process to exit, without reaping it, and wakes the reader thread.
    func reapLoop() {
        var info = siginfo_t()
        var result: Int32
        repeat {
            result = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT)
        } while result == -1 && errno == EINTR
        if result == 0 { machine.withLock { $0.processExited() } }
        var byte: UInt8 = 1
        while Glibc.write(wakeWrite, &byte, 1) == -1 && errno == EINTR {}
        _ = close(wakeWrite)
    }

    // MARK: Reader

    /// Reads stdout lines and stderr until the process exits, then reaps it and resolves the waiters.
    func readLoop() {
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
                if lines.pendingCount > configuration.lineLimit {
                    let quoted = lines.discard()
                    perform { $0.lineTooLong(quoted: quoted) }
                }
            } else {
                stdoutOpen = false
                perform { $0.stdoutClosed() }
            }
        }
        func readStderr() {
            if let bytes = readChunk(stderrFD) {
                machine.withLock { $0.stderrReceived(bytes) }
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
        // them open, so stop those (the machine says so once the exit was seen) and take only what is
        // there now.
        perform { $0.drainingOutput() }
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
        reap()
    }

    /// Scans a stdout line (outside the lock), then hands it to the machine.
    private func handle(line: UnsafeBufferPointer<UInt8>) {
        let message = line.count <= configuration.lineLimit ? WireMessage(line) : nil
        perform { $0.received(message, line: line) }
    }

    /// Reaps the process and fails whatever still waits on it. Under the lock, so that no signal is
    /// sent to the pid once it is free for reuse.
    private func reap() {
        perform { machine in
            // Without the reaper's word (someone else reaped it?), do not block under the lock.
            var status: Int32 = 0
            var result: Int32
            repeat {
                result = waitpid(pid, &status, machine.hasExited ? 0 : WNOHANG)
            } while result == -1 && errno == EINTR
            return machine.reaped(result == pid ? Termination(waitStatus: status) : .unknown)
        }
    }

    // MARK: Writer

    /// Writes a request line to stdin (the machine hands out one line at a time). What the socket does
    /// not take at once (a large input to a process that is not reading yet) is written from a thread of
    /// its own, so that the caller's thread, a Swift concurrency one, never blocks on the process. A
    /// write that fails kills the process, unless it is being stopped already (its grace period is
    /// kept); the reader thread then resolves the call.
    func write(_ line: [UInt8]) {
        switch send(line, from: 0, blocking: false) {
        case .sent:
            if let next = machine.withLock({ $0.writeFinished() }) {
                Thread { self.writeBlocking(next, from: 0) }.start()
            }
        case .failed(let problem):
            perform { $0.writeFailed(problem) }
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
                perform { $0.writeFailed(problem) }
                return
            }
            guard let next = machine.withLock({ $0.writeFinished() }) else { return }
            (line, offset) = (next, 0)
        }
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
}

#endif
