import DurableJournal
import Foundation
import Logging
import Synchronization
import Tracing

/// Drives one run in this process: a mailbox that serializes the run's activations, and the
/// bookkeeping that turns each activation into one journal batch.
///
/// Anything may post to the mailbox from any thread; whoever finds it idle processes items until it
/// is empty (inline, no thread hop). Batches reach the journal's writer in activation order; the
/// commands of an activation are dispatched only from the batch's commit callback.
final class RunDriver: Sendable {
    enum Item: Sendable {
        /// Deliver an input event (index assigned here). `alreadyRecorded`: the event is in the
        /// journal already (a claimed run's `WorkflowStarted`). `newRun`: written with it.
        case input(HistoryEvent, newRun: JournalBatch.NewRun?, alreadyRecorded: Bool,
                   committed: (@Sendable (Result<Void, any Error>) -> Void)?)
        /// Deliver a queued signal: its `SignalReceived` event starts an activation, and its row leaves
        /// the queue in the same transaction.
        case signal(HistoryEvent, queued: Int64)
        /// End the run at once with `WorkflowTerminated` (the queued request leaves the queue with it).
        case terminate(String, queued: Int64)
        /// Answer a query from the instance's state (nothing is recorded).
        case query(String, CheckedContinuation<Data?, any Error>)
        /// Record an informational event (an attempt failure, a heartbeat) without an activation.
        case record(HistoryEvent, committed: (@Sendable (Result<Void, any Error>) -> Void)?)
        /// Stop driving the run and record it as held with the reason.
        /// Hold the run with the reason. A new run whose first activation could not be written
        /// (`newRun`, `started`) is recorded held with its `WorkflowStarted` event; `committed` is told.
        case hold(String, newRun: JournalBatch.NewRun? = nil, started: HistoryEvent? = nil,
                  committed: (@Sendable (Result<Void, any Error>) -> Void)? = nil)
        /// Evict the run from this worker's memory if it is still idle (waiting, nothing in flight,
        /// nothing queued): see ``DurableWorker/evict(_:wake:)``.
        case evict
    }

    private struct Mailbox {
        var items: [Item] = []
        var processing = false
        var nextEventIndex: Int
        var closed = false
        /// ``terminate()`` came while an item was being processed: tear down when it is done.
        var tearDownPending = false
        /// The newest queued signal accepted: a signal is posted once, even by overlapping passes.
        var lastSignal: Int64 = 0
        /// Batches handed to the journal and not yet committed (an idle run is evicted only at 0).
        var pendingWrites = 0
        /// The run's wait as last written to its row (`nil`: not known, written with the next activation).
        var writtenWake: JournalBatch.Wake?
        /// The wait after the last activation.
        var wake: JournalBatch.Wake = .busy
        /// An item was refused because the mailbox was closed (an eviction then looks at the inbox again).
        var refused = false
    }

    /// Closes the mailbox and drops what it held; a query waiting in it is answered `nil` (its caller
    /// then replays the history instead).
    private func closeMailbox(_ box: inout Mailbox) -> [Item] {
        box.closed = true
        defer { box.items.removeAll() }
        return box.items
    }

    private func release(_ dropped: [Item]) {
        for item in dropped {
            switch item {
            case .query(_, let continuation): continuation.resume(returning: nil)
            case .evict: engine.evictionDeclined()
            default: break
            }
        }
    }

    let ref: RunRef
    let instance: WorkflowInstance
    /// The run's workflow type's counters.
    let metrics: WorkflowMetrics
    /// The run's trace context (from its `WorkflowStarted` event): the parent of its activation and
    /// activity spans.
    let traceContext: ServiceContext
    private let engine: DurableWorker
    private let mailbox: Mutex<Mailbox>
    /// What the run has going on here (`live` false, and nothing else, once the run stopped here).
    /// Not an optional: testing and changing an optional struct under the lock copied it whole.
    private struct Tracked {
        var live = true
        /// Activities running, by sequence number.
        var running: [Int: ActivityExecution] = [:]
        /// Cancel requests that arrived before their activity's dispatch (the commit callbacks of two
        /// batches may run on two threads).
        var earlyCancels: Set<Int> = []
        /// Timers waiting, by sequence number: their deadlines in the engine's scheduler.
        var timers: [Int: Int] = [:]
    }

