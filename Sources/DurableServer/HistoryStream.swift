import Durable
import DurableJournal
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

extension DurableServer {
    /// `GET /v1/runs/{id}/history`: JSON by default; with `Accept: application/x-ndjson` one event per
    /// line, and with `Accept: text/event-stream` server-sent events. The streams follow new events
    /// until the run ends (NDJSON only with `?follow=true`), and start after `?after=INDEX` or the
    /// `Last-Event-ID` of a reconnecting event source.
    func history(_ request: Request, _ context: ServerContext) async throws -> Response {
        let query = QueryParameters(request)
        let accept = request.headers[.accept] ?? ""
        let format: StreamFormat? = accept.contains("text/event-stream") ? .events
            : accept.contains("application/x-ndjson") ? .lines : nil
        let resume = try request.headers[.lastEventID].map { text in
            guard let index = Int(text), index >= 0 else { throw Problem.badRequest("Last-Event-ID must be an event index") }
            return index + 1
        }
        let from = try query.integer("after", in: -1...Int(Int32.max)).map { $0 + 1 } ?? resume ?? 0
        let follow = try query.bool("follow") ?? (format == .events)
        let run = try await findRun(try context.parameter("id"))
        guard let format else {
            let journal = client.journal
            let events = try await withTimeout(options.requestTimeout) { try await journal.history(run, from: from) }
            return try JSONResponse.ok(["run": RunJSON.run(run), "events": RunJSON.events(events, of: run, in: events)] as [String: Any])
        }
        let ticket = follow ? try waiters.enter() : nil
        let journal = client.journal
        let body = ResponseBody { writer in
            withExtendedLifetime(ticket) {}
            var next = from
            func send(_ events: [HistoryEvent]) async throws {
                var buffer = ByteBuffer()
                for event in events { buffer.writeBytes(try format.frame(event)) }
                if buffer.readableBytes > 0 { try await writer.write(buffer) }
                next = (events.last?.index ?? next - 1) + 1
            }
            if !follow {
                try await send(try await journal.history(run, from: next))
                try await writer.finish(nil)
                return
            }
            // Woken by each commit to the journal and every 15 s (a comment keeps proxies from closing
            // an idle stream); ends when the run is closed and all its events are sent, or at shutdown.
            let (ticks, continuation) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingNewest(1))
            let feeder = Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { for await _ in journal.changes() { continuation.yield(true) } }
                    group.addTask {
                        while !Task.isCancelled {
                            try? await Task.sleep(for: .seconds(15))
                            continuation.yield(false)
                        }
                    }
                }
            }
            defer { feeder.cancel() }
            var status = run.status
            try await withGracefulShutdownHandler {
                for await changed in ticks {
                    if !changed {
                        if format == .events { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                        continue
                    }
                    let current = try await journal.findRun(run.runID) ?? run
                    try await send(try await journal.history(run, from: next))
                    status = current.status
                    if !current.status.isOpen { break }
                }
            } onGracefulShutdown: {
                continuation.finish()
            }
            // `end` only for a run that ended: at shutdown the stream just closes, and an event source
            // reconnects (to another server) with its Last-Event-ID.
            if format == .events && !status.isOpen {
                try await writer.write(ByteBuffer(bytes: try format.end(status)))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: format.contentType, .cacheControl: "no-store"], body: body)
    }
}

/// How events are framed on a stream.
enum StreamFormat {
    /// `application/x-ndjson`: one JSON event per line.
    case lines
    /// `text/event-stream`: `id: INDEX`, `event: KIND`, `data: JSON`, then `event: end` with the status.
    case events

    var contentType: String { self == .lines ? "application/x-ndjson" : "text/event-stream" }

    func frame(_ event: HistoryEvent) throws -> [UInt8] {
        let json = try RunJSON.data(RunJSON.event(event))
        switch self {
        case .lines: return Array(json) + [0x0A]
        case .events: return Array("id: \(event.index)\nevent: \(event.kind.name)\ndata: ".utf8) + Array(json) + Array("\n\n".utf8)
        }
    }

    func end(_ status: RunStatus) throws -> [UInt8] {
        Array("event: end\ndata: ".utf8) + Array(try RunJSON.data(["status": status.rawValue])) + Array("\n\n".utf8)
    }
}
