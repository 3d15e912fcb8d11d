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
        var leases = ""
        if owners.isEmpty {
            leases = "<p class=\"muted\">No worker holds a lease on a run now.</p>"
        } else {
            leases = "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Worker (host/pid/start/engine)</th><th scope=\"col\">Runs leased</th></tr></thead><tbody>"
                + owners.sorted { $0.key < $1.key }.map { owner, count in
                    "<tr><td class=\"id\">\(HTML.escape(owner))</td><td>\(count)</td></tr>"
                }.joined() + "</tbody></table></div>"
        }

        var buffer = [UInt8]()
        server.registry.emit(into: &buffer)
        let samples = MetricSample.parse(String(decoding: buffer, as: UTF8.self))
        var pools: [String: [String: Double]] = [:]
        for sample in samples where sample.name.hasPrefix("durable_pool_") {
            guard let pool = sample.labels["pool"] else { continue }
            pools[pool, default: [:]][sample.name, default: 0] += sample.value
        }
        var poolHTML = ""
        if pools.isEmpty {
            poolHTML = server.hasCode
                ? "<p class=\"muted\">No pool of this process has reported yet (an activity's pool reports once it is used or warmed).</p>"
                : "<p class=\"muted\">No worker in this process: <code>durable serve</code> has no application code. Pools report where an application runs its worker (<code>APP serve --worker</code> or <code>APP worker</code>); their metrics are on that process's <code>/metrics</code>.</p>"
        } else {
            func number(_ value: Double?) -> String {
                guard let value else { return "—" }
                return value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value)
            }
            poolHTML = """
                <div class="scroll"><table class="pools"><thead><tr><th scope="col">Pool (activity)</th><th scope="col">Slots busy</th>\
                <th scope="col">Slots warm, idle</th><th scope="col">Cold starts</th><th scope="col">Warm hits</th>\
                <th scope="col">Warm-up failures</th><th scope="col">Recycled</th><th scope="col">Failed attempts</th></tr></thead><tbody>
                """
            for (pool, values) in pools.sorted(by: { $0.key < $1.key }) {
                poolHTML += """
                    <tr data-pool="\(HTML.escape(pool))"><td>\(HTML.escape(pool))</td><td>\(number(values["durable_pool_slots_in_use"]))</td>\
                    <td>\(number(values["durable_pool_slots_idle"]))</td><td>\(number(values["durable_pool_cold_starts_total"]))</td>\
                    <td>\(number(values["durable_pool_warm_hits_total"]))</td><td>\(number(values["durable_pool_warm_up_failures_total"]))</td>\
                    <td>\(number(values["durable_pool_recycled_total"]))</td><td>\(number(values["durable_pool_failures_total"]))</td></tr>
                    """
            }
            poolHTML += "</tbody></table></div><p class=\"muted\">\"—\": the pool has no slots (an activity registered without a pool) or has not reported that figure.</p>"
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