    private let activities = Mutex(Tracked())
    /// The run's long-history warning was logged (``warnOfLongHistory(events:)``).
    private let warnedOfLongHistory = Atomic<Bool>(false)

    var runID: String { ref.runID }
    var workflowID: String { instance.workflowID }

    init(
        engine: DurableWorker, ref: RunRef, instance: WorkflowInstance, nextEventIndex: Int, metrics: WorkflowMetrics,
        traceContext: ServiceContext, writtenWake: JournalBatch.Wake? = .busy
    ) {
        self.engine = engine
        self.ref = ref
        self.instance = instance
        self.metrics = metrics
        self.traceContext = traceContext
        var box = Mailbox(nextEventIndex: nextEventIndex)
        box.writtenWake = writtenWake
        self.mailbox = Mutex(box)
    }

    /// - Parameter inline: process the mailbox on this thread if nobody does; `false` leaves that to
    ///   another thread (for a caller that must not run activations: a process pool's reader). The
    ///   item takes its place in the mailbox before this returns either way.
    /// - Returns: `false` when the mailbox is closed (the run is no longer driven here).
    @discardableResult
    func post(_ item: consuming Item, inline: Bool = true) -> Bool {
        var item = Optional(item)  // moved into the mailbox, not copied
        let (accepted, process) = mailbox.withLock { box -> (Bool, Bool) in
            guard !box.closed else {
                box.refused = true
                return (false, false)
            }
            if case .signal(_, let queued)? = item {
                guard queued > box.lastSignal else { return (false, false) }
                box.lastSignal = queued
            }
            box.items.append(item.take()!)
            if box.processing { return (true, false) }
            box.processing = true
            return (true, true)
        }
        if process {
            engine.clock.beginWork()
            if inline {
                processMailbox()
                engine.clock.endWork()
            } else {
                DispatchQueue.global().async { [self] in
                    processMailbox()
                    engine.clock.endWork()
                }
            }
        }
        return accepted
    }

    /// Answers a query from the live instance, between activations.
    /// - Returns: `nil` when the run is no longer driven here.
    func query(_ name: String) async throws -> Data? {
        try await withCheckedThrowingContinuation { continuation in
            if !post(.query(name, continuation)) { continuation.resume(returning: nil) }
        }
    }

    private func processMailbox() {
        while true {
            let (next, tearDown): ((Item, Int)?, Bool) = mailbox.withLock { box in
                guard !box.closed, !box.items.isEmpty else {
                    box.processing = false
                    defer { box.tearDownPending = false }
                    return (nil, box.tearDownPending)
                }
                return ((box.items.removeFirst(), box.nextEventIndex), false)
            }
            guard case let (item, index)? = consume next else {
                if tearDown { instance.tearDown() }
                return
            }
            let used = handle(item, index: index)
            mailbox.withLock { $0.nextEventIndex += used }
        }
    }

    /// Stops accepting items. Call only while processing an item (the processor tears down later).
    func close() {
        release(mailbox.withLock { closeMailbox(&$0) })
        cancelActivities()
    }

    /// Stops accepting items and ends the workflow's task tree, now if the mailbox is idle, or as
    /// soon as the item being processed on another thread is done. Safe from any thread.
    func terminate() {
        cancelActivities()
        let (now, dropped) = mailbox.withLock { box -> (Bool, [Item]) in
            let dropped = closeMailbox(&box)
            if box.processing {
                box.tearDownPending = true
                return (false, dropped)
            }
            box.processing = true
            return (true, dropped)
        }
        release(dropped)
        if now { instance.tearDown() }
    }

    var isClosed: Bool { mailbox.withLock { $0.closed } }

    /// Whether an item was refused since the mailbox closed.
    var refusedItems: Bool { mailbox.withLock { $0.refused } }

    /// The run's place in this worker's instance cache: the stamp of its last idle moment (see
    /// ``InstanceCache``).
    let idleStamp = Atomic<UInt64>(0)

