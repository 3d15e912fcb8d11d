public import Foundation

/// The kinds of event a run's history holds, with the integer stored in the journal.
///
/// Three roles:
/// - *input* events wake the workflow (``workflowStarted``, ``activityCompleted``, ``activityFailed``,
///   ``activityCancelled``, ``timerFired``, ``signalReceived``): each starts one activation;
/// - *command* events are what the workflow decided in that activation (``activityScheduled``,
///   ``activityCancelRequested``, ``timerStarted``, ``timerCancelled``, ``workflowCompleted``,
///   ``workflowFailed``), recorded in the same transaction as the input event;
/// - *informational* events (``activityAttemptFailed``, ``activityHeartbeat``, ``workflowTerminated``)
///   record what the worker runtime did; replay skips them.
public enum EventKind: Int, Sendable, CaseIterable, Codable {
    case workflowStarted = 1
    case activityScheduled = 2
    case activityCompleted = 3
    case activityAttemptFailed = 4
    case activityFailed = 5
    case workflowCompleted = 6
    case workflowFailed = 7
    case activityCancelRequested = 8
    case activityCancelled = 9
    case activityHeartbeat = 10
    case timerStarted = 11
    case timerFired = 12
    case timerCancelled = 13
    case signalReceived = 14
    case patchMarker = 15
    case workflowCancelRequested = 16
    case workflowCancelled = 17
    case workflowTerminated = 18
    case workflowContinuedAsNew = 19
    case childStarted = 20
    case childClosed = 21
    case childCancelRequested = 22
    /// A signal whose input the workflow could not decode as the type it waits for; `name` is the
    /// signal's name and `data` the reason. The workflow goes on waiting.
    case signalRejected = 23
    /// Partial output an activity attempt published while it ran (``seq``, ``attempt``): `data` is a
    /// JSON array of the chunks published since the last such event. Informational: replay skips
    /// it, and it is not the activity's result. An attempt that did not complete discards its
    /// partial output (``HistoryEvent/discardsPartialOutput(in:)``).
    case activityOutput = 24

    public var name: String {
        switch self {
        case .workflowStarted: "WorkflowStarted"
        case .activityScheduled: "ActivityScheduled"
        case .activityCompleted: "ActivityCompleted"
        case .activityAttemptFailed: "ActivityAttemptFailed"
        case .activityFailed: "ActivityFailed"
        case .workflowCompleted: "WorkflowCompleted"
        case .workflowFailed: "WorkflowFailed"
        case .activityCancelRequested: "ActivityCancelRequested"
        case .activityCancelled: "ActivityCancelled"
        case .activityHeartbeat: "ActivityHeartbeat"
        case .timerStarted: "TimerStarted"
        case .timerFired: "TimerFired"
        case .timerCancelled: "TimerCancelled"
        case .signalReceived: "SignalReceived"
        case .patchMarker: "PatchMarker"
        case .workflowCancelRequested: "WorkflowCancelRequested"
        case .workflowCancelled: "WorkflowCancelled"
        case .workflowTerminated: "WorkflowTerminated"
        case .workflowContinuedAsNew: "WorkflowContinuedAsNew"
        case .childStarted: "ChildStarted"
        case .childClosed: "ChildClosed"
        case .childCancelRequested: "ChildCancelRequested"
        case .signalRejected: "SignalRejected"
        case .activityOutput: "ActivityOutput"
        }
    }

    /// An event that starts an activation.
    public var isInput: Bool {
        switch self {
        case .workflowStarted, .activityCompleted, .activityFailed, .activityCancelled, .timerFired,
             .signalReceived, .workflowCancelRequested, .childClosed:
            true
        default: false
        }
    }

    /// An event that records a decision of the workflow code.
    public var isCommand: Bool {
        switch self {
        case .activityScheduled, .activityCancelRequested, .timerStarted, .timerCancelled, .patchMarker,
             .workflowCompleted, .workflowFailed, .workflowCancelled, .workflowContinuedAsNew, .childStarted,
             .childCancelRequested, .signalRejected:
            true
        default: false
        }
    }
}

/// One recorded event of a run's history, with its payloads decoded.
public struct HistoryEvent: Sendable, Equatable {
    /// Position in the run's history, from 0.
    public var index: Int
    public var kind: EventKind
    /// When the event was recorded (millisecond precision). For input events this is also the
    /// workflow's `ctx.now` during the activation the event starts.
    public var time: Date
    /// The command sequence number the event refers to (activity and timer events); 0 otherwise.
    public var seq: Int
    /// The attempt number for activity results and failures; 0 otherwise.
    public var attempt: Int
    /// The workflow type (started), activity type (scheduled), signal name (received) or change ID
    /// (patch marker), or `nil`.
    public var name: String?
    /// The main payload: workflow or activity input or result as JSON, a ``FailureInfo`` as JSON, an
    /// activity's heartbeat details, or a started timer's due time (``timerDue``).
    public var data: Data?
    /// Secondary details as JSON: the activity options of a scheduled activity; for an attempt's end
    /// (completed, failed, attempt failed, cancelled) its ``AttemptDetails``; for `WorkflowStarted`, a
    /// child's ``ParentLink`` and the trace context of the span that started the run (`trace`), if any.
    public var meta: Data?
    /// Set when the payload is encrypted and was not decrypted (this process holds no key with its
    /// ID, or the reader keeps payloads encrypted): ``data`` is then `nil`.
    public var encryptedData: EncryptedPayload?

