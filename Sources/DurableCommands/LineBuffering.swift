// Only Glibc here: `stdout` is a C global that Swift 6 accepts only through a @preconcurrency import.
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
@preconcurrency import Darwin
#endif

/// Line-buffers stdout, so that a worker's output reaches a log file or a pipe as it happens.
func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}
