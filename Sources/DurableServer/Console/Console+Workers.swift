import Durable
import DurableJournal
import Foundation
import Hummingbird
import Prometheus

extension Console {
    /// `GET /ui/workers`: the workers holding leases (from the journal) and this process's pools (from
    /// its metrics).
    func workersPage(_ call: Call) async throws -> Response {
        let owners = try await server.client.journal.leaseOwners()
        let leases = owners.isEmpty
            ? HTML.paragraph(HTML.muted("No worker holds a lease on a run now."))
            : HTML.table(["Worker (host/pid/start/engine)", "Runs leased"], owners.sorted { $0.key < $1.key }.map { owner, count in
                "<tr><td class=\"id\">\(HTML.escape(owner))</td><td>\(count)</td></tr>"
            })

        var buffer = [UInt8]()
        server.registry.emit(into: &buffer)
        var pools: [String: [String: Double]] = [:]
        for sample in MetricSample.parse(String(decoding: buffer, as: UTF8.self)) where sample.name.hasPrefix("durable_pool_") {
            guard let pool = sample.labels["pool"] else { continue }
            pools[pool, default: [:]][sample.name, default: 0] += sample.value
        }
        let poolHTML: String
        if pools.isEmpty {
            poolHTML = HTML.paragraph(HTML.muted(server.hasCode
                ? "No pool of this process has reported yet (an activity's pool reports once it is used or warmed)."
                : "No worker in this process: <code>durable serve</code> has no application code. Pools report where an "
                    + "application runs its worker (<code>APP serve --worker</code> or <code>APP worker</code>); their "
                    + "metrics are on that process's <code>/metrics</code>."))
        } else {
            func number(_ value: Double?) -> String {
                guard let value else { return "—" }
                return value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value)
            }
            let columns = [
                "durable_pool_slots_in_use", "durable_pool_slots_idle", "durable_pool_cold_starts_total",
                "durable_pool_warm_hits_total", "durable_pool_warm_up_failures_total", "durable_pool_recycled_total",
                "durable_pool_failures_total",
            ]
            let rows = pools.sorted { $0.key < $1.key }.map { pool, values in
                "<tr data-pool=\"\(HTML.escape(pool))\"><td>\(HTML.escape(pool))</td>"
                    + columns.map { "<td>\(number(values[$0]))</td>" }.joined() + "</tr>"
            }
            poolHTML = HTML.table(
                ["Pool (activity)", "Slots busy", "Slots warm, idle", "Cold starts", "Warm hits", "Warm-up failures",
                 "Recycled", "Failed attempts"], rows, class: "pools")
                + HTML.paragraph(HTML.muted(
                    "\"—\": the pool has no slots (an activity registered without a pool) or has not reported that figure."))
        }
        let body = """
            <h1>Workers and pools</h1>
            <div id="workers-live" data-live>
            <section aria-labelledby="h-leases"><h2 id="h-leases">Workers holding leases</h2>\(leases)</section>
            <section aria-labelledby="h-pools"><h2 id="h-pools">Pools of this process</h2>\(poolHTML)</section>
            <p id="refreshed" class="muted" aria-live="polite"></p>
            </div>
            <p id="autorefresh" class="live-toggle" hidden><label><input type="checkbox"> Refresh every 5 s</label></p>
            """
        return page(call, title: "Workers", body: body, bodyAttributes: " data-refresh=\"5000\"")
    }
}
