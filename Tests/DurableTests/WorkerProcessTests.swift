import Durable
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Python fixture that plays a model worker.
private let fixturePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/model_worker.py").path

private func workerConfiguration(
    _ environment: [String: String] = [:],
    readyTimeout: Duration = .seconds(20),
    grace: Duration = .seconds(2),
    stderrLimit: Int = 8192
) -> WorkerProcessConfiguration {
    WorkerProcessConfiguration(
        command: ["python3", fixturePath], environment: environment, readyTimeout: readyTimeout,
        terminationGrace: grace, stderrLimit: stderrLimit)
}

private func request(_ id: Int, _ input: String, heartbeat: String? = nil) -> WorkerRequest {
    WorkerRequest(
        id: id, activity: "Sentiment", input: Data(input.utf8), attempt: 1, idempotencyKey: "run-1/\(id)",
        heartbeatDetails: heartbeat.map { Data($0.utf8) })
}

private func object(_ data: Data) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// True once no process has this id (it was reaped).
private func isGone(_ pid: Int32) -> Bool {
    Glibc.kill(pid, 0) == -1 && errno == ESRCH
}

/// Thread-safe list of what callbacks received.
private final class Recorder: Sendable {
    private let items = Mutex<[Data]>([])
    func append(_ item: Data) { items.withLock { $0.append(item) } }
    var all: [Data] { items.withLock { $0 } }
}

/// Starts request 1 with `input`, cancels it once its first heartbeat arrives, expects the call to end
/// with `CancellationError`, and returns how long that took after the cancel.
private func cancelAfterFirstHeartbeat(_ worker: WorkerProcess, _ input: String) async -> Duration {
    let (started, beat) = AsyncStream<Void>.makeStream()
    let task = Task { try await worker.call(request(1, input)) { _ in beat.yield() } }
    var beats = started.makeAsyncIterator()
    _ = await beats.next()
    let clock = ContinuousClock()
    let start = clock.now
    task.cancel()
    await #expect(throws: CancellationError.self) { try await task.value }
    return clock.now - start
}

/// Runs `body`, returning the WorkerProcessError it throws (failing the test if it throws anything else).
private func workerError<T>(_ body: () async throws -> T) async -> WorkerProcessError? {
    do {
        _ = try await body()
        Issue.record("expected a WorkerProcessError")
    } catch let error as WorkerProcessError {
        return error
    } catch {
        Issue.record("expected a WorkerProcessError, got \(error)")
    }
    return nil
}