    /// Hands a batch to the journal, counting it until it is committed.
    private func append(_ batch: JournalBatch, done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        mailbox.withLock { $0.pendingWrites += 1 }
        engine.append(batch) { [self] result in
            mailbox.withLock { $0.pendingWrites -= 1 }
            done(result)
        }
    }

    /// Evicts the run if it is idle: waiting (no activity without an outcome, none running here),
    /// nothing queued in the mailbox, every batch committed. Called by the mailbox's processor.
    private func evictIfIdle() {
        guard case .waiting = instance.wake, activities.withLock({ $0.live && $0.running.isEmpty }) else {
            engine.evictionDeclined()
            return
        }
        let wake = mailbox.withLock { box -> JournalBatch.Wake? in
            guard !box.closed, box.items.isEmpty, box.pendingWrites == 0, let written = box.writtenWake,
                written == instance.wake
            else { return nil }
            box.closed = true
            box.refused = false
            return written
        }
        guard let wake else {
            engine.evictionDeclined()
            return
        }
        cancelActivities()  // its timers: the due-time index has them
        engine.evict(self, wake: wake)
        instance.tearDown()
    }

    // MARK: - Activities

    /// Starts tracking an activity.
    /// - Returns: whether the workflow already asked to cancel it, or `nil` when the run is no longer
    ///   driven here.
    func track(_ execution: ActivityExecution) -> Bool? {
        activities.withLock { activities in
            guard activities.live else { return nil }
            activities.running[execution.seq] = execution
            return activities.earlyCancels.remove(execution.seq) != nil
        }
    }

    func untrack(_ execution: ActivityExecution) {
        activities.withLock { activities in
            if activities.running[execution.seq] === execution { activities.running[execution.seq] = nil }
        }
    }

    /// The workflow cancelled an activity: cancel it, or remember the request until it is dispatched.
    func cancelActivity(_ seq: Int) {
        let execution = activities.withLock { activities -> ActivityExecution? in
            guard let running = activities.running[seq] else {
                if activities.live { activities.earlyCancels.insert(seq) }
                return nil
            }
            return running
        }
        execution?.requestCancel()
    }

    // MARK: - Timers

    /// Starts a durable timer: at `due` (at once, on this thread, if that has passed) the run gets a
    /// `TimerFired` event.
    func startTimer(_ seq: Int, due: Date) {
        guard due > engine.clock.now() else {
            if activities.withLock({ $0.live }) { fireTimer(seq) }
            return
        }
        // Registered under the lock that the callback takes: it cannot fire before it is recorded.
        activities.withLock { tracked in
            guard tracked.live else { return }
            tracked.timers[seq] = engine.timeouts.schedule(at: due) {
                [self] in
                let due = activities.withLock { $0.timers.removeValue(forKey: seq) != nil }
                if due { fireTimer(seq) }
            }
        }
    }

    func cancelTimer(_ seq: Int) {
        if let deadline = activities.withLock({ $0.timers.removeValue(forKey: seq) }) {
            engine.timeouts.cancel(deadline)
        }
    }

    private func fireTimer(_ seq: Int) {
        post(.input(HistoryEvent(index: 0, kind: .timerFired, time: engine.clock.now(), seq: seq),
                    newRun: nil, alreadyRecorded: false, committed: nil))
    }

    /// Stops every activity of the run running here (the worker is stopping or the run ended here).
    func cancelActivities() {
        let (running, timers) = activities.withLock { tracked in
            defer { tracked = Tracked(live: false) }
            return (Array(tracked.running.values), Array(tracked.timers.values))
        }
        for execution in running { execution.stop() }
        for deadline in timers { engine.timeouts.cancel(deadline) }
    }

