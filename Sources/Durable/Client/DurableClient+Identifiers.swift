extension DurableClient {
    /// The longest workflow ID, workflow type or signal name, in bytes of UTF-8: 1,000.
    ///
    /// Longer ones, and empty ones, are refused with ``DurableError`` `invalidIdentifier` by
    /// ``submit(workflowType:input:id:idReuse:)``, ``start(_:input:id:idReuse:)``,
    /// ``signal(_:name:json:)`` and a worker's `start`. Any other character is allowed (and stored as
    /// given); the command line prints control characters escaped.
    public static let maximumIdentifierBytes = 1_000

    /// Checks a workflow ID, workflow type or signal name against the limits.
    /// - Parameter what: "workflow ID", "workflow type" or "signal name", for the message.
    /// - Throws: ``DurableError`` `invalidIdentifier` when `value` is empty or too long.
    static func checkIdentifier(_ value: String, _ what: String) throws {
        let bytes = value.utf8.count
        guard bytes > 0, bytes <= maximumIdentifierBytes else {
            throw DurableError(.invalidIdentifier(what: what, bytes: bytes))
        }
    }
}
