import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

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
