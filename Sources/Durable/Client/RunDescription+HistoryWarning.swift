import DurableJournal

extension RunDescription {
    /// The warning for an open run whose history is past the continue-as-new threshold
    /// (``DurableLimits/continueAsNewSuggestedEvents`` events or
    /// ``DurableLimits/continueAsNewSuggestedPayloadBytes`` bytes of payloads); `nil` for a closed
    /// run, a shorter history, or one that could not be read.
    public var historyWarning: String? {
        guard run.status.isOpen, historyError == nil else { return nil }
        return Self.historyWarning(events: eventCount, payloadBytes: historyPayloadBytes)
    }

    /// The warning for a history of `events` events and `payloadBytes` bytes of payloads, or `nil`
    /// below the threshold. `runs show` and a worker's log say the same.
    package static func historyWarning(events: Int, payloadBytes: Int) -> String? {
        guard DurableLimits.isContinueAsNewSuggested(events: events, payloadBytes: payloadBytes) else { return nil }
        let limits = "\(grouped(DurableLimits.continueAsNewSuggestedEvents)) events or "
            + "\(DurableLimits.continueAsNewSuggestedPayloadBytes >> 20) MB"
        return "the history has \(grouped(events)) events and \(grouped(payloadBytes)) bytes of payloads, past the "
            + "\(limits) at which continue-as-new is suggested: replaying it costs a worker "
            + "time after every restart; have the workflow throw ctx.continueAsNew(with:) "
            + "(Docs/workflows.md, \"Continue-as-new\")"
    }

    /// `12345678` as `12,345,678`.
    private static func grouped(_ number: Int) -> String {
        let digits = Array(String(number.magnitude))
        var text = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0, (digits.count - offset) % 3 == 0 { text.append(",") }
            text.append(digit)
        }
        return (number < 0 ? "-" : "") + text
    }
}
