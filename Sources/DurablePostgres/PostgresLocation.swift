import DurableJournal
import Foundation
import NIOSSL
import PostgresNIO

/// A `postgres://` journal URL taken apart: where the server is, who connects, and which schema
/// holds the journal's tables.
///
/// `postgres://user[:password]@host[:port]/database[?schema=NAME&sslmode=disable|prefer|require]`
/// (also `postgresql://`); the port defaults to 5432, the database to the user's name, the schema to
/// `durable`. A password may also come from `PGPASSWORD`.
struct PostgresLocation: Sendable {
    var host: String
    var port: Int
    var user: String
    var password: String?
    var database: String
    var schema: String
    var sslMode: String

    /// `host:port/database?schema=…`: for messages (no user, no password).
    var display: String { "\(host):\(port)/\(database) (schema \(schema))" }

    init(_ url: String) throws {
        func bad(_ reason: String) -> JournalError {
            JournalError(.storage(reason: "bad PostgreSQL URL '\(JournalConfiguration(url).displayLocation)': \(reason)"))
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "postgres" || scheme == "postgresql"
        else { throw bad("expected postgres://user@host:port/database") }
        guard let host = components.host, !host.isEmpty else { throw bad("no host") }
        guard let user = components.user, !user.isEmpty else { throw bad("no user (postgres://USER@host/db)") }
        self.host = host
        self.port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw bad("port \(port) is out of range") }
        self.user = user.removingPercentEncoding ?? user
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
            ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.user : (path.removingPercentEncoding ?? path)
        var schema = "durable"
        var sslMode = "disable"
        for item in components.queryItems ?? [] {
            switch item.name {
            case "schema": schema = item.value ?? ""
            case "sslmode": sslMode = item.value ?? ""
            default: throw bad("unknown parameter '\(item.name)' (schema, sslmode)")
            }
        }
        // The schema is spliced into SQL as an identifier: only plain lowercase names.
        guard schema.count <= 63, let first = schema.first, first.isLetter || first == "_",
            schema.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "_" })
        else { throw bad("schema '\(schema)' must be a lowercase name of at most 63 letters, digits and _") }
        guard ["disable", "prefer", "require"].contains(sslMode) else {
            throw bad("sslmode '\(sslMode)' (disable, prefer, require)")
        }
        self.schema = schema
        self.sslMode = sslMode
    }

    /// The connection settings postgres-nio takes; with `durability`, those of a connection that
    /// writes (see ``startupParameters(durability:)``).
    func connectionConfiguration(durability: Durability? = nil) throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        default: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        if let durability { configuration.options.additionalStartupParameters = startupParameters(durability: durability) }
        return configuration
    }

    /// The settings of every connection that writes: `fast` durability lets the server acknowledge a
    /// commit before its WAL is flushed (flushed within a fraction of a second; a crash of the server
    /// may lose the last commits, never corrupt); the journal's schema comes first in the search path,
    /// since the writer's prepared statements name its tables unqualified (every other statement
    /// qualifies them).
    func startupParameters(durability: Durability) -> [(String, String)] {
        (durability == .fast ? [("synchronous_commit", "off")] : []) + [("search_path", schema)]
    }

    func clientConfiguration(durability: Durability) -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS = switch sslMode {
        case "disable": .disable
        case "prefer": .prefer(.makeClientConfiguration())
        default: .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.maximumConnections = 8
        configuration.options.minimumConnections = 1
        configuration.options.additionalStartupParameters = startupParameters(durability: durability)
        return configuration
    }
}
