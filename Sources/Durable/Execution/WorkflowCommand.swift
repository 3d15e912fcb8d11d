package import DurableJournal
package import Foundation

/// A decision the workflow code made during an activation.
package enum WorkflowCommand: Sendable, Equatable {
    case scheduleActivity(seq: Int, activityType: String, input: Data, options: ActivityOptions)
    case cancelActivity(seq: Int)
    case startTimer(seq: Int, due: Date)
    case cancelTimer(seq: Int)
    /// Start a child run (pending, for a worker to claim) and wait for its outcome.
    case startChild(seq: Int, workflowType: String, workflowID: String, runID: String, input: Data)
    /// The task awaiting a child was cancelled: cancel the child too, unless it is abandoned.
    case cancelChild(seq: Int, runID: String, abandon: Bool)
    /// ``WorkflowContext/patched(_:)`` took the new branch of this change.
    case markPatch(id: String)
    /// A signal's input did not decode as the type the workflow waits for; it keeps waiting.
    case rejectSignal(name: String, reason: String)
    case completeWorkflow(result: Data)
    case failWorkflow(FailureInfo)
    /// The workflow ended after a cancellation request, by throwing.
    case cancelWorkflow(reason: String)
    /// The run ends and a new run of the same workflow ID starts with this input.
    case continueAsNew(input: Data, newRunID: String)

    var kind: EventKind {
        switch self {
        case .scheduleActivity: .activityScheduled
        case .cancelActivity: .activityCancelRequested
        case .startTimer: .timerStarted
        case .cancelTimer: .timerCancelled
        case .markPatch: .patchMarker
        case .rejectSignal: .signalRejected
        case .startChild: .childStarted
        case .cancelChild: .childCancelRequested
        case .completeWorkflow: .workflowCompleted
        case .failWorkflow: .workflowFailed
        case .cancelWorkflow: .workflowCancelled
        case .continueAsNew: .workflowContinuedAsNew
        }
    }

    /// Whether a recorded command event is this command (same kind; same sequence number and activity
    /// type for activities). Inputs and options may change between deployments and are not compared.
    func matches(_ event: HistoryEvent) -> Bool {
        guard event.kind == kind else { return false }
        switch self {
        case .scheduleActivity(let seq, let type, _, _): return event.seq == seq && event.name == type
        case .cancelActivity(let seq), .startTimer(let seq, _), .cancelTimer(let seq): return event.seq == seq
        case .markPatch(let id): return event.name == id
        case .rejectSignal(let name, _): return event.name == name
        case .startChild(let seq, let type, _, _, _): return event.seq == seq && event.name == type
        case .cancelChild(let seq, _, _): return event.seq == seq
        case .completeWorkflow, .failWorkflow, .cancelWorkflow, .continueAsNew: return true
        }
    }

    /// How mismatch reports name the command.
    var summary: String {
        switch self {
        case .scheduleActivity(let seq, let type, _, _): "ActivityScheduled(seq \(seq), \(type))"
        case .cancelActivity(let seq): "ActivityCancelRequested(seq \(seq))"
        case .startTimer(let seq, _): "TimerStarted(seq \(seq))"
        case .cancelTimer(let seq): "TimerCancelled(seq \(seq))"
        case .markPatch(let id): "PatchMarker(\(id))"
        case .rejectSignal(let name, _): "SignalRejected(\(name))"
        case .startChild(let seq, let type, _, _, _): "ChildStarted(seq \(seq), \(type))"
        case .cancelChild(let seq, _, _): "ChildCancelRequested(seq \(seq))"
        case .completeWorkflow: "WorkflowCompleted"
        case .failWorkflow(let failure): "WorkflowFailed(\(failure.type))"
        case .cancelWorkflow: "WorkflowCancelled"
        case .continueAsNew: "WorkflowContinuedAsNew"
        }
    }

    static func summary(of event: HistoryEvent) -> String {
        switch event.kind {
        case .activityScheduled, .activityCompleted, .activityFailed, .activityAttemptFailed,
             .activityCancelRequested, .activityCancelled, .activityHeartbeat, .timerStarted, .timerFired,
             .timerCancelled, .childStarted, .childClosed, .childCancelRequested:
            "\(event.kind.name)(seq \(event.seq)\(event.name.map { ", \($0)" } ?? ""))"
        case .signalRejected, .patchMarker:
            "\(event.kind.name)(\(event.name ?? ""))"
        default:
            event.kind.name
        }
    }

    /// ``summary`` plus a digest of the payload, for determinism checks.
    var traceLine: String {
        let payload: Data
        switch self {
        case .scheduleActivity(_, _, let input, _): payload = input
        case .cancelActivity, .cancelTimer, .markPatch, .cancelChild: payload = Data()
        case .rejectSignal(_, let reason): payload = Data(reason.utf8)
        case .startChild(_, _, _, _, let input): payload = input
        case .cancelWorkflow(let reason): payload = Data(reason.utf8)
        case .continueAsNew(let input, _): payload = input
        case .startTimer(_, let due): payload = Data(String(due.journalMillis).utf8)
        case .completeWorkflow(let result): payload = result
        case .failWorkflow(let failure): payload = Data(failure.description.utf8)
        }
        return "\(summary) payload#\(String(PayloadCodec.fnv1a(payload), radix: 16))"
    }

    private static let optionsEncoder = JSONEncoder.payload()

    /// The event recording this command.
    func event(index: Int, time: Date) -> HistoryEvent {
        switch self {
        case .scheduleActivity(let seq, let type, let input, let options):
            let meta = options == .default ? nil : try? Self.optionsEncoder.encode(options)
            return HistoryEvent(index: index, kind: .activityScheduled, time: time, seq: seq, name: type, data: input, meta: meta)
        case .cancelActivity(let seq):
            return HistoryEvent(index: index, kind: .activityCancelRequested, time: time, seq: seq)
        case .startTimer(let seq, let due):
            return HistoryEvent(index: index, kind: .timerStarted, time: time, seq: seq, data: Data(String(due.journalMillis).utf8))
        case .cancelTimer(let seq):
            return HistoryEvent(index: index, kind: .timerCancelled, time: time, seq: seq)
        case .markPatch(let id):
            return HistoryEvent(index: index, kind: .patchMarker, time: time, name: id)
        case .rejectSignal(let name, let reason):
            return HistoryEvent(index: index, kind: .signalRejected, time: time, name: name, data: Data(reason.utf8))
        case .startChild(let seq, let type, let workflowID, let runID, let input):
            let link = try? JSONEncoder.payload().encode(["workflowID": workflowID, "runID": runID])
            return HistoryEvent(index: index, kind: .childStarted, time: time, seq: seq, name: type, data: input, meta: link)
        case .cancelChild(let seq, _, let abandon):
            return HistoryEvent(index: index, kind: .childCancelRequested, time: time, seq: seq,
                                name: abandon ? "abandon" : "cancel")
        case .completeWorkflow(let result):
            return HistoryEvent(index: index, kind: .workflowCompleted, time: time, data: result)
        case .failWorkflow(let failure):
            return HistoryEvent(index: index, kind: .workflowFailed, time: time, data: try? JSONEncoder.payload().encode(failure))
        case .cancelWorkflow(let reason):
            return HistoryEvent(index: index, kind: .workflowCancelled, time: time, data: Data(reason.utf8))
        case .continueAsNew(let input, let newRunID):
            return HistoryEvent(index: index, kind: .workflowContinuedAsNew, time: time, name: newRunID, data: input)
        }
    }
}
