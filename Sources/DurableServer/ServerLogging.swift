public import Logging

/// `StreamLogHandler.standardError`, whose metadata is formatted when a message is logged, not each
/// time it is set: the HTTP server sets a request ID on every request's logger, and formatting it
/// there cost about 2 % of the CPU of a start under load, for messages that were mostly never logged.
public struct StandardErrorLogHandler: LogHandler {
    private var stream: StreamLogHandler
    public var metadata: Logger.Metadata = [:]

    public init(label: String) {
        stream = StreamLogHandler.standardError(label: label)
    }

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var event = event
        let merged = event.metadata.map { metadata.merging($0) { _, new in new } } ?? metadata
        event.metadata = merged.isEmpty ? nil : merged
        stream.log(event: event)
    }
}
