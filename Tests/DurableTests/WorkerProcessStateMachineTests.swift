import Durable
import Foundation
import Testing

/// The waiters are labels: each action names the launch, call or exit waiter it is for.
private typealias Machine = WorkerProcessStateMachine<String, String, String>

/// pid 42, grace and timeouts as given; lines over 100 bytes and stderr beyond 64 bytes are cut.
private func makeMachine(readyTimeout: Duration = .milliseconds(500), stderrLimit: Int = 64) -> Machine {
    let configuration = WorkerProcessConfiguration(
        command: ["python3", "/opt/model_worker.py"], readyTimeout: readyTimeout, stderrLimit: stderrLimit,
        lineLimit: 100)
    return Machine(pid: 42, configuration: configuration)
}

/// How errors name the process.
private let process = "process 42 (python3 model_worker.py)"

/// A machine whose launch got its ready line.
private func readyMachine(stderrLimit: Int = 64) -> Machine {
    var machine = makeMachine(stderrLimit: stderrLimit)
    _ = machine.waitForReady("launch")
    _ = machine.line(#"{"ready":true}"#)
    return machine
}

private func requestLine(_ id: Int) -> [UInt8] { Array("request \(id)\n".utf8) }

extension WorkerProcessStateMachine {
    fileprivate mutating func line(_ text: String) -> [Action] {
        Array(text.utf8).withUnsafeBufferPointer { lineReceived($0) }
    }

    fileprivate mutating func stderr(_ text: String) {
        Array(text.utf8).withUnsafeBufferPointer { stderrReceived($0) }
    }

    /// Starts call `waiter` for request `id`; returns its actions and its token.
    fileprivate mutating func startCall(_ waiter: CallWaiter, id: Int, cancelled: Bool = false) -> (
        actions: [Action], token: Int
    ) {
        let token = makeToken()
        return (call(waiter, id: id, token: token, line: requestLine(id), isCancelled: cancelled), token)
    }
}

/// The actions as text, e.g. `["SIGKILL", "c1: error process 42 (...) exited with ..."]`.
private func describe(_ actions: [Machine.Action]) -> [String] {
    actions.map { action in
        switch action {
        case .resumeLaunch(let waiter, let result): "\(waiter): \(describe(result))"
        case .resumeCall(let waiter, let result): "\(waiter): \(describe(result))"
        case .partialOutput(let waiter, let chunk): "partial \(waiter): \(String(decoding: chunk, as: UTF8.self))"
        case .heartbeat(let waiter, let details): "\(waiter) heartbeat \(String(decoding: details, as: UTF8.self))"
        case .write(let line): "write \(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .newlines))"
        case .closeStdin: "close stdin"
        case .signal(.terminate): "SIGTERM"
        case .signal(.kill): "SIGKILL"
        case .killGroup: "SIGKILL group"
        case .killAfterGrace: "SIGKILL after grace"
        case .giveUpWaitingForExit: "give up waiting later"
        case .resumeExitWaiter(let waiter): "\(waiter) exited"
        }
    }
}

private func describe(_ result: Result<Data, any Error>) -> String {
    switch result {
    case .success(let output): "output \(String(decoding: output, as: UTF8.self))"
    case .failure(is CancellationError): "cancelled"
    case .failure(let error as ApplicationError):
        "application error \(error.type): \(error.message)\(error.nonRetryable ? " (non-retryable)" : "")"
    case .failure(let error): "error \(error)"
    }
}

@Suite struct WorkerProcessStateMachineTests {
    // MARK: Launch

    @Test func theReadyLineResumesTheLaunchAndPutsTheProcessInService() {
        var machine = makeMachine()
        #expect(!machine.isUsable)
        #expect(describe(machine.waitForReady("launch")) == [])
        #expect(describe(machine.line("  ")) == [], "blank lines are ignored")
        #expect(describe(machine.line(#"{"ready":true,"pid":42}"#)) == [#"launch: output {"ready":true,"pid":42}"#])
        #expect(machine.isUsable)
        #expect(machine.readyLine == Data(#"{"ready":true,"pid":42}"#.utf8))
    }

    @Test func aReadyLineBeforeTheLaunchWaitsIsHandedOverWhenItDoes() {
        var machine = makeMachine()
        #expect(describe(machine.line(#"{"ready":true}"#)) == [])
        #expect(machine.isUsable)
        #expect(describe(machine.waitForReady("launch")) == [#"launch: output {"ready":true}"#])
    }

    @Test func readyTimeoutWhileStartingKillsAndFailsTheLaunchOnceReaped() {
        var machine = makeMachine()
        _ = machine.waitForReady("launch")
        #expect(describe(machine.readyTimeoutFired()) == ["SIGKILL"])
        #expect(!machine.isUsable)
        #expect(describe(machine.readyTimeoutFired()) == [], "killed once")
        #expect(describe(machine.line(#"{"ready":true}"#)) == [], "a ready line after the kill is moot")
        machine.processExited()
        #expect(describe(machine.reaped(.signaled(9))) == [
            "launch: error \(process) was not ready within 0.5 seconds; killed"
        ])
    }

    @Test func readyTimeoutAfterTheReadyLineIsIgnored() {
        var machine = readyMachine()
        #expect(describe(machine.readyTimeoutFired()) == [])
        #expect(machine.isUsable)
    }

    @Test func aLineOtherThanTheReadyLineFailsTheLaunch() {
        var machine = makeMachine()
        _ = machine.waitForReady("launch")
        #expect(describe(machine.line("loading model...")) == ["SIGKILL"])
        #expect(describe(machine.reaped(.signaled(9))) == [
            #"launch: error \#(process) printed "loading model..." instead of its ready line; killed"#
        ])
    }

    @Test func exitBeforeReadyFailsTheLaunchWithTheStatusAndStderr() {
        var machine = makeMachine()
        _ = machine.waitForReady("launch")
        machine.stderr("cannot load model\n")
        machine.processExited()
        #expect(describe(machine.drainingOutput()) == ["SIGKILL group"])
        #expect(describe(machine.reaped(.exited(5))) == [
            "launch: error \(process) exited with status 5 before it was ready; stderr: cannot load model"
        ])

        // A launch that asks only once the process is reaped learns the same.
        var late = makeMachine()
        late.processExited()
        _ = late.reaped(.exited(5))
        #expect(describe(late.waitForReady("launch")) == [
            "launch: error \(process) exited with status 5 before it was ready"
        ])
    }

    @Test func cancellingTheLaunchKillsTheProcessAndReportsCancellation() {
        var machine = makeMachine()
        _ = machine.waitForReady("launch")
        #expect(describe(machine.cancelLaunch()) == ["SIGKILL"])
        #expect(describe(machine.readyTimeoutFired()) == [], "the first failure is the one reported")
        #expect(describe(machine.reaped(.signaled(9))) == ["launch: cancelled"])
    }

    // MARK: Calls

    @Test func aCallIsWrittenAndAnsweredAndTheProcessServesTheNext() {
        var machine = readyMachine()
        #expect(describe(machine.startCall("c1", id: 17).actions) == ["write request 17"])
        #expect(machine.isUsable, "usable while serving a call")
        #expect(machine.writeFinished() == nil)
        #expect(describe(machine.line(#"{"id":17,"output":{"n":1}}"#)) == [#"c1: output {"n":1}"#])
        #expect(describe(machine.startCall("c2", id: 18).actions) == ["write request 18"])
        #expect(describe(machine.line(#"{"output":0.1,"id":18}"#)) == ["c2: output 0.1"])
    }

    @Test func anErrorAnswerFailsTheCallAndKeepsTheProcess() {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 17)
        let line = #"{"id":17,"error":{"type":"ModelOverloaded","message":"queue full","nonRetryable":true}}"#
        #expect(describe(machine.line(line)) == ["c1: application error ModelOverloaded: queue full (non-retryable)"])
        #expect(machine.isUsable)
        _ = machine.startCall("c2", id: 18)
        #expect(describe(machine.line(#"{"id":18,"error":{}}"#)) == ["c2: application error ApplicationError: "])
    }

    @Test func heartbeatLinesReachTheCallInOrderWithoutEndingIt() {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 9)
        #expect(describe(machine.line(#"{"id":9,"heartbeat":{"step":0}}"#)) == [#"c1 heartbeat {"step":0}"#])
        #expect(describe(machine.line(#"{"id":9,"heartbeat":{"step":1}}"#)) == [#"c1 heartbeat {"step":1}"#])
        #expect(machine.isUsable)
        #expect(describe(machine.line(#"{"id":9,"output":{"steps":2}}"#)) == [#"c1: output {"steps":2}"#])
    }

    @Test(arguments: [
        ("this is not json", #"(not a JSON object): "this is not json""#),
        (#"{"id":18,"output":1}"#, #"(id 18 instead of 17): "{"id":18,"output":1}""#),
        (#"{"id":17,"output":1,"error":{}}"#, "(more than one of output, error, heartbeat and partial)"),
        (#"{"id":"17","output":1}"#, "(the id is not an integer)"),
        (#"{"id":17,"error":"boom"}"#, "(the error is not an object with string type and message"),
    ])
    func aProtocolBreakingAnswerKillsTheProcessAndFailsTheCallOnceReaped(line: String, problem: String) throws {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 17)
        #expect(describe(machine.line(line)) == ["SIGKILL"])
        #expect(!machine.isUsable)
        #expect(describe(machine.line(#"{"id":17,"output":1}"#)) == [], "what follows the breach is moot")
        let failure = try #require(describe(machine.reaped(.signaled(9))).first)
        #expect(failure.hasPrefix("c1: error \(process) broke the protocol during request 17 \(problem)"), "\(failure)")
        #expect(failure.hasSuffix("; killed"))
    }

    @Test func aLineBetweenRequestsKillsTheProcess() {
        var machine = readyMachine()
        #expect(describe(machine.line(#"{"id":1,"heartbeat":{}}"#)) == ["SIGKILL"])
        #expect(describe(machine.startCall("c1", id: 2).actions) == [
            "c1: error \(process) is not usable: it broke the protocol"
        ])
    }

    @Test func aLineOverTheLimitKillsTheProcess() {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 17)
        let long = #"{"id":17,"output":""# + String(repeating: "x", count: 100) + #""}"#
        #expect(describe(machine.line(long)) == ["SIGKILL"])
        #expect(describe(machine.lineTooLong(quoted: "\"…\"")) == [], "one failure is reported")
        let failure = describe(machine.reaped(.signaled(9)))
        #expect(failure.count == 1)
        #expect(failure.first?.hasPrefix(
            #"c1: error \#(process) broke the protocol during request 17 (a line longer than 100 bytes): "{"id":17,"#)
            == true, "\(failure)")

        // The reader reports an unterminated line that grew past the limit the same way.
        var unterminated = readyMachine()
        #expect(describe(unterminated.lineTooLong(quoted: #""xxxx…""#)) == ["SIGKILL"])
        #expect(describe(unterminated.startCall("c2", id: 3).actions) == [
            "c2: error \(process) is not usable: it broke the protocol"
        ])
    }

    @Test func exitDuringACallFailsItWithTheStatusAndTheStderrWrittenSinceItBegan() {
        var machine = readyMachine()
        machine.stderr("claimant 7 scored\n")
        _ = machine.startCall("c1", id: 17)
        machine.stderr("CUDA error: out of memory\n")
        machine.processExited()
        #expect(!machine.isUsable)
        #expect(describe(machine.drainingOutput()) == ["SIGKILL group"])
        #expect(describe(machine.stdoutClosed()) == ["SIGKILL after grace"])
        #expect(describe(machine.reaped(.exited(3))) == [
            "c1: error \(process) exited with status 3 during request 17; stderr: CUDA error: out of memory"
        ])
        #expect(describe(machine.graceExpired()) == [], "no signal once reaped: the pid may be another process's")
        #expect(describe(machine.kill(reason: "it was killed")) == [])
        #expect(describe(machine.startCall("c2", id: 18).actions) == [
            "c2: error \(process) is not usable: it exited with status 3; stderr: CUDA error: out of memory"
        ])
    }

    @Test func anAnswerReadAfterTheExitStillCompletesTheCall() {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 17)
        machine.processExited()
        #expect(describe(machine.line(#"{"id":17,"output":"last words"}"#)) == [#"c1: output "last words""#])
        #expect(describe(machine.reaped(.exited(0))) == [])
    }

    @Test func cancellingACallSendsSIGTERMThenSIGKILLAfterTheGrace() {
        var machine = readyMachine()
        let token = machine.startCall("c1", id: 17).token
        #expect(describe(machine.cancelCall(token: token + 1)) == [], "another call's cancellation")
        #expect(machine.isUsable)
        #expect(describe(machine.cancelCall(token: token)) == ["SIGTERM", "SIGKILL after grace"])
        #expect(!machine.isUsable)
        #expect(describe(machine.line(#"{"id":17,"output":1}"#)) == [], "a cancelled call ignores its answer")
        #expect(describe(machine.cancelCall(token: token)) == [])
        #expect(describe(machine.startCall("c2", id: 18).actions) == [
            "c2: error \(process) is not usable: request 17 was cancelled"
        ])
        #expect(describe(machine.graceExpired()) == ["SIGKILL"])
        #expect(describe(machine.reaped(.signaled(9))) == ["c1: cancelled"])
    }

    @Test func aCallCancelledBeforeItIsSentLeavesTheProcessUsable() {
        var machine = readyMachine()
        #expect(describe(machine.startCall("c1", id: 1, cancelled: true).actions) == ["c1: cancelled"])
        #expect(machine.isUsable)
        #expect(describe(machine.startCall("c2", id: 2).actions) == ["write request 2"])
    }

    @Test func aSecondCallWhileBusyIsRefusedAndTheFirstGoesOn() {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 1)
        #expect(describe(machine.startCall("c2", id: 2).actions) == ["c2: error \(process) is busy with request 1"])
        #expect(machine.isUsable)
        #expect(describe(machine.line(#"{"id":1,"output":{"steps":1}}"#)) == [#"c1: output {"steps":1}"#])
    }

    @Test func callsBeforeReadyOrAfterAKillAreRefusedWithTheFirstReason() {
        var machine = makeMachine()
        #expect(describe(machine.startCall("c1", id: 1).actions) == [
            "c1: error \(process) is not usable: it is not ready"
        ])
        _ = machine.line(#"{"ready":true}"#)
        #expect(describe(machine.kill(reason: "it was killed")) == ["SIGKILL"])
        #expect(describe(machine.kill(reason: "it was released")) == ["SIGKILL"], "idempotent")
        #expect(describe(machine.startCall("c2", id: 2).actions) == [
            "c2: error \(process) is not usable: it was killed"
        ])
    }

    // MARK: Stopping

    @Test func terminatingAnIdleProcessClosesStdinSignalsAndWaitsForTheExit() {
        var machine = readyMachine()
        #expect(describe(machine.terminate()) == ["close stdin", "SIGTERM", "SIGKILL after grace"])
        #expect(!machine.isUsable)
        #expect(describe(machine.waitForExit("terminate", givingUp: true)) == ["give up waiting later"])
        #expect(describe(machine.line(#"{"id":1,"output":1}"#)) == [], "a stopped process's last words are no breach")
        #expect(describe(machine.reaped(.signaled(15))) == ["terminate exited"])
        #expect(describe(machine.startCall("c1", id: 1).actions) == [
            "c1: error \(process) is not usable: it exited with signal 15"
        ])
        #expect(describe(machine.terminate()) == ["close stdin"], "no signal once reaped")
    }

    @Test func terminatingDuringACallLetsItsAnswerThroughOrFailsItAtTheExit() {
        var answered = readyMachine()
        _ = answered.startCall("c1", id: 17)
        #expect(describe(answered.terminate()) == ["close stdin", "SIGTERM", "SIGKILL after grace"])
        #expect(describe(answered.line(#"{"id":17,"output":"done"}"#)) == [#"c1: output "done""#])
        #expect(describe(answered.reaped(.exited(0))) == [])

        var killed = readyMachine()
        _ = killed.startCall("c1", id: 17)
        _ = killed.terminate()
        #expect(describe(killed.reaped(.signaled(15))) == [
            "c1: error \(process) exited with signal 15 during request 17"
        ])
    }

    @Test func stdoutClosingTakesTheProcessOutOfServiceAndKillsItAfterTheGrace() {
        var machine = readyMachine()
        #expect(describe(machine.stdoutClosed()) == ["SIGKILL after grace"])
        #expect(!machine.isUsable)
        #expect(describe(machine.startCall("c1", id: 1).actions) == [
            "c1: error \(process) is not usable: it closed its stdout"
        ])
        #expect(describe(machine.graceExpired()) == ["SIGKILL"])
    }

    @Test func exitWaitersAndOnExitActionsRunOnceReapedInOrder() {
        var machine = readyMachine()
        #expect(describe(machine.waitForExit("onExit", givingUp: false)) == [])
        #expect(describe(machine.waitForExit("terminate", givingUp: true)) == ["give up waiting later"])
        #expect(describe(machine.drainingOutput()) == [], "the group is killed only once the leader exited")
        machine.processExited()
        #expect(describe(machine.drainingOutput()) == ["SIGKILL group"])
        #expect(describe(machine.reaped(.exited(0))) == ["onExit exited", "terminate exited"])
        #expect(describe(machine.waitForExit("late", givingUp: false)) == ["late exited"], "at once after reaping")
        #expect(describe(machine.reaped(.exited(0))) == [], "reaped once")
    }

    @Test func anExitWaiterGivesUpWhenTheProcessOutlivesSIGKILL() throws {
        var machine = readyMachine()
        _ = machine.terminate()
        let actions = machine.waitForExit("terminate", givingUp: true)
        guard case .giveUpWaitingForExit(let token)? = actions.first else {
            Issue.record("expected a timer for the waiter, got \(describe(actions))")
            return
        }
        #expect(describe(machine.exitWaitTimedOut(token: token)) == ["terminate exited"])
        #expect(describe(machine.exitWaitTimedOut(token: token)) == [])
        #expect(describe(machine.reaped(.signaled(9))) == [], "not resumed twice")
    }

    // MARK: Writing and stderr

    @Test func linesOfLaterCallsWaitWhileALineIsBeingWritten() {
        var machine = readyMachine()
        #expect(describe(machine.startCall("c1", id: 1).actions) == ["write request 1"])
        // The process answers before it has read its whole line.
        _ = machine.line(#"{"id":1,"output":1}"#)
        #expect(describe(machine.startCall("c2", id: 2).actions) == [], "queued behind request 1's line")
        #expect(machine.writeFinished() == requestLine(2))
        #expect(machine.writeFinished() == nil)
        _ = machine.line(#"{"id":2,"output":2}"#)
        #expect(describe(machine.startCall("c3", id: 3).actions) == ["write request 3"], "the writer is idle again")
    }

    @Test func aFailedWriteKillsTheProcessAndDropsQueuedLines() {
        var machine = readyMachine()
        _ = machine.startCall("c1", id: 1)
        _ = machine.line(#"{"id":1,"output":1}"#)
        _ = machine.startCall("c2", id: 2)
        #expect(describe(machine.writeFailed("Broken pipe")) == ["SIGKILL"])
        #expect(machine.writeFinished() == nil, "request 2's line was dropped")
        #expect(describe(machine.startCall("c3", id: 3).actions) == [
            "c3: error \(process) is not usable: its stdin could not be written (Broken pipe)"
        ])
        #expect(describe(machine.reaped(.signaled(9))) == [
            "c2: error \(process) exited with signal 9 during request 2"
        ])

        // A process being terminated keeps its grace period.
        var terminating = readyMachine()
        _ = terminating.startCall("c1", id: 1)
        _ = terminating.terminate()
        #expect(describe(terminating.writeFailed("Broken pipe")) == [])
    }

    @Test func theStderrTailIsBoundedAndStartsWhereTheCallBegan() {
        var machine = readyMachine(stderrLimit: 16)
        machine.stderr("loading\n")
        #expect(machine.stderrTail == "loading\n", "all of it before the first call")
        _ = machine.startCall("c1", id: 1)
        #expect(machine.stderrTail == "")
        machine.stderr("0123456789abcdefghijklmnopqrstuvwxyz")
        #expect(machine.stderrTail == "…klmnopqrstuvwxyz", "the last 16 bytes, marked as cut")
    }
}
