public import Durable
import DurableJournal
import Foundation
import HTTPTypes
public import Hummingbird
import HummingbirdAuth
public import Logging
import NIOCore
public import Prometheus
import ServiceLifecycle

/// How `durable serve` serves: where, who may, and how much.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (the bound one is passed to `onRunning`).
    public var port = 8233
    /// The accepted tokens (hashes only).
    public var tokens = TokenFile()
    /// What `POST /v1/events` does with each event name.
    public var eventRoutes = EventRoutes()
    /// The largest request body accepted (larger ones get 413).
    public var maximumBodyBytes = DurableLimits.maximumPayloadBytes + 64 * 1024
    /// How long a request may take before it is answered 503 (`?wait=` adds its own time).
    public var requestTimeout: Duration = .seconds(30)
    /// The longest `?wait=` accepted.
    public var maximumWait: Duration = .seconds(60)
    /// How many `?wait=` requests and history streams may wait at once (more get 503).
    public var maximumWaiters = 1_000
    /// A connection with no traffic for this long is closed.
    public var idleTimeout: Duration = .seconds(75)

    public init() {}
}

/// The HTTP control plane: the client (and, in an application, the code) of a worker behind a
/// versioned JSON API, tokens and roles, the audit log and `/metrics`. See `Docs/http.md`.
public struct DurableServer: Sendable {
    /// The engine room: its client reaches the journal; in an application its registered code answers
    /// queries and checks inputs; `reset` runs through it.
    let worker: DurableWorker
    /// Whether the worker has the application's code (an application's `serve`, not `durable serve`).
    let hasCode: Bool
    let options: ServerOptions
    let registry: PrometheusCollectorRegistry
    let metricsFactory: PrometheusMetricsFactory
    let waiters: WaiterGate
    let knownTypes: KnownWorkflowTypes
    let eventsInFlight = InFlightKeys()
    let logger: Logger

    public init(
        worker: DurableWorker, hasCode: Bool, options: ServerOptions, registry: PrometheusCollectorRegistry,
        logger: Logger = Logger(label: "durable.server")
    ) {
        self.worker = worker
        self.hasCode = hasCode
        self.options = options
        self.registry = registry
        self.metricsFactory = PrometheusMetricsFactory(registry: registry)
        self.waiters = WaiterGate(limit: options.maximumWaiters)
        self.knownTypes = KnownWorkflowTypes()
        self.logger = logger
    }

    var client: DurableClient { worker.client }

    /// The HTTP application, a service to run in a `ServiceGroup` (beside the worker with `--worker`).
    /// - Parameter onRunning: called with the bound `host:port` once the server accepts connections.
    public func application(onRunning: @escaping @Sendable (String) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: .seconds(options.idleTimeout.components.seconds))),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "durable"),
            onServerRunning: { channel in
                let address = channel.localAddress
                await onRunning("\(address?.ipAddress ?? options.host):\(address?.port ?? options.port)")
            },
            logger: logger)
    }

    /// Every route, with the role it needs (`nil`: none), as the OpenAPI document lists them.
    public static var routes: [(method: String, path: String, role: Role?)] {
        RouteBook.describe { book in DurableServer.addRoutes(to: &book, server: nil) }
    }

    /// The routes' methods by the number of segments of their paths (for 405 answers).
    static let routeMethods: [Int: [(method: String, segments: [Substring])]] = Dictionary(
        grouping: routes.map { (method: $0.method, segments: $0.path.split(separator: "/")) }, by: \.segments.count)

    func makeRouter() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: HTTPMetricsMiddleware(factory: metricsFactory))
        router.add(middleware: TracingMiddleware())
        router.add(middleware: TokenAuthenticator(verifier: TokenVerifier(options.tokens), bodyLimit: options.maximumBodyBytes))
        router.add(middleware: AuditMiddleware(client: client, logger: logger))
        var book = RouteBook(router: router, requestTimeout: options.requestTimeout)
        Self.addRoutes(to: &book, server: self)
        return router
    }

    /// Registers every route; with `server == nil`, only records them.
    static func addRoutes(to book: inout RouteBook, server: DurableServer?) {
        addSystemRoutes(to: &book, server: server)
        addRunRoutes(to: &book, server: server)
        addEventRoutes(to: &book, server: server)
    }

    static func addSystemRoutes(to book: inout RouteBook, server: DurableServer?) {
        book.add(.get, "/healthz", role: nil) { _, _ in
            try JSONResponse.ok(["status": "ok"])
        }
        book.add(.get, "/readyz", role: nil) { _, _ in
            let server = server!
            do {
                _ = try await withTimeout(.seconds(5)) { try await server.client.runs(RunFilter(limit: 1)) }
                return try JSONResponse.ok(["status": "ready", "journal": server.client.journalLocation])
            } catch {
                throw Problem(.serviceUnavailable, "notReady", "the journal \(server.client.journalLocation) cannot be read: \(error)")
            }
        }
        book.add(.get, "/openapi.yaml", role: nil) { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.yaml)))
        }
        book.add(.get, "/metrics", role: .reader) { _, _ in
            var buffer = [UInt8]()
            buffer.reserveCapacity(16 * 1024)
            server!.registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        book.add(.get, "/v1/audit", role: .admin) { request, _ in
            let query = QueryParameters(request)
            let after = try query.integer("after", in: 0...Int.max)
            let limit = try query.integer("limit", in: 1...1_000) ?? 100
            let entries = try await server!.client.auditLog(after: after.map(Int64.init), limit: limit)
            return try JSONResponse.ok([
                "entries": entries.map(AuditJSON.entry),
                "nextAfter": entries.count == limit ? entries.last.map { NSNumber(value: $0.seq) } ?? NSNull() : NSNull(),
            ] as [String: Any])
        }
    }
}

