import Durable
import DurableJournal
import Foundation

/// The runs a search asks for, read from the query string of the runs page (the filters of `runs list`).
struct RunSearch: Sendable {
    var status: RunStatus?
    var type: String?
    var idPrefix: String?
    var startedAfter: Date?
    var startedBefore: Date?
    /// Only open runs with an activity past its first attempt or with a failure recorded.
    var retrying = false
    var oldestFirst = false
    var cursor: String?
    /// Runs on a page: 50 unless asked, at most ``maximumLimit`` (each run's history is read for its
    /// parent and children, and the page refreshes itself).
    var limit = 50
    static let maximumLimit = 100

    init(_ query: QueryParameters) throws {
        if let text = query["status"] {
            guard let status = RunStatus(rawValue: text) else {
                throw Problem.badRequest("status must be one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
            }
            self.status = status
        }
        type = query["type"]
        idPrefix = query["idPrefix"]
        startedAfter = try Self.time(query, "startedAfter")
        startedBefore = try Self.time(query, "startedBefore")
        retrying = try query.bool("retrying") ?? false
        switch query["order"] ?? "newest" {
        case "newest": oldestFirst = false
        case "oldest": oldestFirst = true
        case let other: throw Problem.badRequest("order must be newest or oldest, not '\(other)'")
        }
        cursor = query["cursor"]
        limit = try query.integer("limit", in: 1...Self.maximumLimit) ?? 50
    }

    /// An ISO 8601 time, or the `YYYY-MM-DDTHH:MM` of a `datetime-local` field (read as UTC).
    static func time(_ query: QueryParameters, _ name: String) throws -> Date? {
        guard let text = query[name] else { return nil }
        if let date = HistoryExport.parseTime(text) ?? HistoryExport.parseTime(text + ":00Z") ?? HistoryExport.parseTime(text + "Z") {
            return date
        }
        throw Problem.badRequest("\(name) must be a time such as 2026-12-05T10:00:00Z, not '\(text)'")
    }

    /// The journal filter (without the status for the counts).
    func filter(withStatus: Bool = true) -> RunFilter {
        var filter = RunFilter(
            statuses: withStatus ? status.map { [$0] } : nil, workflowType: type, workflowIDPrefix: idPrefix,
            startedAfter: startedAfter, startedBefore: startedBefore, oldestFirst: oldestFirst)
        if retrying && withStatus {
            let open = RunStatus.allCases.filter(\.isOpen)
            filter.statuses = status.map { open.contains($0) ? [$0] : [] } ?? open
        }
        return filter
    }

    /// The query string of this search, with some parameters changed.
    func query(_ changes: [String: String?] = [:]) -> String {
        var pairs: [(String, String?)] = [
            ("status", status?.rawValue), ("type", type), ("idPrefix", idPrefix),
            ("startedAfter", startedAfter.map(RunJSON.time)), ("startedBefore", startedBefore.map(RunJSON.time)),
            ("retrying", retrying ? "1" : nil), ("order", oldestFirst ? "oldest" : nil),
            ("limit", limit == 50 ? nil : String(limit)), ("cursor", cursor),
        ]
        for (name, value) in changes {
            if let index = pairs.firstIndex(where: { $0.0 == name }) { pairs[index].1 = value } else { pairs.append((name, value)) }
        }
        return HTML.queryString(pairs)
    }
}

/// What the runs table shows of a run beyond its record (read from its history).
struct RunFacts: Sendable {
    var parent: String?
    var children = 0
    /// An open run with a pending activity past its first attempt or with a failure recorded.
    var retrying = false
    var lastFailure: String?

    init(_ events: [HistoryEvent], open: Bool) {
        parent = events.first?.meta.flatMap { try? JSONDecoder().decode(ParentLink.self, from: $0) }?.parentRunID
        children = events.count { $0.kind == .childStarted }
        if open {
            let pending = ActivitySummary.from(events).filter { $0.state == .pending }
            if let stuck = pending.first(where: { $0.attempts > 1 || $0.lastFailure != nil }) {
                retrying = true
                lastFailure = stuck.lastFailure.map { "\(stuck.activityType): \($0)" }
            }
        }
    }
}
