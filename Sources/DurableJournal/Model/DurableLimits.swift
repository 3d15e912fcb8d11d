/// The documented limits on what Durable records (Docs/operations.md, "Limits").
public enum DurableLimits {
    /// The largest payload Durable records, in bytes of JSON: a run's input or result, an activity's
    /// input or result, a child's or a continued run's input, a signal's input, heartbeat details.
    /// A larger one is refused where it is written, with ``DurableError`` `payloadTooLarge` (an
    /// activity whose result is larger fails without retries; a workflow whose result is larger fails).
    /// Pass references (a path, an object-store key) for documents and images.
    public static let maximumPayloadBytes = 16 * 1024 * 1024

    /// The longest workflow ID, workflow type or signal name, in bytes of UTF-8: 1,000.
    ///
    /// Longer ones, and empty ones, are refused with ``DurableError`` `invalidIdentifier` by
    /// `DurableClient`'s `submit`, `start` and `signal` and a worker's `start`. Any other character is
    /// allowed (and stored as given); the command line prints control characters escaped.
    public static let maximumIdentifierBytes = 1_000

    /// The longest actor, source, action, target or outcome of an audit entry (``AuditDraft``), in
    /// bytes of UTF-8: 2,048, room for an HTTP request line or a target that quotes a workflow ID of
    /// the longest kind. A longer one is clipped to end in `…`, never refused: an action is not left
    /// unaudited for what a caller sent.
    public static let maximumAuditFieldBytes = 2_048

    /// The longest detail of an audit entry, in bytes of UTF-8: 4,096 (clipped as the other fields).
    public static let maximumAuditDetailBytes = 4_096

    /// The history length at which continue-as-new is suggested: 10,000 events.
    ///
    /// Past it, or past ``continueAsNewSuggestedPayloadBytes``, `WorkflowContext.isContinueAsNewSuggested`
    /// is `true`, `durable runs show` (and `GET /v1/runs/{id}`) warns about an open run, and a worker
    /// logs a warning once for a run it drives. Nothing is refused: a long history only costs replay time.
    public static let continueAsNewSuggestedEvents = 10_000

    /// The payload bytes (inputs, results, signals) of a history at which continue-as-new is
    /// suggested: 10 MB (10 × 1,048,576 bytes). See ``continueAsNewSuggestedEvents``.
    public static let continueAsNewSuggestedPayloadBytes = 10 * 1024 * 1024

    /// Whether a history of `events` events and `payloadBytes` bytes of payloads is past the
    /// continue-as-new threshold (``continueAsNewSuggestedEvents``, ``continueAsNewSuggestedPayloadBytes``).
    public static func isContinueAsNewSuggested(events: Int, payloadBytes: Int) -> Bool {
        events >= continueAsNewSuggestedEvents || payloadBytes >= continueAsNewSuggestedPayloadBytes
    }
}