    public init(
        index: Int, kind: EventKind, time: Date, seq: Int = 0, attempt: Int = 0,
        name: String? = nil, data: Data? = nil, meta: Data? = nil
    ) {
        self.index = index
        self.kind = kind
        self.time = time
        self.seq = seq
        self.attempt = attempt
        self.name = name
        self.data = data
        self.meta = meta
    }

    /// `data` decoded as a failure, for failure events.
    public var failure: FailureInfo? {
        guard kind == .activityFailed || kind == .activityAttemptFailed || kind == .workflowFailed
            || kind == .activityCancelled,
            let data
        else { return nil }
        return try? JSONDecoder().decode(FailureInfo.self, from: data)
    }

    /// When a started timer is due (``EventKind/timerStarted`` events).
    public var timerDue: Date? {
        guard kind == .timerStarted, let data, let millis = Int64(String(decoding: data, as: UTF8.self)) else {
            return nil
        }
        return Date(journalMillis: millis)
    }

    /// `meta` decoded as attempt details, for the events that end an activity attempt.
    public var attemptDetails: AttemptDetails? {
        guard kind == .activityCompleted || kind == .activityFailed || kind == .activityAttemptFailed
            || kind == .activityCancelled,
            let meta
        else { return nil }
        return try? JSONDecoder().decode(AttemptDetails.self, from: meta)
    }
}

/// A payload as stored, encrypted (AES-256-GCM) with the key ``keyID`` names (see ``PayloadKeys``).
public struct EncryptedPayload: Sendable, Equatable {
    /// The ID of the key that decrypts it.
    public var keyID: String
    /// The encrypted frame, as stored.
    package var frame: Data

    package init(keyID: String, frame: Data) {
        self.keyID = keyID
        self.frame = frame
    }
}

/// How one activity attempt ran, recorded with the event that ends it: where it ran, whether its
/// slot was warm, and where its time went.
public struct AttemptDetails: Codable, Sendable, Equatable {
    /// The pool slot that ran the attempt, e.g. `"ScoreFraud#2"` (`nil` if it never got one).
    public var slot: String?
    /// `true` when the slot was created for this attempt (a cold start), `false` when it was warm.
    public var cold: Bool?
    /// Time from the attempt being issued to getting a slot (queue wait), in milliseconds.
    public var queueMs: Double?
    /// Time spent warming a cold slot (the pool's factory), in milliseconds.
    public var warmUpMs: Double?
    /// Time the activity's code ran, in milliseconds.
    public var runMs: Double?
    /// The process ID of a process-pool slot.
    public var pid: Int32?
    /// The last heartbeat details the attempt reported (JSON), kept for the next attempt.
    public var heartbeat: String?
    /// The name of the model that served the attempt (``ModelIdentity/name``), for an activity that
    /// declares one or whose process reported one.
    public var model: String?
    /// The model's version (``ModelIdentity/version``).
    public var modelVersion: String?
    /// One digest over the model's weights files (``ModelIdentity/weightsSHA256``).
    public var weightsSHA256: String?
    /// The model's free metadata (``ModelIdentity/metadata``), when it has any.
    public var modelMetadata: [String: String]?
    /// SHA-256 of the attempt's input as journaled (the `ActivityScheduled` event's payload bytes),
    /// recorded for attempts served by a model.
    public var inputSHA256: String?
    /// SHA-256 of the attempt's output as journaled (the `ActivityCompleted` event's payload bytes),
    /// recorded for completed attempts served by a model.
    public var outputSHA256: String?

    public init(
        slot: String? = nil, cold: Bool? = nil, queueMs: Double? = nil, warmUpMs: Double? = nil,
        runMs: Double? = nil, pid: Int32? = nil, heartbeat: String? = nil, model: String? = nil,
        modelVersion: String? = nil, weightsSHA256: String? = nil, modelMetadata: [String: String]? = nil,
        inputSHA256: String? = nil, outputSHA256: String? = nil
    ) {
        self.slot = slot
        self.cold = cold
        self.queueMs = queueMs
        self.warmUpMs = warmUpMs
        self.runMs = runMs
        self.pid = pid
        self.heartbeat = heartbeat
        self.model = model
        self.modelVersion = modelVersion
        self.weightsSHA256 = weightsSHA256
        self.modelMetadata = modelMetadata
        self.inputSHA256 = inputSHA256
        self.outputSHA256 = outputSHA256
    }

    /// Records the model that served the attempt (its name, version, weights digest and metadata).
    public mutating func record(model identity: ModelIdentity) {
        model = identity.name
        modelVersion = identity.version
        weightsSHA256 = identity.weightsSHA256
        modelMetadata = identity.metadata.isEmpty ? nil : identity.metadata
    }

