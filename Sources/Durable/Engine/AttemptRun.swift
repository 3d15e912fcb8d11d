import Dispatch
import Foundation
import Synchronization

/// One attempt of an ``ActivityExecution``: its ``AttemptStateMachine`` under a lock, and the sink of
/// its heartbeats. Its events are passed to the machine with ``handle(_:)``; the execution carries
/// out the actions.
final class AttemptRun: HeartbeatSink {
    typealias Machine = AttemptStateMachine<Lease, Task<Void, Never>>

    let number: Int
    /// The registration current when the attempt was issued (its pool and code).
    let registration: ActivityRegistration
    private let execution: ActivityExecution  // the cycle ends when the execution drops its attempt
    /// When the attempt was issued (uptime nanoseconds): its wait for a slot counts from here.
    let issuedAt = DispatchTime.now().uptimeNanoseconds
    /// The attempt's `durable.activity` span, from its issue to its settlement (none without a tracer).
    let span: SpanBox?
    private let machine: Mutex<Machine>
    /// What the attempt's code publishes (``ActivityContext/publish(_:)``): made at the first chunk,
    /// since most attempts publish none; `closed` once the attempt ended.
    private let output = Mutex<(sink: PartialOutput?, closed: Bool)>((nil, false))

    init(
        execution: ActivityExecution, registration: ActivityRegistration, number: Int,
        configuration: Machine.Configuration, span: SpanBox?
    ) {
        self.execution = execution
        self.registration = registration
        self.number = number
        self.span = span
        self.machine = Mutex(Machine(number: number, configuration: configuration))
    }

    /// The attempt's partial output, made if need be. - Throws: `CancellationError` once the attempt ended.
    func outputSink() throws -> PartialOutput {
        try output.withLock { output throws -> PartialOutput in
            guard !output.closed else { throw CancellationError() }
            if let sink = output.sink { return sink }
            let sink = execution.makeOutput(attempt: number)
            output.sink = sink
            return sink
        }
    }

    /// The attempt ended: later chunks are refused. - Returns: the chunks not journaled yet (see
    /// ``PartialOutput/close()``).
    func closeOutput() -> Data? {
        let sink = output.withLock { output -> PartialOutput? in
            output.closed = true
            return output.sink
        }
        return sink?.close()
    }

    /// Passes one event to the machine. - Returns: what the caller must do.
    func handle(_ event: (inout Machine) -> Machine.Action) -> Machine.Action {
        machine.withLock { event(&$0) }
    }

    /// The request for a slot has returned (see ``AttemptStateMachine/slotRequestReturned()``).
    func slotRequestReturned() {
        machine.withLock { $0.slotRequestReturned() }
    }

    // MARK: - HeartbeatSink

    func heartbeat(_ details: Data?) throws {
        let now = DispatchTime.now().uptimeNanoseconds
        switch machine.withLock({ $0.heartbeat(details, now: now) }) {
        case .accepted:
            break
        case .journal(let details):
            execution.journalHeartbeat(self, details)
        case .rejected:
            throw CancellationError()
        }
    }
}
