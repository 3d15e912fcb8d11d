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
import Tracing

/// How `durable serve` serves: where, who may, and how much.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (the bound one is passed to `onRunning`).
    public var port = 8233
    /// The accepted tokens (hashes only).
    public var tokens = TokenFile()
    /// The file ``tokens`` was read from: read again when it changes (`nil`: never).
    public var tokenFilePath: String?
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
    /// Proxies whose `X-Forwarded-For` is believed: a request from one of them is recorded (audit
    /// log, logs) as coming from the client the header names. Empty: the header is ignored.
    public var trustedProxies: [AddressRange] = []

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
    let tokens: TokenStore
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
        self.tokens = TokenStore(options.tokens, path: options.tokenFilePath, logger: logger)
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
        // A request span only with a tracer (the server reads it once, when it makes its routes): with
        // the no-op tracer the middleware still cost about 1.5 % of the CPU of a start under load.
        if !(InstrumentationSystem.tracer is NoOpTracer) { router.add(middleware: TracingMiddleware()) }
        router.add(middleware: TokenAuthenticator(
            tokens: tokens, bodyLimit: options.maximumBodyBytes, trustedProxies: options.trustedProxies))
        let console = Console(server: self)
        router.add(middleware: ConsoleSessionMiddleware(sessions: console.sessions, tokens: tokens))
        router.add(middleware: AuditMiddleware(client: client, logger: logger, timeout: options.requestTimeout))
        var book = RouteBook(router: router, requestTimeout: options.requestTimeout, maximumWait: options.maximumWait)
        Self.addRoutes(to: &book, server: self)
        console.addRoutes(to: router)  // not API routes: not in `routes` nor in the OpenAPI document
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

