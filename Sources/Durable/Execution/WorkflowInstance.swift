package import DurableJournal
package import Foundation
import Synchronization

/// Type-erased workflow body: decodes the input, runs the workflow, encodes the output.
package typealias WorkflowBody = @Sendable (WorkflowContext, Data) async throws -> Data

/// One run's live workflow: its task tree on a ``WorkflowExecutor`` and the state the context
/// operations share (sequence numbers, waiting continuations, emitted commands).
///
/// An activation delivers one input event, drains the executor until the workflow is quiescent, and
/// returns the commands the workflow emitted. The instance does no I/O; the ``RunDriver`` records
/// what it returns.
package final class WorkflowInstance: @unchecked Sendable {
    // @unchecked Sendable: the mutable state below is touched only on the thread that drives the
    // current activation (context operations check this), and a run's activations never overlap
    // (the RunDriver's mailbox serializes them).
    package let runID: String
    package let workflowID: String
    package let workflowType: String
    let executor = WorkflowExecutor()
    private let body: WorkflowBody

    private(set) var now: Date = .distantPast
    private var rng: SplitMix64
    private var nextSeq = 1
    private var waiters: [Int: CheckedContinuation<Data, any Error>] = [:]
    private var activityTypes: [Int: String] = [:]
    /// Timers the workflow cancelled (their late `TimerFired` events are ignored).
    private var cancelledTimers: Set<Int> = []
    /// Timers started and neither fired nor cancelled, by sequence number: their due times.
    private var runningTimers: [Int: Date] = [:]
    /// Signals received and not yet taken, by name, oldest first.
    private var signalBuffer: [String: [Data]] = [:]
    /// Workflow tasks waiting for a signal, by name, oldest first.
    private var signalWaiters: [String: [(id: Int, continuation: CheckedContinuation<Data, any Error>)]] = [:]
    private var nextSignalWaiter = 0
    private var rootTask: Task<Void, Never>?
    /// The run that started this one as a child, from its `WorkflowStarted` event.
    private(set) var parent: ParentLink?
    /// Children whose waiting task stopped waiting (abandoned): their late outcome is ignored.
    private var abandonedChildren: Set<Int> = []
    /// A query handler is running (see ``answer(query:)``).
    private var answeringQuery = false
    /// Events recorded up to the current activation's input event, and the payload bytes seen.
    private var recordedEvents = 0
    private var payloadBytes = 0
    /// Set once a `WorkflowCancelRequested` event was delivered.
    private(set) var cancelReason: String?
    /// Query handlers the workflow registered, by name; they read workflow state and return JSON.
    private var queryHandlers: [String: () throws -> Data] = [:]
    /// During replay: the change IDs the activation being replayed marked in history.
    var recordedPatches: Set<String> = []
    /// What ``patched(_:)`` answered for each change ID in this run (the same answer every time).
    private var patchDecisions: [String: Bool] = [:]
    private var commands: [WorkflowCommand] = []
    /// The first misuse of the context; written from whatever thread misused it.
    private let misuse = Mutex<DurableError?>(nil)
    private(set) var isFinished = false
    var isReplaying = false
    /// Read by context operations on any thread (a misuse may come from anywhere).
    private let tornDown = Atomic<Bool>(false)
    private var isTornDown: Bool { tornDown.load(ordering: .acquiring) }

    package init(runID: String, workflowID: String, workflowType: String, seed: UInt64, body: @escaping WorkflowBody) {
        self.runID = runID
        self.workflowID = workflowID
        self.workflowType = workflowType
        self.rng = SplitMix64(seed: seed)
        self.body = body
    }

    /// The instance of a run recorded in the journal.
    package convenience init(run: RunRecord, body: @escaping WorkflowBody) {
        self.init(runID: run.runID, workflowID: run.workflowID, workflowType: run.workflowType, seed: run.seed, body: body)
    }

    // MARK: - Activations

    /// Delivers one input event and runs the workflow until it is quiescent.
    /// - Returns: the commands the workflow emitted, in order.
    /// - Throws: ``DurableError`` when the workflow misused the context or awaited something
    ///   outside the engine; the instance must then be torn down.
    package func activate(_ event: HistoryEvent) throws(DurableError) -> [WorkflowCommand] {
        executor.beginActivation()
        defer { executor.endActivation() }
        if executor.takeStrayEnqueue() { throw DurableError(.strayAwait(runID: runID)) }
        now = event.time
        recordedEvents = event.index + 1
        payloadBytes += event.data?.count ?? 0
        switch event.kind {
        case .workflowStarted:
            parent = event.meta.flatMap { try? JSONDecoder().decode(ParentLink.self, from: $0) }
            startRoot(input: event.data ?? Data())
        case .childClosed:
            if let waiter = waiters.removeValue(forKey: event.seq) {
                waiter.resume(returning: event.data ?? Data())
            } else if !abandonedChildren.contains(event.seq) {
                throw DurableError(.nonDeterminism(
                    runID: runID, eventIndex: event.index, recorded: WorkflowCommand.summary(of: event),
                    actual: "no child with seq \(event.seq) waiting"))
            }
        case .workflowCancelRequested:
            if cancelReason == nil {
                cancelReason = event.data.map { String(decoding: $0, as: UTF8.self) } ?? "cancelled"
                rootTask?.cancel()  // cancellation handlers run here, on the activation thread
            }
        case .signalReceived:
            let name = event.name ?? ""
            let value = event.data ?? Data("null".utf8)
            if var waiting = signalWaiters[name], !waiting.isEmpty {
                let first = waiting.removeFirst()
                signalWaiters[name] = waiting.isEmpty ? nil : waiting
                first.continuation.resume(returning: value)
            } else {
                signalBuffer[name, default: []].append(value)
            }
        case .timerFired:
            runningTimers[event.seq] = nil
            // A timer the workflow cancelled may still fire (its event was on its way): ignored.
            if let waiter = waiters.removeValue(forKey: event.seq) {
                waiter.resume(returning: Data())
            } else if !cancelledTimers.contains(event.seq) {
                throw DurableError(.nonDeterminism(
                    runID: runID, eventIndex: event.index, recorded: WorkflowCommand.summary(of: event),
                    actual: "no timer with seq \(event.seq) waiting"))
            }
        case .activityCompleted, .activityFailed, .activityCancelled:
            guard let waiter = waiters.removeValue(forKey: event.seq) else {
                throw DurableError(.nonDeterminism(
                    runID: runID, eventIndex: event.index, recorded: WorkflowCommand.summary(of: event),
                    actual: "no activity with seq \(event.seq) waiting for a result"))
            }
            let type = activityTypes[event.seq] ?? event.name ?? "?"
            switch event.kind {
            case .activityCompleted:
                waiter.resume(returning: event.data ?? Data())
            case .activityCancelled:
                waiter.resume(throwing: CancellationError())
            default:
                let cause = event.failure ?? FailureInfo(type: "Unknown", message: "no failure details recorded")
                if let kind = TimeoutKind(errorType: cause.type), let limitMs = cause.limitMs {
                    waiter.resume(throwing: kind.error(
                        limit: .milliseconds(limitMs), activityType: type, sequence: event.seq, attempt: event.attempt))
                } else {
                    waiter.resume(throwing: ActivityFailure(
                        activityType: type, sequence: event.seq, attempts: event.attempt, cause: cause))
                }
            }
            activityTypes[event.seq] = nil
        default:
            preconditionFailure("\(event.kind.name) is not an input event")
        }
        executor.drain()
        if let misuse = misuse.withLock({ $0 }) { throw misuse }
        if executor.takeStrayEnqueue() || (!isFinished && waiters.isEmpty && signalWaiters.isEmpty) {
            throw DurableError(.strayAwait(runID: runID))
        }
        defer {
            payloadBytes = historySize
            commands.removeAll()
        }
        return Self.orderingCancels(commands)
    }

    /// Sorts each run of consecutive cancel requests by sequence number: one `cancelAll()` cancels its
    /// child tasks in an order the Swift runtime chooses, which need not stay the same across versions.
    static func orderingCancels(_ commands: [WorkflowCommand]) -> [WorkflowCommand] {
        func cancelledSeq(_ command: WorkflowCommand) -> Int? {
            switch command {
            case .cancelActivity(let seq), .cancelTimer(let seq): seq
            default: nil
            }
        }
        var out = commands
        var start = 0
        while start < out.count {
            var end = start
            while end < out.count, cancelledSeq(out[end]) != nil { end += 1 }
            if end - start > 1 { out[start..<end].sort { cancelledSeq($0)! < cancelledSeq($1)! } }
            start = max(end, start + 1)
        }
        return out
    }

    private func startRoot(input: Data) {
        let context = WorkflowContext(instance: self)
        let body = self.body
        rootTask = Task(executorPreference: executor) {
            do {
                let output = try await body(context, input)
                self.finish(.completeWorkflow(result: output))
            } catch let request as ContinueAsNew {
                self.finish(.continueAsNew(input: request.input, newRunID: RunRecord.newRunID()))
            } catch {
                // After a cancellation request, ending with an error ends the run as cancelled.
                if let reason = self.cancelReason {
                    self.finish(.cancelWorkflow(reason: reason))
                } else {
                    self.finish(.failWorkflow(FailureInfo(error)))
                }
            }
        }
    }

    /// Runs `body` in a task that the workflow's cancellation does not reach (cleanup after a
    /// cancellation request), on this run's executor.
    func withoutCancellation<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try checkUse("withoutCancellation")
        return try await Task(executorPreference: executor) { try await body() }.value
    }

    private func finish(_ command: WorkflowCommand) {
        guard !isTornDown, misuse.withLock({ $0 }) == nil else { return }
        isFinished = true
        commands.append(command)
    }

    /// Ends the task tree: resumes every waiter with an eviction error and drains until the root
    /// task returns. The instance is unusable afterwards.
    package func tearDown() {
        tornDown.store(true, ordering: .releasing)
        executor.beginActivation()
        defer { executor.endActivation() }
        for _ in 0..<64 {
            let pending = waiters.sorted { $0.key < $1.key }.map(\.value)
                + signalWaiters.keys.sorted().flatMap { signalWaiters[$0]!.map(\.continuation) }
            waiters.removeAll()
            signalWaiters.removeAll()
            for waiter in pending { waiter.resume(throwing: DurableError(.evicted(runID: runID))) }
            executor.drain()
            if waiters.isEmpty && signalWaiters.isEmpty { break }
        }
        _ = executor.takeStrayEnqueue()
    }

    // MARK: - Context operations (on the activation thread only)

    /// Checks that a context operation runs inside this run's activation; records misuse otherwise.
    func checkUse(_ operation: @autoclosure () -> String) throws(DurableError) {
        if isTornDown { throw DurableError(.evicted(runID: runID)) }
        guard executor.isActivationThread else {
            let error = DurableError(.contextMisuse(operation: operation()))
            misuse.withLock { $0 = $0 ?? error }
            throw error
        }
    }

    func scheduleActivity(type: String, input: Data, options: ActivityOptions) async throws -> Data {
        try checkUse("execute(\(type))")
        try Task.checkCancellation()  // a cancelled branch schedules nothing
        let seq = nextSequence()
        activityTypes[seq] = type
        commands.append(.scheduleActivity(seq: seq, activityType: type, input: input, options: options))

        return try await awaitOutcome(seq) { self.requestCancel(seq) }
    }

    /// A new sequence number for a decision.
    private func nextSequence() -> Int {
        defer { nextSeq += 1 }
        return nextSeq
    }

    /// Waits until an input event for `seq` resumes the task (its payload); cancelling the waiting
    /// task calls `onCancel` (on the activation thread: only workflow code cancels workflow tasks).
    private func awaitOutcome(_ seq: Int, onCancel: @escaping @Sendable () -> Void) async throws -> Data {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters[seq] = continuation
            }
        } onCancel: {
            onCancel()
        }
    }

    /// The awaiting task was cancelled: emit a cancel request for the activity (a task is cancelled
    /// once, so this runs at most once per activity). Cancellation of workflow tasks starts only in
    /// workflow code (`cancelAll()`, an unawaited `async let`), so this runs on the activation
    /// thread, in order with everything else the workflow does.
    private func requestCancel(_ seq: Int) {
        do { try checkUse("cancel activity (seq \(seq))") } catch { return }
        guard waiters[seq] != nil else { return }
        commands.append(.cancelActivity(seq: seq))
    }

    /// A durable timer: recorded, survives restarts, fires at `due` (at once if that has passed).
    /// Cancelling the awaiting task cancels the timer (recorded) and throws `CancellationError`.
    func sleep(until due: Date) async throws {
        try checkUse("sleep")
        try Task.checkCancellation()
        guard due.journalMillis > now.journalMillis else { return }  // nothing to wait for
        let seq = nextSequence()
        commands.append(.startTimer(seq: seq, due: Date(journalMillis: due.journalMillis)))
        runningTimers[seq] = Date(journalMillis: due.journalMillis)
        _ = try await awaitOutcome(seq) { self.cancelTimer(seq) }
    }

    /// The task sleeping on a timer was cancelled (only workflow code cancels workflow tasks, on the
    /// activation thread): record the cancellation and wake the task at once.
    private func cancelTimer(_ seq: Int) {
        do { try checkUse("cancel timer (seq \(seq))") } catch { return }
        guard let waiter = waiters.removeValue(forKey: seq) else { return }
        cancelledTimers.insert(seq)
        runningTimers[seq] = nil
        commands.append(.cancelTimer(seq: seq))
        waiter.resume(throwing: CancellationError())
    }

    /// Starts a child run and waits for its outcome (a ``ChildOutcome`` as JSON).
    func executeChild(workflowType: String, workflowID: String?, input: Data, abandonOnCancel: Bool) async throws -> Data {
        try checkUse("executeChild(\(workflowType))")
        try Task.checkCancellation()
        let seq = nextSequence()
        // Deterministic: the same IDs on replay (a random run ID would differ; the IDs are recorded).
        let childWorkflowID = workflowID ?? "\(self.workflowID)/\(seq)"
        var bytes = rng  // a copy: the run's own random sequence does not move
        let childRunID = "\(runID.prefix(8))-child-\(seq)-\(String(bytes.next(), radix: 36))"
        commands.append(.startChild(
            seq: seq, workflowType: workflowType, workflowID: childWorkflowID, runID: childRunID, input: input))
        return try await awaitOutcome(seq) { self.cancelChild(seq, runID: childRunID, abandon: abandonOnCancel) }
    }

    private func cancelChild(_ seq: Int, runID childRunID: String, abandon: Bool) {
        do { try checkUse("cancel child (seq \(seq))") } catch { return }
        guard waiters[seq] != nil else { return }
        commands.append(.cancelChild(seq: seq, runID: childRunID, abandon: abandon))
        if abandon, let waiter = waiters.removeValue(forKey: seq) {
            abandonedChildren.insert(seq)
            waiter.resume(throwing: CancellationError())
        }
    }

    /// The oldest signal of this name received and not yet taken, without waiting; `nil` if none.
    func takeBufferedSignal(named name: String) throws -> Data? {
        try checkUse("waitForSignal(\(name))")
        guard var buffered = signalBuffer[name], !buffered.isEmpty else { return nil }
        let first = buffered.removeFirst()
        signalBuffer[name] = buffered.isEmpty ? nil : buffered
        return first
    }

    /// Records that a signal taken by the workflow did not decode as the type it waits for.
    func rejectSignal(named name: String, reason: String) throws {
        try checkUse("waitForSignal(\(name))")
        commands.append(.rejectSignal(name: name, reason: reason))
    }

    /// The oldest signal of this name received and not yet taken; waits for one if there is none.
    /// Nothing is journaled: the signals are history already, and so is the order they arrived in.
    func waitForSignal(named name: String) async throws -> Data {
        try checkUse("waitForSignal(\(name))")
        try Task.checkCancellation()
        if var buffered = signalBuffer[name], !buffered.isEmpty {
            let first = buffered.removeFirst()
            signalBuffer[name] = buffered.isEmpty ? nil : buffered
            return first
        }
        let id = nextSignalWaiter
        nextSignalWaiter += 1
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                signalWaiters[name, default: []].append((id, continuation))
            }
        } onCancel: {
            self.cancelSignalWait(name, id)
        }
    }

    private func cancelSignalWait(_ name: String, _ id: Int) {
        do { try checkUse("cancel waitForSignal(\(name))") } catch { return }
        guard var waiting = signalWaiters[name], let index = waiting.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiting.remove(at: index)
        signalWaiters[name] = waiting.isEmpty ? nil : waiting
        waiter.continuation.resume(throwing: CancellationError())
    }

    func setQueryHandler(_ name: String, _ handler: @escaping () throws -> Data) {
        do { try checkUse("setQueryHandler(\(name))") } catch { return }
        queryHandlers[name] = handler
    }

    /// Answers a query between activations (the caller serializes with them).
    /// The signal names that workflow code waits for now, sorted.
    package var awaitedSignalNames: [String] { signalWaiters.keys.sorted() }

    package func answer(query name: String) throws -> Data {
        guard let handler = queryHandlers[name] else {
            throw DurableError(.unknownQuery(runID: runID, name: name, known: queryHandlers.keys.sorted()))
        }
        // Inside an activation (so `ctx.now` and friends may be read), marked so that nothing the
        // handler does changes the run: random draws and patch decisions are not taken.
        executor.beginActivation()
        answeringQuery = true
        defer {
            answeringQuery = false
            executor.endActivation()
        }
        return try handler()
    }

    /// What the run waits for after the last activation: busy while an activity it scheduled has no
    /// outcome yet (an attempt, a retry, a cancellation on its way); otherwise waiting for its
    /// earliest timer, if any (signals, children's outcomes and cancellation come through the inbox).
    package var wake: JournalBatch.Wake {
        if !activityTypes.isEmpty { return .busy }
        return .waiting(until: runningTimers.values.min())
    }

    /// Events in the run's history so far (this activation's decisions included), and their payload bytes.
    var historyLength: Int { recordedEvents + commands.count }
    var historySize: Int {
        payloadBytes + commands.reduce(0) { total, command in
            if case .scheduleActivity(_, _, let input, _) = command { return total + input.count }
            return total
        }
    }

    /// Whether this run takes the new branch of a code change; see ``WorkflowContext/patched(_:)``.
    func patched(_ id: String) -> Bool {
        do { try checkUse("patched(\(id))") } catch { return false }
        if let decision = patchDecisions[id] { return decision }
        if answeringQuery { return !isReplaying || recordedPatches.contains(id) }
        // Live code takes the new branch. Replayed history takes it only where it did when recorded.
        let decision = !isReplaying || recordedPatches.contains(id)
        patchDecisions[id] = decision
        if decision { commands.append(.markPatch(id: id)) }
        return decision
    }

    func nextRandom(_ operation: String) -> UInt64 {
        do { try checkUse(operation) } catch {}
        if answeringQuery {  // a copy: the run's own sequence does not move
            var copy = rng
            return copy.next()
        }
        return rng.next()
    }

    func currentTime() -> Date {
        do { try checkUse("now") } catch {}
        return now
    }
}
