import CoreMetrics
import Hummingbird
import Synchronization

/// Counts requests by method, route template and status, and times them by route:
/// `durable_http_requests_total{method, route, status}` and
/// `durable_http_request_duration_seconds{method, route}`. The route is the template
/// (`/v1/runs/{id}`), never the path, so that run IDs do not become labels; requests for no route
/// count as `unmatched`.
struct HTTPMetricsMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let factory: any MetricsFactory
    /// The counters and timers made so far, by their labels (bounded: routes, methods and statuses are).
    private let made = Made()

    private final class Made: Sendable {
        let state = Mutex<(counters: [String: Counter], timers: [String: Timer])>(([:], [:]))
    }

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let status: Int
        do {
            let response = try await next(request, context)
            status = response.status.code
            record(request, context, status: status, since: start)
            return response
        } catch {
            record(request, context, status: Problem.answering(error, to: request).status.code, since: start)
            throw error
        }
    }

    private func record(_ request: Request, _ context: ServerContext, status: Int, since start: ContinuousClock.Instant) {
        let route = context.route ?? "unmatched"
        let method = request.method.rawValue
        let key = "\(method) \(route)"
        let counterKey = "\(key) \(status)"
        let factory = self.factory
        let (counter, timer) = made.state.withLock { made in
            let counter = made.counters[counterKey] ?? Counter(
                label: "durable_http_requests_total", dimensions: [("method", method), ("route", route), ("status", String(status))],
                factory: factory)
            let timer = made.timers[key] ?? Timer(
                label: "durable_http_request_duration_seconds", dimensions: [("method", method), ("route", route)], factory: factory)
            made.counters[counterKey] = counter
            made.timers[key] = timer
            return (counter, timer)
        }
        counter.increment()
        timer.recordInterval(since: start)
    }
}

extension Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
