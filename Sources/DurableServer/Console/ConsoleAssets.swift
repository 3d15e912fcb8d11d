import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The console's style sheet and its one script, shipped inside the binary. Their URLs carry a hash
/// of their content, so that browsers may keep them for a year and still load a new build's.
enum ConsoleAssets {
    static let cssName = "console-\(hash(css)).css"
    static let jsName = "console-\(hash(js)).js"
    static var cssPath: String { "/ui/assets/" + cssName }
    static var jsPath: String { "/ui/assets/" + jsName }

    private static func hash(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
    }

    /// The asset named `file` (200, or 304 for a matching `If-None-Match`), or a 404.
    static func response(for file: String, request: Request) -> Response {
        let (text, type): (String, String)
        switch file {
        case cssName: (text, type) = (css, "text/css; charset=utf-8")
        case jsName: (text, type) = (js, "text/javascript; charset=utf-8")
        default:
            return Response(
                status: .notFound, headers: [.contentType: "text/plain; charset=utf-8", .xContentTypeOptions: "nosniff"],
                body: .init(byteBuffer: ByteBuffer(string: "no such asset\n")))
        }
        let tag = "\"\(file)\""
        var headers: HTTPFields = [
            .contentType: type, .cacheControl: "public, max-age=31536000, immutable", .eTag: tag,
            .xContentTypeOptions: "nosniff",
        ]
        if request.headers[.ifNoneMatch] == tag { return Response(status: .notModified, headers: headers) }
        headers[.contentLength] = String(text.utf8.count)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static let css = #"""
:root { --fg: #1a1a1a; --muted: #555; --bg: #fff; --line: #d0d4d9; --accent: #0b57d0; --panel: #f5f6f8;
  --ok: #146c2e; --bad: #b3261e; --warn: #8a4b00; --info: #0b57d0; --focus: #ffbf47; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus, textarea:focus, [tabindex]:focus, summary:focus {
  outline: 3px solid var(--focus); outline-offset: 1px; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 8px; top: 8px; background: var(--bg); padding: 4px 8px; z-index: 2; }
header.top { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: center; padding: 8px 16px; background: #16202c; color: #fff; }
header.top a { color: #fff; text-decoration: none; }
header.top .brand { font-weight: 700; font-size: 17px; }
header.top nav { display: flex; gap: 16px; }
header.top nav a[aria-current] { text-decoration: underline; text-underline-offset: 4px; }
header.top .who { margin-left: auto; display: flex; gap: 12px; align-items: center; }
header.top .who form { margin: 0; }
.role { font-size: 12px; background: #34465a; padding: 1px 6px; border-radius: 8px; }
button.link { background: none; border: none; color: inherit; text-decoration: underline; cursor: pointer; font: inherit; padding: 0; }
main { padding: 12px 16px 48px; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 22px; margin: 8px 0 12px; word-break: break-all; }
h2 { font-size: 18px; margin: 24px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.muted { color: var(--muted); }
.error { color: var(--bad); background: #fdecea; border: 1px solid #f3b8b3; padding: 8px 12px; border-radius: 4px; }
.notice { background: #e8f0fe; border: 1px solid #b6cdf7; padding: 8px 12px; border-radius: 4px; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
td.id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; min-width: 10em; }
table.runs td.id.wide, table.runs td a.run { white-space: nowrap; min-width: 0; word-break: normal; }
td.id .muted { font-family: system-ui, sans-serif; word-break: normal; overflow-wrap: anywhere; }
pre, code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 8px; overflow: auto; max-height: 420px; margin: 4px 0; white-space: pre-wrap; word-break: break-word; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.summary dt { font-weight: 600; color: var(--muted); }
dl.summary dd { margin: 0; word-break: break-all; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; background: #e3e6ea; color: #1a1a1a; }
.status-completed { background: #d5f0dc; color: var(--ok); }
.status-failed, .status-terminated { background: #fbdcd9; color: var(--bad); }
.status-running, .status-pending { background: #dbe7fd; color: #0842a0; }
.status-held, .status-retrying { background: #fdebc8; color: var(--warn); }
.status-cancelled, .status-continuedAsNew { background: #e8e1f5; color: #4a2a8a; }
form.filters { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: flex-end; background: var(--panel); padding: 10px; border: 1px solid var(--line); border-radius: 4px; }
form.filters label, form.action label { display: flex; flex-direction: column; font-size: 13px; font-weight: 600; gap: 2px; }
form.filters label.check { flex-direction: row; align-items: center; gap: 6px; }
input, select, textarea, button { font: inherit; }
input[type=text], input[type=password], input[type=datetime-local], select, textarea { padding: 5px 6px; border: 1px solid #8a9199; border-radius: 3px; background: #fff; color: var(--fg); min-width: 0; }
textarea { width: 100%; min-height: 6em; font-family: ui-monospace, Menlo, Consolas, monospace; }
button, a.button { display: inline-block; padding: 6px 12px; border: 1px solid #0842a0; background: var(--accent); color: #fff; border-radius: 3px; cursor: pointer; text-decoration: none; }
button.danger, a.button.danger { background: var(--bad); border-color: #7d1a14; }
button.secondary, a.button.secondary { background: #fff; color: var(--accent); }
a.small, button.small { padding: 2px 8px; font-size: 13px; }
.counts { display: flex; flex-wrap: wrap; gap: 6px; margin: 10px 0; padding: 0; list-style: none; }
.counts a { text-decoration: none; }
.pager { display: flex; gap: 12px; margin: 10px 0; align-items: center; flex-wrap: wrap; }
.actions { display: flex; flex-wrap: wrap; gap: 6px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 8px 24px; }
form.action { border: 1px solid var(--line); border-radius: 4px; padding: 10px; margin: 8px 0; display: flex; flex-direction: column; gap: 8px; }
.timeline-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
svg.timeline { display: block; min-width: 640px; width: 100%; height: auto; font: 12px system-ui, sans-serif; }
svg.timeline .axis line { stroke: #c4c9cf; }
svg.timeline .axis text, svg.timeline .label { fill: #333; }
svg.timeline .bar { stroke-width: 1; }
svg.timeline .bar:focus { outline: none; stroke: #000; stroke-width: 3; }
svg.timeline .activity.completed { fill: #4c9a5f; stroke: #2f6b3d; }
svg.timeline .activity.pending { fill: #7aa7e8; stroke: #2c5fb0; }
svg.timeline .activity.failed, svg.timeline .activity.cancelled { fill: #d9695f; stroke: #8c2a22; }
svg.timeline .timer { fill: #c9b3ea; stroke: #6b4aa0; }
svg.timeline .child { fill: #f0c27a; stroke: #9a6a1c; }
svg.timeline .attempt-failed { fill: #b3261e; stroke: #fff; stroke-width: 1; }
svg.timeline .signal { fill: #0b57d0; stroke: #fff; }
svg.timeline .now { stroke: #b3261e; stroke-dasharray: 4 3; }
.timeline-detail { min-height: 1.5em; margin: 6px 0; font-size: 14px; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 13px; margin: 6px 0; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; border-radius: 2px; }
.legend .lg-completed::before { background: #4c9a5f; } .legend .lg-pending::before { background: #7aa7e8; }
.legend .lg-failed::before { background: #d9695f; } .legend .lg-attempt::before { background: #b3261e; border-radius: 6px; }
.legend .lg-timer::before { background: #c9b3ea; } .legend .lg-child::before { background: #f0c27a; }
.legend .lg-signal::before { background: #0b57d0; transform: rotate(45deg) scale(.8); }
.login { max-width: 420px; margin: 48px auto; }
.login form { display: flex; flex-direction: column; gap: 10px; }
.login input { width: 100%; }
.live-toggle { font-size: 13px; display: inline-flex; gap: 6px; align-items: center; }
@media (max-width: 700px) {
  main { padding: 8px; }
  dl.summary { grid-template-columns: 1fr; }
  dl.summary dd { margin-bottom: 6px; }
  th, td { padding: 4px 5px; }
  table.runs .wide { display: none; }
  header.top .who { margin-left: 0; }
}
"""#

    static let js = #"""
// Durable console: auto-refresh, live run pages (server-sent events) and the timeline's details.
// Every page works without it; it only keeps pages current and makes the timeline's bars explainable.
"use strict";
(function () {
  var body = document.body;
  var refreshing = false;

  // Replaces each [data-live] element with the same element of a fresh copy of the page.
  function refresh() {
    if (refreshing) return;
    refreshing = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok || r.redirected) throw new Error(String(r.status)); return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) old.replaceWith(document.importNode(next, true));
        });
        bindTimeline();
        var stamp = document.getElementById("refreshed");
        if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function () {})
      .then(function () { refreshing = false; });
  }

  // Auto-refresh (the runs page and the workers page): every data-refresh ms while the box is ticked,
  // skipped while the tab is hidden (each refresh reads the page's runs again on the server).
  var every = parseInt(body.getAttribute("data-refresh") || "0", 10);
  var toggle = document.getElementById("autorefresh");
  if (every > 0 && toggle) {
    toggle.hidden = false;
    var box = toggle.querySelector("input");
    box.checked = localStorage.getItem("durable.autorefresh") !== "off";
    box.addEventListener("change", function () { localStorage.setItem("durable.autorefresh", box.checked ? "on" : "off"); });
    setInterval(function () { if (box.checked && !document.hidden) refresh(); }, every);
  }

  // A run page of an open run follows the run's history as server-sent events and refreshes on each.
  var stream = body.getAttribute("data-events");
  if (stream && window.EventSource) {
    var source = new EventSource(stream);
    var timer = null;
    var soon = function () { if (!timer) timer = setTimeout(function () { timer = null; refresh(); }, 250); };
    var kinds = (body.getAttribute("data-event-kinds") || "").split(" ");
    kinds.forEach(function (kind) { if (kind) source.addEventListener(kind, soon); });
    source.addEventListener("end", function () { source.close(); soon(); });
    var live = document.getElementById("live-state");
    if (live) { live.hidden = false; }
    source.onerror = function () { if (live) live.textContent = "reconnecting…"; };
    source.onopen = function () { if (live) live.textContent = "live"; };
  }

  // The timeline: a bar or mark, focused or clicked, explains itself below the drawing.
  function bindTimeline() {
    var detail = document.getElementById("timeline-detail");
    if (!detail) return;
    document.querySelectorAll("svg.timeline [data-detail]").forEach(function (node) {
      var show = function () { detail.textContent = node.getAttribute("data-detail"); };
      node.addEventListener("focus", show);
      node.addEventListener("click", show);
      node.addEventListener("mouseenter", show);
    });
  }
  bindTimeline();
})();
"""#
}
