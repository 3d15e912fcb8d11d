extension DurableClient {
    /// Checks a workflow ID, workflow type or signal name against the limits.
    /// - Parameter what: "workflow ID", "workflow type" or "signal name", for the message.
    /// - Throws: ``DurableError`` `invalidIdentifier` when `value` is empty, too long, or holds a NUL
    ///   character (SQLite's text binding would end it there: stored cut, it would not match its checksum).
    static func checkIdentifier(_ value: String, _ what: String) throws {
        let bytes = value.utf8.count
        guard bytes > 0, bytes <= DurableLimits.maximumIdentifierBytes else {
            throw DurableError(.invalidIdentifier(what: what, bytes: bytes))
        }
        if value.utf8.contains(0) { throw DurableError(.identifierWithNUL(what: what)) }
    }
}
