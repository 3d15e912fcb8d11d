package import Foundation

/// The states of a worker process and the actions its machine returns.
extension WorkerProcessStateMachine {
    /// A signal for the process group.
    package enum Signal: Sendable, Equatable {
        /// SIGTERM: asks the process to stop.
        case terminate
        /// SIGKILL.
        case kill
    }

    /// What the caller must do.
    package enum Action: Sendable {
        /// Resume the launch waiting for the ready line.
        case resumeLaunch(ReadyWaiter, Result<Data, any Error>)
        /// Resume the call with its output or its failure.
        case resumeCall(CallWaiter, Result<Data, any Error>)
        /// Pass a heartbeat's details to the call's callback.
        case heartbeat(CallWaiter, Data)
        /// Pass a chunk of partial output to the call's callback.
        case partialOutput(CallWaiter, Data)
        /// Write this request line to stdin, then report ``writeFinished()`` or ``writeFailed(_:)``.
        case write([UInt8])
        /// Close stdin (EOF asks the process to exit).
        case closeStdin
        /// Signal the process group (or the process, if it left its group). Do it before anything else
        /// can reach the machine (under its lock): once ``reaped(_:)`` the pid may name another process.
        case signal(Signal)
        /// SIGKILL what is left of the process group (helpers still holding its pipes); under the lock too.
        case killGroup
        /// Report ``graceExpired()`` once the termination grace has passed.
        case killAfterGrace
        /// Report ``exitWaitTimedOut(token:)`` for this waiter 5 s after the grace (a process that
        /// survives SIGKILL must not hold its caller for ever).
        case giveUpWaitingForExit(token: Int)
        /// The process is reaped (or the waiter gave up): resume this exit waiter.
        case resumeExitWaiter(ExitWaiter)
    }

    /// One request being served.
    struct Call: Sendable {
        var token: Int
        var id: Int
        var waiter: CallWaiter
    }

    /// Why the process was killed, to report to a launch or call still waiting.
    enum Failure: Sendable {
        case cancelled
        case code(WorkerProcessError.Code)
    }

    /// What still waits on a process that is out of service.
    enum Pending: Sendable {
        case nothing
        /// The launch: the ready line may still come (unless the process failed).
        case launch(readyWaiter: ReadyWaiter?)
        /// A call: its answer may still come (unless the process failed).
        case call(Call)
        /// A cancelled call: ignores its answer and ends with `CancellationError` once the process is gone.
        case cancelledCall(Call)
    }

    /// A process out of service, waiting to be reaped.
    struct Stopping: Sendable {
        var pending: Pending
        /// The protocol break, timeout or launch cancellation it was killed for; from then on its lines
        /// are moot.
        var failure: Failure?
        /// Why it may not be called (the first reason given is kept).
        var reason: String?
        var stdoutClosed = false
        /// The reaper saw it exit; it waits to be reaped (so the process group id is not reused yet).
        var exitSeen = false
    }

    enum State: Sendable {
        /// Spawned; the ready line has not come. The waiter is nil until ``waitForReady(_:)``.
        case starting(readyWaiter: ReadyWaiter?)
        /// In service, between calls.
        case idle
        /// In service, serving one call.
        case calling(Call)
        /// Out of service, on its way out.
        case stopping(Stopping)
        /// Reaped: nothing is signalled any more. `failure` is kept for a launch that asks late.
        case exited(Termination, failure: Failure?)
    }

    /// The stdin writer: one line at a time, so that lines are never interleaved (a process may answer
    /// before it has read its whole line, and the next call's line then waits here).
    enum Writer: Sendable {
        case idle
        case writing(queued: [[UInt8]])
    }
}
