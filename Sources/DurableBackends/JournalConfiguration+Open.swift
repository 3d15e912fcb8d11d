package import DurableJournal
import DurablePostgres
import DurableSQLite

extension JournalConfiguration {
    /// Opens the journal this configuration names, with the backend its location calls for: the
    /// one place that knows every backend, so that the engine, the command line and the test kit
    /// depend on the storage protocol alone.
    /// Payload keys come from the environment unless the configuration names them
    /// (``JournalConfiguration/payloadKeys``).
    /// - Parameter lease: the owner and lease length of a worker's writes; `nil` to read and submit only.
    package func open(lease: LeaseSettings?) async throws -> any Journal {
        let configuration = try resolvingPayloadKeys()
        switch backend {
        case .sqlite:
            return try await SQLiteJournal.open(configuration, lease: lease)
        case .postgres:
            return try await PostgresJournal.open(configuration, lease: lease)
        }
    }
}
