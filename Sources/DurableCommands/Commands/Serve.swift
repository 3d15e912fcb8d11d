import ArgumentParser
import CoreMetrics
import Durable
import DurableServer
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals

struct Serve: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Serve the HTTP API (runs, events, signals, history, audit log, /metrics) until SIGINT or SIGTERM.",
            discussion: """
                Every route but /healthz, /readyz and /openapi.yaml needs a bearer token from the --auth file \
                (make one with `auth add`). The API is described in Docs/http.md and at /openapi.yaml. \
                \(AppSetup.hasCode ? "With --worker, this process also runs the application's workflows and activities. " : "")\
                Prints the address it listens on when ready; on SIGINT or SIGTERM it stops taking requests, \
                answers waiting ones with the runs' current status, and exits.
                """)
    }

    @OptionGroup var options: JournalOptions

    @Option(help: "Address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface).", transform: OptionValue.nonEmpty)
    var host = "127.0.0.1"

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("TCP port, 0 to 65535 (default: 8233; 0 picks a free one).", valueName: "port"),
        transform: { try OptionValue.integer($0, in: 0...65_535) })
    var port = 8233

    @Option(help: ArgumentHelp("Token file (SHA-256 hashes and roles; see `auth add`).", valueName: "file"), transform: OptionValue.nonEmpty)
    var auth: String

    @Option(help: ArgumentHelp("Event route table for POST /v1/events (JSON; see Docs/http.md).", valueName: "file"), transform: OptionValue.nonEmpty)
    var events: String?

    @Option(
        name: .customLong("max-body"), parsing: .unconditional,
        help: ArgumentHelp("Largest request body in bytes, 1024 to 67108864 (default: 16 MiB + 64 KiB).", valueName: "bytes"),
        transform: { try OptionValue.integer($0, in: 1_024...64 * 1_024 * 1_024) })
    var maxBody = DurableLimits.maximumPayloadBytes + 64 * 1_024

    @Option(
        name: .customLong("request-timeout"), parsing: .unconditional,
        help: ArgumentHelp("Seconds a request may take before it is answered 503, 0.1 to 3600 (default: 30).", valueName: "seconds"),
        transform: { try OptionValue.seconds($0, in: 0.1...3_600) })
    var requestTimeout: Duration = .seconds(30)

    @Option(
        name: .customLong("max-wait"), parsing: .unconditional,
        help: ArgumentHelp("Longest ?wait= accepted, in seconds, 0 to 3600 (default: 60).", valueName: "seconds"),
        transform: { try OptionValue.seconds($0, in: 0...3_600) })
    var maxWait: Duration = .seconds(60)

    @Option(
        name: .customLong("max-waiters"), parsing: .unconditional,
        help: ArgumentHelp("Requests that may wait at once (?wait=, history streams), 0 to 100000 (default: 1000); more get 503.", valueName: "count"),
        transform: { try OptionValue.integer($0, in: 0...100_000) })
    var maxWaiters = 1_000

    @Option(
        name: .customLong("trusted-proxy"),
        help: ArgumentHelp(
            "A proxy whose X-Forwarded-For is believed: an address or CIDR range, or a comma-separated list; may be repeated "
                + "(e.g. 127.0.0.1, 10.0.0.0/8). Its requests are recorded as coming from the client it names.",
            valueName: "range"),
        transform: { text in
            do {
                return try text.split(separator: ",", omittingEmptySubsequences: false).map {
                    try AddressRange(String($0).trimmingCharacters(in: .whitespaces))
                }
            } catch {
                throw BadOptionValue("\(error)")
            }
        })
    var trustedProxy: [[AddressRange]] = []

    @Flag(help: ArgumentHelp("Also run the application's worker in this process.", visibility: AppSetup.hasCode ? .default : .private))
    var worker = false

    @OptionGroup var work: WorkOptions

    func validate() throws {
        if worker && !AppSetup.hasCode {
            throw ValidationError("--worker needs an application's code: run `serve --worker` with the application's executable")
        }
    }

    func run() async throws {
        var serverOptions = ServerOptions()
        serverOptions.host = host
        serverOptions.port = port
        serverOptions.maximumBodyBytes = maxBody
        serverOptions.requestTimeout = requestTimeout
        serverOptions.maximumWait = maxWait
        serverOptions.maximumWaiters = maxWaiters
        serverOptions.trustedProxies = trustedProxy.flatMap { $0 }
        do {
            serverOptions.tokens = try TokenFile.load(auth)
            serverOptions.tokenFilePath = auth
            if let events { serverOptions.eventRoutes = try EventRoutes.load(events) }
        } catch {
            throw CommandFailure(message: "\(error)", exitCode: .badInput)
        }
        if events == nil, let routes = AppSetup.current.withLock({ $0.eventRoutes }) { serverOptions.eventRoutes = routes }
        if serverOptions.tokens.tokens.isEmpty {
            printProgress("warning: \(auth) holds no tokens: every route but /healthz, /readyz and /openapi.yaml will answer 401")
        }

        // Every metric of this process (the engine's, the pools', the server's) goes to /metrics.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(DurableServer.metricsFactory(registry: registry))

        let logger = work.logger("durable.server")
        let engine = try await options.openForWork(
            durability: try work.parsedDurability(), worker: try work.workerOptions(), logger: work.logger("durable"))
        let server = DurableServer(worker: engine, hasCode: AppSetup.hasCode, options: serverOptions, registry: registry, logger: logger)
        let journal = options.path
        let tokens = serverOptions.tokens.tokens.count
        let runsWorker = worker
        let proxies = serverOptions.trustedProxies.isEmpty
            ? "" : ", X-Forwarded-For from \(serverOptions.trustedProxies.map(\.description).joined(separator: ","))"
        let application = server.application { address in
            print("serving http://\(address) (journal \(journal.escaped), \(tokens) token(s)\(runsWorker ? ", with a worker" : "")\(proxies))")
        }
        // Shut down in reverse: the server stops taking requests first, then the worker stops.
        var services: [any Service] = worker ? [engine] : []
        services.append(application)
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            if let problem = DurableServer.startupProblem(error, host: host, port: port) {
                throw CommandFailure(message: problem, exitCode: .badInput)
            }
            throw error
        }
        print("server stopped cleanly")
    }
}