@Suite(.timeLimit(.minutes(2))) struct WorkerProcessTests {
    @Test func readyLineThenEchoRoundTripsCountCallsInOneProcess() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        #expect(worker.isUsable)
        let ready = try object(worker.readyLine)
        #expect(ready["ready"] as? Bool == true)
        #expect(ready["pid"] as? Int == Int(worker.pid))
        for call in 1...3 {
            let input = #"{"op":"echo","value":{"n":\#(call),"s":"a\"b"}}"#
            let output = try await worker.call(request(call, input)) { _ in }
            let fields = try object(output)
            #expect(fields["calls"] as? Int == call)
            #expect(fields["pid"] as? Int == Int(worker.pid))
            let value = try #require(fields["value"] as? [String: Any])
            #expect(value["n"] as? Int == call)
            #expect(value["s"] as? String == "a\"b")
        }
        // Output bytes are passed through verbatim, whatever the JSON value.
        let scalar = try await worker.call(request(4, #"{"op":"echo","value":0.1}"#)) { _ in }
        #expect(String(decoding: scalar, as: UTF8.self).contains(#""value":0.1,"#))
        await worker.terminate()
        #expect(!worker.isUsable)
        #expect(isGone(worker.pid))
    }

    @Test func requestEnvelopeIsEscapedAndInputMayBePrettyPrinted() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        let tricky = WorkerRequest(
            id: 7, activity: "Sen\"ti\nment\\", input: Data("{\n  \"op\": \"request\"\n}\n".utf8), attempt: 3,
            idempotencyKey: "key/\u{1}/é", heartbeatDetails: Data("[1,\n2]".utf8))
        let envelope = try object(try await worker.call(tricky) { _ in })
        #expect(envelope["id"] as? Int == 7)
        #expect(envelope["activity"] as? String == "Sen\"ti\nment\\")
        #expect(envelope["attempt"] as? Int == 3)
        #expect(envelope["key"] as? String == "key/\u{1}/é")
        #expect(envelope["heartbeat"] as? [Int] == [1, 2])
        #expect(worker.isUsable)
        await worker.terminate()
    }

    @Test func errorResponsesThrowApplicationErrorsAndKeepTheProcess() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        do {
            _ = try await worker.call(
                request(1, #"{"op":"fail","type":"ModelOverloaded","message":"queue full","nonRetryable":true}"#)
            ) { _ in }
            Issue.record("expected an ApplicationError")
        } catch let error as ApplicationError {
            #expect(error.type == "ModelOverloaded")
            #expect(error.message == "queue full")
            #expect(error.nonRetryable)
        }
        do {
            _ = try await worker.call(request(2, #"{"op":"no-such-op"}"#)) { _ in }
            Issue.record("expected an ApplicationError")
        } catch let error as ApplicationError {
            #expect(error.type == "UnknownOp")
            #expect(error.nonRetryable)
        }
        #expect(worker.isUsable)
        let output = try object(try await worker.call(request(3, #"{"op":"echo","value":1}"#)) { _ in })
        #expect(output["calls"] as? Int == 3)
        await worker.terminate()
    }

    @Test func malformedLineKillsTheProcess() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        let error = await workerError { try await worker.call(request(17, #"{"op":"malformed"}"#)) { _ in } }
        let text = String(describing: try #require(error))
        #expect(text.contains("this is not json"))
        #expect(text.contains("process \(worker.pid) (python3 model_worker.py)"))
        #expect(text.contains("request 17"))
        #expect(!worker.isUsable)
        #expect(isGone(worker.pid))
        let next = await workerError { try await worker.call(request(18, #"{"op":"echo"}"#)) { _ in } }
        #expect(String(describing: try #require(next)).contains("not usable"))
    }

    @Test func crashReportsExitStatusAndStderr() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        let input = #"{"op":"crash","stderr":"CUDA error: out of memory\n"}"#
        let error = await workerError { try await worker.call(request(5, input)) { _ in } }
        let text = String(describing: try #require(error))
        #expect(text.contains("exited with status 3 during request 5"))
        #expect(text.contains("CUDA error: out of memory"))
        #expect(error?.pid == worker.pid)
        #expect(!worker.isUsable)
        #expect(isGone(worker.pid))
    }

    @Test func aFailedCallQuotesOnlyTheStderrWrittenSinceItBegan() async throws {
        // What the process wrote while serving another run stays out of this call's failure.
        let worker = try await WorkerProcess.launch(workerConfiguration())
        _ = try await worker.call(request(1, #"{"op":"stderr","text":"claimant 7731 SSN 078-05\n"}"#)) { _ in }
        let error = await workerError {
            try await worker.call(request(2, #"{"op":"crash","stderr":"segfault in layer 12\n"}"#)) { _ in }
        }
        let text = String(describing: try #require(error))
        #expect(text.hasSuffix("; stderr: segfault in layer 12"), "\(text)")
        #expect(!text.contains("claimant"))
    }

    @Test func aResponseLineOverTheLimitIsAProtocolError() async throws {
        var configuration = workerConfiguration()
        configuration.lineLimit = 1_000
        let worker = try await WorkerProcess.launch(configuration)
        let long = String(repeating: "y", count: 5_000)
        let error = await workerError { try await worker.call(request(1, #"{"op":"echo","value":"\#(long)"}"#)) { _ in } }
        let text = String(describing: try #require(error))
        #expect(text.contains("broke the protocol during request 1 (a line longer than 1000 bytes): \"{\"id\":1,"), "\(text)")
        #expect(!worker.isUsable)
        #expect(isGone(worker.pid))
    }

    @Test func heartbeatsArriveInOrderAndDetailsOfAPreviousAttemptAreSent() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        let beats = Recorder()
        let input = #"{"op":"heartbeat","count":3,"ms":5}"#
        let output = try object(
            try await worker.call(request(9, input, heartbeat: #"{"step":7}"#)) { beats.append($0) })
        #expect(output["steps"] as? Int == 3)
        #expect((output["resumedFrom"] as? [String: Any])?["step"] as? Int == 7)
        let received = beats.all.map { String(decoding: $0, as: UTF8.self) }
        #expect(received == [#"{"step":0}"#, #"{"step":1}"#, #"{"step":2}"#])
        let fresh = try object(try await worker.call(request(10, #"{"op":"heartbeat","count":1}"#)) { _ in })
        #expect(fresh["resumedFrom"] is NSNull)
        await worker.terminate()
    }

    @Test func cancellationTerminatesTheProcess() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration(grace: .seconds(10)))
        let elapsed = await cancelAfterFirstHeartbeat(worker, #"{"op":"stall_heartbeats","count":1,"then_sleep_ms":20000}"#)
        #expect(elapsed < .seconds(6))  // SIGTERM sufficed; no wait for the 10 s grace
        #expect(isGone(worker.pid))
        #expect(!worker.isUsable)
        #expect(worker.stderrTail().contains("terminating"))
    }

    @Test func processIgnoringSIGTERMIsKilledAfterTheGrace() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration(grace: .milliseconds(300)))
        let elapsed = await cancelAfterFirstHeartbeat(worker, #"{"op":"ignore_term","announce":true,"ms":20000}"#)
        #expect(elapsed >= .milliseconds(250))
        #expect(elapsed < .seconds(5))
        #expect(isGone(worker.pid))
    }

    @Test func cancelledBeforeSendingLeavesTheProcessUsable() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await worker.call(request(1, #"{"op":"echo"}"#)) { _ in }
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(worker.isUsable)
        let output = try object(try await worker.call(request(2, #"{"op":"echo"}"#)) { _ in })
        #expect(output["calls"] as? Int == 1)
        await worker.terminate()
    }

    @Test func secondConcurrentCallIsRefusedAsBusy() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        let (started, beat) = AsyncStream<Void>.makeStream()
        let input = #"{"op":"stall_heartbeats","count":1,"then_sleep_ms":1500}"#  // long enough under load
        let first = Task { try await worker.call(request(1, input)) { _ in beat.yield() } }
        var beats = started.makeAsyncIterator()
        _ = await beats.next()
        let error = await workerError { try await worker.call(request(2, #"{"op":"echo"}"#)) { _ in } }
        #expect(String(describing: try #require(error)).contains("busy with request 1"))
        let output = try object(try await first.value)
        #expect(output["steps"] as? Int == 1)
        #expect(worker.isUsable)
        await worker.terminate()
    }

    @Test func invalidInputIsRefusedWithoutHarm() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration())
        for input in ["", "{", #"{"op":"echo"} x"#, "[1,]", "01", #""\x""#] {
            let error = await workerError { try await worker.call(request(1, input)) { _ in } }
            #expect(String(describing: try #require(error)).contains("input is not valid JSON"))
        }
        #expect(worker.isUsable)
        _ = try await worker.call(request(2, #"{"op":"echo","value":[true,false,null,-1.5e3,"\u00e9"]}"#)) { _ in }
        await worker.terminate()
    }

    @Test func killAndTerminateStopTheProcess() async throws {
        let killed = try await WorkerProcess.launch(workerConfiguration())
        killed.kill()
        killed.kill()
        #expect(!killed.isUsable)
        await killed.terminate()  // returns once it is gone
        #expect(isGone(killed.pid))

        let terminated = try await WorkerProcess.launch(workerConfiguration())
        await terminated.terminate()
        #expect(isGone(terminated.pid))
        #expect(!terminated.isUsable)
        let error = await workerError { try await terminated.call(request(1, #"{"op":"echo"}"#)) { _ in } }
        #expect(String(describing: try #require(error)).contains("not usable"))
    }

    @Test func releasingTheLastReferenceKillsTheProcess() async throws {
        func launchAndDrop() async throws -> Int32 {
            try await WorkerProcess.launch(workerConfiguration()).pid
        }
        let pid = try await launchAndDrop()
        // Reaping happens on the worker's own thread: give it a moment.
        let deadline = ContinuousClock.now + .seconds(5)
        while !isGone(pid) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(isGone(pid))
    }

    @Test func stderrTailIsBounded() async throws {
        let worker = try await WorkerProcess.launch(workerConfiguration(stderrLimit: 16))
        let input = #"{"op":"stderr","text":"0123456789abcdefghijklmnopqrstuvwxyz"}"#
        _ = try await worker.call(request(1, input)) { _ in }
        // stderr is read by another thread than stdout: wait briefly for the text to arrive.
        let deadline = ContinuousClock.now + .seconds(5)
        while worker.stderrTail() != "…klmnopqrstuvwxyz" && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(worker.stderrTail() == "…klmnopqrstuvwxyz", "the last 16 bytes, marked as cut")
        await worker.terminate()
    }

    @Test func readyTimeoutKillsTheProcess() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let configuration = workerConfiguration(["WARMUP_MS": "20000"], readyTimeout: .milliseconds(400))
        let error = await workerError { try await WorkerProcess.launch(configuration) }
        let failure = try #require(error)
        #expect(String(describing: failure).contains("not ready within"))
        #expect(clock.now - start < .seconds(5))
        #expect(failure.pid > 0)
        #expect(isGone(failure.pid))
    }

    @Test func badReadyLineFailsTheLaunch() async throws {
        for line in ["loading weights...", #"{"ready":false}"#] {
            let error = await workerError { try await WorkerProcess.launch(workerConfiguration(["READY_LINE": line])) }
            let failure = try #require(error)
            #expect(String(describing: failure).contains("instead of its ready line"))
            #expect(String(describing: failure).contains(line))
            #expect(isGone(failure.pid))
        }
    }

    @Test func exitBeforeReadyReportsStderr() async throws {
        let configuration = workerConfiguration(["EXIT_BEFORE_READY": "1"])
        let error = await workerError { try await WorkerProcess.launch(configuration) }
        let text = String(describing: try #require(error))
        #expect(text.contains("exited with status 5 before it was ready"))
        #expect(text.contains("cannot load model"))
    }

    @Test func missingExecutableFailsTheLaunch() async throws {
        let configuration = WorkerProcessConfiguration(command: ["no-such-worker-binary"])
        let error = await workerError { try await WorkerProcess.launch(configuration) }
        #expect(String(describing: try #require(error)).contains("could not start"))
        let missingFile = WorkerProcessConfiguration(command: ["/nonexistent/worker"])
        let other = await workerError { try await WorkerProcess.launch(missingFile) }
        #expect(String(describing: try #require(other)).contains("could not start"))
    }

    @Test func anInputLargerThanThePipeReachesAProcessThatReadsLate() async throws {
        // 1 MB is several times what the socket's buffers hold (about 200 KB each way): the rest is
        // written once the process reads, from a dispatch thread (the caller's thread does not wait).
        let worker = try await WorkerProcess.launch(workerConfiguration(["READ_DELAY_MS": "300"]))
        let value = String(repeating: "x", count: 1 << 20)
        let output = try await worker.call(request(1, #"{"op":"echo","value":"\#(value)"}"#)) { _ in }
        #expect(try object(output)["value"] as? String == value)
        let next = try await worker.call(request(2, #"{"op":"echo","value":"small"}"#)) { _ in }
        #expect(try object(next)["value"] as? String == "small")
        await worker.terminate()
    }
}