    /// `name@version` of the model that served the attempt, or `nil`.
    public var modelLabel: String? {
        model.map { name in (modelVersion ?? "").isEmpty ? name : "\(name)@\(modelVersion ?? "")" }
    }

    /// The JSON recorded in an event's `meta`, written by hand: this runs for every attempt, and
    /// `JSONEncoder` would cost more than the rest of the attempt's bookkeeping.
    public var json: Data {
        var fields: [String] = []
        func number(_ value: Double) -> String {  // to the microsecond, without Double's slow description
            let micros = Int((value * 1000).rounded())
            let fraction = micros % 1000
            guard fraction != 0 else { return String(micros / 1000) }
            var digits = String(fraction)
            digits = String(repeating: "0", count: 3 - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            return String(micros / 1000) + "." + digits
        }
        if let cold { fields.append("\"cold\":\(cold)") }
        if let heartbeat { fields.append("\"heartbeat\":" + jsonQuoted(heartbeat)) }
        if let inputSHA256 { fields.append("\"inputSHA256\":" + jsonQuoted(inputSHA256)) }
        if let model { fields.append("\"model\":" + jsonQuoted(model)) }
        if let modelMetadata {
            let members = modelMetadata.keys.sorted().map { jsonQuoted($0) + ":" + jsonQuoted(modelMetadata[$0] ?? "") }
            fields.append("\"modelMetadata\":{" + members.joined(separator: ",") + "}")
        }
        if let modelVersion { fields.append("\"modelVersion\":" + jsonQuoted(modelVersion)) }
        if let outputSHA256 { fields.append("\"outputSHA256\":" + jsonQuoted(outputSHA256)) }
        if let pid { fields.append("\"pid\":\(pid)") }
        if let queueMs { fields.append("\"queueMs\":" + number(queueMs)) }
        if let runMs { fields.append("\"runMs\":" + number(runMs)) }
        if let slot { fields.append("\"slot\":" + jsonQuoted(slot)) }
        if let warmUpMs { fields.append("\"warmUpMs\":" + number(warmUpMs)) }
        if let weightsSHA256 { fields.append("\"weightsSHA256\":" + jsonQuoted(weightsSHA256)) }
        return Data(("{" + fields.joined(separator: ",") + "}").utf8)
    }

    /// A short account for tables: `slot ScoreFraud#2 warm, queue 0.1 ms, run 5.2 ms, model fraud@2026.11`.
    public var summary: String {
        var parts: [String] = []
        if let slot { parts.append("slot \(slot)" + (cold.map { $0 ? " cold" : " warm" } ?? "")) }
        if let pid { parts.append("pid \(pid)") }
        if let queueMs, queueMs >= 0.05 { parts.append("queue \(Self.ms(queueMs))") }
        if let warmUpMs { parts.append("warm-up \(Self.ms(warmUpMs))") }
        if let runMs { parts.append("run \(Self.ms(runMs))") }
        if let modelLabel { parts.append("model \(modelLabel)") }
        return parts.joined(separator: ", ")
    }

    private static func ms(_ value: Double) -> String {
        value >= 100 ? "\(Int(value.rounded())) ms" : "\((value * 10).rounded() / 10) ms"
    }
}

/// A failure as recorded in history: the error's type name and message, and how the runtime judged it.
public struct FailureInfo: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The Swift type name of the error, e.g. `"TimeoutError"`, used to match non-retryable types.
    public var type: String
    public var message: String
    /// `false` when a retry could not help (non-retryable type, or retries exhausted).
    public var retryable: Bool?
    /// For attempt failures: the delay before the next attempt, in milliseconds.
    public var nextRetryDelayMs: Int?
    /// For timeouts: the limit that was exceeded, in milliseconds.
    public var limitMs: Int64?

    public init(type: String, message: String, retryable: Bool? = nil, nextRetryDelayMs: Int? = nil, limitMs: Int64? = nil) {
        self.type = type
        self.message = message
        self.retryable = retryable
        self.nextRetryDelayMs = nextRetryDelayMs
        self.limitMs = limitMs
    }

    public var description: String { "\(type): \(message)" }
}

extension Date {
    /// Milliseconds since 1970, the unit times are stored in (clamped to ``journalMillisRange``, so
    /// that no date, however far off, traps the conversion).
    package var journalMillis: Int64 {
        let millis = (timeIntervalSince1970 * 1000).rounded()
        guard millis.isFinite else { return 0 }
        let range = Self.journalMillisRange
        return Int64(min(max(millis, Double(range.lowerBound)), Double(range.upperBound)))
    }

    /// The stored times a journal accepts, in milliseconds since 1970: from 1970 through the end of
    /// year 9999. A time outside it is damage (date arithmetic and formatting downstream stay safe).
    package static let journalMillisRange: ClosedRange<Int64> = 0...253_402_300_799_999

    /// A stored time, or `nil` when it lies outside ``journalMillisRange`` (damage).
    package init?(checkedJournalMillis millis: Int64) {
        guard Self.journalMillisRange.contains(millis) else { return nil }
        self.init(journalMillis: millis)
    }

    package init(journalMillis: Int64) {
        self.init(timeIntervalSince1970: Double(journalMillis) / 1000)
    }
}
