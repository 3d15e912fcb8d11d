import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An error answered as RFC 9457 problem details (`application/problem+json`):
/// `{"type": "urn:durable:error:runNotFound", "title": "Not Found", "status": 404, "code": "runNotFound",
///   "detail": "no run or workflow with ID 'x'"}`. `code` is the public error code of the library
/// (``DurableError``, ``JournalError``) or of the server (`unauthorized`, `forbidden`, `tooLarge`, …).
struct Problem: Error, HTTPResponseError {
    var status: HTTPResponse.Status
    var code: String
    var detail: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        let body: [String: Any] = [
            "type": "urn:durable:error:\(code)", "title": status.reasonPhrase, "status": status.code,
            "code": code, "detail": detail,
        ]
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func badRequest(_ detail: String) -> Problem { Problem(.badRequest, "badRequest", detail) }

    /// The problem a thrown error is answered with.
    static func from(_ error: any Error) -> Problem {
        switch error {
        case let problem as Problem:
            return problem
        case let error as DurableError:
            let status: HTTPResponse.Status = switch error.code {
            case .unknownQuery, .unknownActivityType: .notFound
            case .unknownWorkflowType: .unprocessableContent
            case .badInput, .badSignalInput, .invalidIdentifier, .badResetPoint, .badOutput: .badRequest
            case .workflowIDReused, .runHeld: .conflict
            case .payloadTooLarge: .contentTooLarge
            case .shuttingDown: .serviceUnavailable
            default: .internalServerError
            }
            return Problem(status, error.code.description, error.description)
        case let error as JournalError:
            let status: HTTPResponse.Status = switch error.code {
            case .runNotFound: .notFound
            case .runClosed, .workflowIDInUse, .conflict: .conflict
            case .badHistoryFile: .badRequest
            case .storage, .missing: .serviceUnavailable
            default: .internalServerError
            }
            return Problem(status, error.code.description, error.description)
        case let error as any HTTPResponseError:  // Hummingbird's own (a body too large, a bad request line)
            let code = switch error.status {
            case .contentTooLarge: "tooLarge"
            case .notFound: "notFound"
            case .methodNotAllowed: "methodNotAllowed"
            case .unsupportedMediaType: "unsupportedMediaType"
            default: error.status.code < 500 ? "badRequest" : "internal"
            }
            let detail = error.status == .contentTooLarge
                ? "the request body is larger than this server accepts"
                : ((error as? HTTPError)?.body ?? error.status.reasonPhrase)
            return Problem(error.status, code, detail)
        case is CancellationError:
            return Problem(.serviceUnavailable, "shuttingDown", "the server is shutting down; try again")
        default:
            return Problem(.internalServerError, "internal", "\(error)")
        }
    }
}

/// Answers every error a route throws as problem details, and a request for a route that does not
/// exist as a problem too (Hummingbird's own 404 has an empty body).
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return try Problem.answering(error, to: request).response(from: request, context: context)
        }
    }
}

extension Problem {
    /// The problem a request is answered with when its route throws `error` (or there is no route
    /// for it: a path served for other methods is a 405 with `Allow`).
    static func answering(_ error: any Error, to request: Request) -> Problem {
        let problem = Problem.from(error)
        guard problem.code == "notFound" else { return problem }
        let allowed = DurableServer.routeMethods[request.uri.path.split(separator: "/").count]?
            .filter { matches($0.segments, request.uri.path) }.map(\.method) ?? []
        guard !allowed.isEmpty else { return problem }
        return Problem(
            .methodNotAllowed, "methodNotAllowed",
            "\(request.method.rawValue) is not served at this path, which serves \(allowed.joined(separator: " and "))",
            headers: [.allow: allowed.joined(separator: ", ")])
    }

    /// Whether a path fits a route's segments (`{…}` fits any one segment).
    static func matches(_ segments: [Substring], _ path: String) -> Bool {
        zip(segments, path.split(separator: "/")).allSatisfy { template, actual in template.hasPrefix("{") || template == actual }
    }
}