/// Registers routes with the router and remembers them (method, path, role) for the document check.
struct RouteBook {
    let router: Router<ServerContext>?
    let requestTimeout: Duration
    var routes: [(method: String, path: String, role: Role?)] = []

    init(router: Router<ServerContext>?, requestTimeout: Duration) {
        self.router = router
        self.requestTimeout = requestTimeout
    }

    static func describe(_ body: (inout RouteBook) -> Void) -> [(method: String, path: String, role: Role?)] {
        var book = RouteBook(router: nil, requestTimeout: .zero)
        body(&book)
        return book.routes
    }

    /// Adds a route that answers only callers with `role` or above (anyone when `nil`). A route is
    /// answered 503 when it takes longer than the request timeout, unless it `waits` on purpose
    /// (`?wait=`, history streams: those are bounded by their own limits).
    mutating func add(
        _ method: HTTPRequest.Method, _ path: String, role: Role?, waits: Bool = false,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        routes.append((method.rawValue, path, role))
        let timeout = requestTimeout
        router?.on(RouterPath(path), method: method) { request, context in
            if let role { _ = try context.require(role) }
            if waits { return try await handler(request, context) }
            return try await withTimeout(timeout) { try await handler(request, context) }
        }
    }
}

/// JSON responses.
enum JSONResponse {
    static func ok(_ value: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try RunJSON.data(value))))
    }
}

/// The query string of a request, read with checked conversions (a bad value is a 400 naming it).
struct QueryParameters {
    let values: [String: String]

    init(_ request: Request) {
        var values: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { values[String(key)] = String(value) }
        self.values = values
    }

    /// A text parameter; an empty one counts as absent.
    subscript(_ name: String) -> String? { values[name].flatMap { $0.isEmpty ? nil : $0 } }

    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw Problem.badRequest("query parameter '\(name)' must be an integer from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
        }
        return value
    }

    func time(_ name: String) throws -> Date? {
        guard let text = values[name] else { return nil }
        guard let date = HistoryExport.parseTime(text) else {
            throw Problem.badRequest("query parameter '\(name)' must be an ISO 8601 time such as 2026-12-05T10:00:00Z, not '\(text)'")
        }
        return date
    }

    func bool(_ name: String) throws -> Bool? {
        guard let text = values[name] else { return nil }
        switch text {
        case "true", "1": return true
        case "false", "0": return false
        default: throw Problem.badRequest("query parameter '\(name)' must be true or false, not '\(text)'")
        }
    }
}

/// Runs `body`, throwing a 503 problem when it takes longer than `limit` (and cancelling it).
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw Problem(.serviceUnavailable, "timeout", "the request took longer than \(limit) and was abandoned; its effect, if any, is in the journal (retry with the same Idempotency-Key)", headers: [.retryAfter: "1"])
        }
        return value
    }
}

/// The workflow types workers have recorded in the journal, re-read at most once a second (and at
/// once for a name not seen yet), so that the code-less server can refuse unknown types like `submit`.
final class KnownWorkflowTypes: Sendable {
    private let state = Mutex<(names: Set<String>, read: ContinuousClock.Instant?)>(([], nil))

    func contains(_ name: String, client: DurableClient) async throws -> (Bool, [String]) {
        let (names, read) = state.withLock { $0 }
        if names.contains(name) { return (true, []) }
        if let read, ContinuousClock.now - read < .seconds(1) { return (false, names.sorted()) }
        let known = Set(try await client.journal.knownWorkflowTypes())
        state.withLock { $0 = (known, ContinuousClock.now) }
        return (known.contains(name), known.sorted())
    }
}

import Synchronization