    /// Handles one item; returns how many event indexes it used.
    private func handle(_ item: Item, index: Int) -> Int {
        switch item {
        case .hold(let reason, let newRun, let started, let committed):
            engine.hold(self, reason: reason, newRun: newRun, started: started, committed: committed)
            return 0
        case .record(var event, let committed):
            event.index = index
            append(JournalBatch(run: ref, events: [EventDraft(event)])) { [engine, runID] result in
                if case .failure(let error) = result { engine.journalWriteFailed(runID: runID, error) }
                committed?(result)
            }
            return 1
        case .terminate(let reason, let queued):
            release(mailbox.withLock { closeMailbox(&$0) })
            let event = HistoryEvent(index: index, kind: .workflowTerminated, time: engine.clock.now(), data: Data(reason.utf8))
            var batch = JournalBatch(
                run: ref, events: [EventDraft(event)], statusChange: .init(status: .terminated, error: reason),
                deliveredSignal: queued)
            batch.notice = parentNotice(ChildOutcome(
                seq: 0, childRunID: runID, status: "terminated", failure: FailureInfo(type: "Terminated", message: reason)))
            append(batch) { [self] result in
                engine.afterTermination(self, reason: reason, result: result)
            }
            return 1
        case .query(let name, let continuation):
            continuation.resume(with: Result { try instance.answer(query: name) })
            return 0
        case .evict:
            evictIfIdle()
            return 0
        case .signal(let event, let queued):
            return activate(event, index: index, committed: nil, deliveredSignal: queued)
        case .input(let event, let newRun, let alreadyRecorded, let committed):
            return activate(
                event, index: index, newRun: newRun, alreadyRecorded: alreadyRecorded, committed: committed)
        }
    }

    /// Logs, once for this driver, that the run's history (`events` events with this activation's)
    /// is past the continue-as-new threshold (``DurableLimits/continueAsNewSuggestedEvents``).
    private func warnOfLongHistory(events: Int) {
        guard !warnedOfLongHistory.load(ordering: .relaxed),
            let warning = RunDescription.historyWarning(events: events, payloadBytes: instance.historySize),
            !warnedOfLongHistory.exchange(true, ordering: .relaxed)
        else { return }
        engine.logger.warning("\(warning)", metadata: engine.runMetadata(self))
    }

    /// The trace context of an activation's span, for the runs it starts (none without a tracer).
    private func carrier(_ span: SpanBox?) -> [String: String] {
        guard let span else { return [:] }
        return engine.tracer.carrier(span.span.context)
    }

    /// The notice for this run's parent, if it is a child and has ended.
    private func parentNotice(_ outcome: ChildOutcome?) -> RunNotice? {
        guard let parent = instance.parent, let outcome else { return nil }
        return SystemSignal.parentNotice(parent, outcome)
    }

