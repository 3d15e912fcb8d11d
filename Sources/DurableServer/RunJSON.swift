package import Durable
package import DurableJournal
package import Foundation

/// The JSON shapes of runs, events and outcomes, shared by the HTTP API and the CLI's `--json`
/// output, so that `GET /v1/runs/{id}` and `runs show --json` say the same thing the same way.
package enum RunJSON {
    /// ISO 8601 in UTC with milliseconds, as the journal keeps them.
    package static func time(_ date: Date) -> String { HistoryExport.timeText(date) }

    /// JSON data embedded as a value (or as a string when it is not JSON); `null` for none.
    package static func value(_ data: Data?) -> Any {
        guard let data else { return NSNull() }
        return (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
            ?? String(decoding: data, as: UTF8.self)
    }

    package static func run(_ run: RunRecord) -> [String: Any] {
        [
            "runID": run.runID, "workflowID": run.workflowID, "workflowType": run.workflowType,
            "status": run.status.rawValue, "createdAt": time(run.createdAt),
            "closedAt": run.closedAt.map(time) ?? NSNull(), "error": run.error ?? NSNull(),
            "leaseOwner": run.leaseOwner ?? NSNull(), "leaseExpiresAt": run.leaseExpiresAt.map(time) ?? NSNull(),
        ]
    }

    package static func failure(_ failure: FailureInfo?) -> Any {
        guard let failure else { return NSNull() }
        var object: [String: Any] = ["type": failure.type, "message": failure.message]
        if let retryable = failure.retryable { object["retryable"] = retryable }
        if let delay = failure.nextRetryDelayMs { object["nextRetryDelayMs"] = delay }
        if let limit = failure.limitMs { object["limitMs"] = limit }
        return object
    }

    package static func attempt(_ details: AttemptDetails?) -> Any {
        guard let details, let data = try? JSONEncoder().encode(details) else { return NSNull() }
        return value(data)
    }

    package static func activity(_ activity: ActivitySummary) -> [String: Any] {
        [
            "seq": activity.seq, "activityType": activity.activityType, "state": activity.state.rawValue,
            "attempts": activity.attempts, "cancelRequested": activity.cancelRequested,
            "lastFailure": failure(activity.lastFailure), "lastAttempt": attempt(activity.lastAttempt),
            "lastHeartbeat": activity.lastHeartbeat.map { value(Data($0.utf8)) } ?? NSNull(),
            "nextRetryAt": activity.nextRetryAt.map(time) ?? NSNull(),
        ]
    }

    /// A history's events, each as ``event(_:)``, with `"discarded": true` on partial output
    /// (`ActivityOutput`) of an attempt that did not complete.
    package static func events(_ events: some Collection<HistoryEvent>, of run: RunRecord, in history: [HistoryEvent]) -> [[String: Any]] {
        let verdicts = PartialOutputVerdicts(history, runClosed: !run.status.isOpen)
        return events.map { event in
            var object = Self.event(event)
            if verdicts.isDiscarded(event) { object["discarded"] = true }
            return object
        }
    }

    package static func event(_ event: HistoryEvent) -> [String: Any] {
        var object: [String: Any] = ["index": event.index, "kind": event.kind.name, "time": time(event.time)]
        if event.seq != 0 { object["seq"] = event.seq }
        if event.attempt != 0 { object["attempt"] = event.attempt }
        if let name = event.name { object["name"] = name }
        if let encrypted = event.encryptedData {
            object["encrypted"] = ["keyID": encrypted.keyID]
        } else if let failure = event.failure {
            object["failure"] = Self.failure(failure)
        } else if event.data != nil {
            object["data"] = value(event.data)
        }
        if event.attemptDetails != nil {
            object["attemptDetails"] = value(event.meta)
        } else if let meta = event.meta {
            object["options"] = value(meta)
        }
        return object
    }

    /// A run's outcome as its result, its failure (a cancellation or termination as one, with the
    /// reason), or the run it continued as; all `nil` while the run is open.
    package static func parts(of outcome: RunOutcome?) -> (result: Data?, failure: FailureInfo?, continuedAs: String?) {
        switch outcome {
        case .completed(let data): (data, nil, nil)
        case .failed(let info): (nil, info, nil)
        case .cancelled(let reason): (nil, FailureInfo(type: "Cancelled", message: reason), nil)
        case .terminated(let reason): (nil, FailureInfo(type: "Terminated", message: reason), nil)
        case .continuedAsNew(let next): (nil, nil, next)
        case nil: (nil, nil, nil)
        }
    }

    /// A run's outcome as `result`, `failure` and `continuedAs` members.
    package static func outcome(_ outcome: RunOutcome?) -> [String: Any] {
        let (result, failure, continuedAs) = parts(of: outcome)
        return ["result": value(result), "failure": Self.failure(failure), "continuedAs": continuedAs ?? NSNull()]
    }

    /// What `runs show` shows: the run, its input and outcome, activities (pending ones with their
    /// attempt, last failure, next retry and last heartbeat), timers, parent, children and signals.
    package static func description(_ description: RunDescription) -> [String: Any] {
        var object = run(description.run)
        object.merge(outcome(description.outcome)) { _, new in new }
        object["eventCount"] = description.eventCount
        object["historyError"] = description.historyError.map { "\($0)" } ?? NSNull()
        object["historyPayloadBytes"] = description.historyPayloadBytes
        object["historyWarning"] = description.historyWarning ?? NSNull()
        object["input"] = value(description.input)
        object["activities"] = description.activities.map(activity)
        object["parent"] = description.parent.map {
            ["runID": $0.parentRunID, "seq": $0.parentSeq] as [String: Any]
        } ?? NSNull()
        object["children"] = description.children.map {
            ["seq": $0.seq, "workflowType": $0.workflowType, "workflowID": $0.workflowID, "runID": $0.runID,
             "state": $0.state] as [String: Any]
        }
        object["timers"] = description.timers.map {
            ["seq": $0.seq, "due": time($0.due), "state": $0.state.rawValue] as [String: Any]
        }
        object["queuedSignals"] = description.queuedSignals
        object["awaitedSignals"] = description.awaitedSignals ?? NSNull()
        object["rejectedSignals"] = description.rejectedSignals.map {
            ["name": $0.name, "time": time($0.time), "reason": $0.reason] as [String: Any]
        }
        return object
    }

    /// JSON bytes of `value`, keys sorted, slashes unescaped.
    package static func data(_ value: Any, pretty: Bool = false) throws -> Data {
        try JSONSerialization.data(
            withJSONObject: value,
            options: pretty ? [.prettyPrinted, .sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]
                : [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
    }
}
