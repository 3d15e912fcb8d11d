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
import Synchronization

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
        self.metricsFactory = Self.metricsFactory(registry: registry)
        self.waiters = WaiterGate(limit: options.maximumWaiters)
        self.knownTypes = KnownWorkflowTypes()
        self.logger = logger
    }

    var client: DurableClient { worker.client }

    /// A Prometheus factory with histogram buckets fine enough for Durable's timings: journal commits
    /// take a fraction of a millisecond, HTTP requests a few, activity attempts up to minutes.
    /// `serve` bootstraps the process's metrics with it, so that every metric goes to `/metrics`.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60), .seconds(300),
        ]
        factory.valueHistogramBuckets["durable_journal_batch_events"] = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128]
        return factory
    }

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

    /// What a failure to start serving means, said plainly (`nil` when it is not one of those): the
    /// address is in use, or not this host's, or the port needs privileges.
    public static func startupProblem(_ error: any Error, host: String, port: Int) -> String? {
        guard let error = error as? IOError else { return nil }
        let reason = switch error.errnoCode {
        case EADDRINUSE: "the address is in use (another server listens there)"
        case EADDRNOTAVAIL: "the address is not one of this host's"
        case EACCES: "the port needs privileges (use one above 1023)"
        default: String(cString: strerror(error.errnoCode))
        }
        return "cannot listen on \(host):\(port): \(reason)"
    }

    /// Every route, with the role it needs (`nil`: none), as the OpenAPI document lists them.
    public static var routes: [(method: String, path: String, role: Role?)] {
        RouteBook.describe { book in DurableServer.addRoutes(to: &book, server: nil) }
    }

    /// The routes' path templates.
    static let routePaths = Set(routes.map(\.path))

    /// The routes' methods by the number of segments of their paths (for 405 answers).
    static let routeMethods: [Int: [(method: String, segments: [Substring])]] = Dictionary(
        grouping: routes.map { (method: $0.method, segments: $0.path.split(separator: "/")) }, by: \.segments.count)

    func makeRouter() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: HTTPMetricsMiddleware(factory: metricsFactory))
        router.add(middleware: TracingMiddleware())
        router.add(middleware: TokenAuthenticator(verifier: TokenVerifier(options.tokens), bodyLimit: options.maximumBodyBytes))
        router.add(middleware: AuditMiddleware(client: client, logger: logger, timeout: options.requestTimeout))
        var book = RouteBook(router: router, requestTimeout: options.requestTimeout, maximumWait: options.maximumWait)
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
                return try JSONResponse.ok(["status": "ready"])
            } catch {
                // Anyone may ask: say nothing of where the journal is or why (the log says).
                server.logger.error("readyz: the journal \(server.client.journalLocation) cannot be read: \(error)")
                throw Problem(.serviceUnavailable, "notReady", "the journal cannot be read; the server's log says why")
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
    let maximumWait: Duration
    var routes: [(method: String, path: String, role: Role?)] = []

    init(router: Router<ServerContext>?, requestTimeout: Duration, maximumWait: Duration) {
        self.router = router
        self.requestTimeout = requestTimeout
        self.maximumWait = maximumWait
    }

    /// How long a route may take.
    enum Deadline {
        /// The request timeout.
        case request
        /// The request timeout plus the request's `?wait=`.
        case requestAndWait
        /// None: a stream that lasts as long as its run (bounded by the number of waiters).
        case stream
    }

    static func describe(_ body: (inout RouteBook) -> Void) -> [(method: String, path: String, role: Role?)] {
        var book = RouteBook(router: nil, requestTimeout: .zero, maximumWait: .zero)
        body(&book)
        return book.routes
    }

    /// Adds a route that answers only callers with `role` or above (anyone when `nil`). A route is
    /// answered 503 when it takes longer than its `deadline`.
    mutating func add(
        _ method: HTTPRequest.Method, _ path: String, role: Role?, deadline: Deadline = .request,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        routes.append((method.rawValue, path, role))
        let (timeout, maximumWait) = (requestTimeout, maximumWait)
        router?.on(RouterPath(path), method: method) { request, context in
            if let role { _ = try context.require(role) }
            switch deadline {
            case .stream:
                return try await handler(request, context)
            case .request:
                return try await withTimeout(timeout) { try await handler(request, context) }
            case .requestAndWait:
                let wait = try parseWait(QueryParameters(request)["wait"], maximum: maximumWait) ?? .zero
                return try await withTimeout(timeout + wait) { try await handler(request, context) }
            }
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

/// Runs `body`, throwing a 503 problem when it takes longer than `limit`. The body runs on in an
/// unstructured task after that (a journal write blocked on a lock cannot be called back): its effect,
/// if any, lands in the journal later, which the problem says.
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let work = Task { try await body() }
    let race = FirstResult<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation, timer: Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                race.finish(.failure(Problem(
                    .serviceUnavailable, "timeout",
                    "the request took longer than \(limit); what it did, if anything, is written to the journal when the journal takes it: look before you retry (a start retried with the same Idempotency-Key finds its run)",
                    headers: [.retryAfter: "1"])))
            })
            Task { race.finish(await work.result) }
        }
    } onCancel: {
        work.cancel()
    }
}

/// Resumes a continuation with whichever result comes first, once, and stops the timer.
private final class FirstResult<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, any Error>?, timer: Task<Void, Never>?)>((nil, nil))

    func start(_ continuation: CheckedContinuation<T, any Error>, timer: Task<Void, Never>) {
        state.withLock { $0 = (continuation, timer) }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, timer) = state.withLock { state in
            defer { state = (nil, nil) }
            return state
        }
        timer?.cancel()
        continuation?.resume(with: result)
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