    /// Runs one activation and hands its batch to the journal. - Returns: the event indexes it used.
    private func activate(
        _ event: HistoryEvent, index: Int, newRun: JournalBatch.NewRun? = nil,
        alreadyRecorded: Bool = false, committed: (@Sendable (Result<Void, any Error>) -> Void)?,
        deliveredSignal: Int64? = nil
    ) -> Int {
            var event = event
            if !alreadyRecorded { event.index = index }
            let span = engine.traces
                ? SpanBox(engine.tracer.startSpan(DurableSpan.activation, context: traceContext)) : nil
            if let span = span?.span, span.isRecording {
                span.updateAttributes { attributes in
                    attributes["durable.workflow_type"] = instance.workflowType
                    attributes["durable.run_id"] = runID
                    attributes["durable.event"] = event.kind.name
                }
            }
            let commands: [WorkflowCommand]
            do {
                commands = try instance.activate(event)
            } catch {
                // Nothing of this activation is recorded: the run is held with the reason.
                span?.span.recordFailure(error)
                span?.span.end()
                engine.hold(self, reason: error.description, newRun: newRun, started: event, committed: committed)
                return 0
            }
            var events: [EventDraft] = []
            events.reserveCapacity(commands.count + 1)
            if !alreadyRecorded { events.append(EventDraft(event)) }
            var next = alreadyRecorded ? index : index + 1
            var statusChange: JournalBatch.StatusChange?
            var continuation: (runID: String, run: JournalBatch.NewRun, started: EventDraft)?
            var children: [(runID: String, run: JournalBatch.NewRun, started: EventDraft)] = []
            var outcome: ChildOutcome?
            for command in commands {
                events.append(EventDraft(command.event(index: next, time: event.time)))
                next += 1
                switch command {
                case .completeWorkflow(let result):
                    statusChange = .init(status: .completed)
                    outcome = ChildOutcome(seq: 0, childRunID: runID, status: "completed",
                                           result: String(decoding: result, as: UTF8.self))
                case .failWorkflow(let failure):
                    statusChange = .init(status: .failed, error: failure.description)
                    outcome = ChildOutcome(seq: 0, childRunID: runID, status: "failed", failure: failure)
                case .cancelWorkflow(let reason):
                    statusChange = .init(status: .cancelled, error: reason)
                    outcome = ChildOutcome(seq: 0, childRunID: runID, status: "cancelled",
                                           failure: FailureInfo(type: "Cancelled", message: reason))
                case .startChild(let seq, let type, let workflowID, let childRunID, let input):
                    // The child's trace goes on from this activation's span.
                    let link = StartedMeta.encode(
                        parent: ParentLink(parentRunID: runID, parentSeq: seq), trace: carrier(span))
                    children.append((childRunID, JournalBatch.NewRun(
                        workflowID: workflowID, workflowType: type, seed: UInt64.random(in: .min ... .max),
                        status: .pending, createdAt: event.time), EventDraft(HistoryEvent(
                            index: 0, kind: .workflowStarted, time: event.time, name: type, data: input, meta: link))))
                case .continueAsNew(let input, let newRunID):
                    statusChange = .init(status: .continuedAsNew)
                    let next = JournalBatch.NewRun(
                        workflowID: instance.workflowID, workflowType: instance.workflowType,
                        seed: UInt64.random(in: .min ... .max), status: .pending, createdAt: event.time)
                    let started = HistoryEvent(  // a child's next run keeps its parent, and the trace goes on
                        index: 0, kind: .workflowStarted, time: event.time, name: instance.workflowType, data: input,
                        meta: StartedMeta.encode(parent: instance.parent, trace: carrier(span)))
                    continuation = (newRunID, next, EventDraft(started))
                case .scheduleActivity, .cancelActivity, .startTimer, .cancelTimer, .markPatch, .rejectSignal, .cancelChild:
                    break
                }
            }
            if statusChange == nil { warnOfLongHistory(events: next) }
            if statusChange != nil {
                // The run ends with this batch: nothing posted from now on may be recorded after it.
                release(mailbox.withLock { closeMailbox(&$0) })
            }
            var batch = JournalBatch(
                run: ref, newRun: newRun, events: events, statusChange: statusChange,
                deliveredSignal: deliveredSignal)
            // The due-time index: what the run waits for now, written when it changed.
            let wake = statusChange == nil ? instance.wake : nil
            if let wake {
                batch.wake = mailbox.withLock { box -> JournalBatch.Wake? in
                    box.wake = wake
                    defer { box.writtenWake = wake }
                    return box.writtenWake == wake ? nil : wake
                }
            }
            batch.continuation = continuation
            batch.childRuns = children
            batch.notice = parentNotice(outcome)
            let childIDs = children.map(\.run.workflowID)
            append(batch) { [self, event] result in
                switch result {
                case .success:
                    if event.kind == .workflowStarted { metrics.countStart() }
                case .failure(let error):
                    span?.span.recordFailure(error)
                }
                span?.span.end()
                // A child whose workflow ID an open run uses could not start: nothing of the activation
                // is written; the run is held with the reason instead (a new run with its start event).
                if case .failure(let error) = result, let error = error as? JournalError,
                    let inUse = error.workflowIDInUse, childIDs.contains(inUse.workflowID)
                {
                    let reason = "child workflow ID '\(inUse.workflowID)' is in use by open run \(inUse.runID)"
                    if !post(.hold(reason, newRun: newRun, started: event, committed: committed)) {
                        engine.hold(self, reason: reason, newRun: newRun, started: event, committed: committed)
                    }
                    return
                }
                committed?(result)
                engine.afterCommit(self, commands: commands, result: result)
                if case .success = result, case .waiting? = wake { engine.noteIdle(self) }
            }
            return next - index
    }
}
