"""Drives Debian's chromium, headless, over the DevTools protocol through the web console of a real
`serve` (started by Scripts/console-check.sh), and checks what the DOM shows.

Usage: console_check.py BASE_URL TOKEN [--screenshots DIR]

It builds the journal through the API (the server runs the test application's worker), signs in
through the login form, loads the runs page and run pages, and fails (exit 1) when the DOM does not
show: a row per run with the retrying run marked, one timeline bar per activity of each run, the
pending activity's failure text, the live (server-sent events) state of an open run, the timeline's
details on focus, no horizontal overflow at a phone's width, and no script error or CSP violation.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client, from PyPI

BASE, TOKEN = sys.argv[1], sys.argv[2]
SHOTS = sys.argv[sys.argv.index("--screenshots") + 1] if "--screenshots" in sys.argv else None
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def api(method, path, body=None):
    request = urllib.request.Request(
        BASE + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def wait(what, condition, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit("timed out waiting for " + what)


# A real journal: completed runs with several activities, a failed saga, a parent and child, a run
# waiting for signals, and one whose last activity keeps failing and is retried.
runs = {}
for tag in ("a", "b"):
    runs["crash-" + tag] = api("POST", "/v1/workflows/CrashFlow/runs", {"input": {"tag": tag}, "workflowID": "claim-" + tag})["runID"]
runs["transfer"] = api("POST", "/v1/workflows/Transfer/runs", {"input": "tx-7", "workflowID": "transfer-7"})["runID"]
runs["family"] = api("POST", "/v1/workflows/Family/runs", {"input": 300, "workflowID": "family-3"})["runID"]
runs["gather"] = api("POST", "/v1/workflows/Gather/runs", {"input": 3, "workflowID": "review-queue-12"})["runID"]
api("POST", "/v1/runs/%s/signals/item" % runs["gather"], "first")
runs["flaky"] = api("POST", "/v1/workflows/Flaky/runs", {"input": "ocr", "workflowID": "claim-1042"})["runID"]


def described(name):
    return api("GET", "/v1/runs/" + runs[name])


wait("the completed runs", lambda: all(described(n)["status"] in ("completed", "failed") for n in ("crash-a", "crash-b", "transfer", "family")))
wait("the retrying activity's third attempt", lambda: len(described("flaky")["activities"]) == 4
     and described("flaky")["activities"][3]["attempts"] >= 3)

# Chromium, headless, with a fresh profile; it writes its DevTools port to DevToolsActivePort.
profile = tempfile.mkdtemp(prefix="durable-chromium-")
arguments = ["chromium", "--headless=new", "--remote-debugging-port=0", "--user-data-dir=" + profile,
             "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--hide-scrollbars",
             "--disable-dev-shm-usage", "--window-size=1280,900", "about:blank"]
if os.geteuid() == 0:
    arguments.insert(1, "--no-sandbox")
browser = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    port_file = os.path.join(profile, "DevToolsActivePort")
    wait("chromium's DevTools port", lambda: os.path.exists(port_file) and open(port_file).read().strip())
    port = open(port_file).read().split()[0]
    targets = wait("a page target", lambda: [t for t in json.load(urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port)) if t["type"] == "page"])
    socket = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
    counter = [0]
    problems = []

    def send(method, **params):
        counter[0] += 1
        socket.send(json.dumps({"id": counter[0], "method": method, "params": params}))
        while True:
            message = json.loads(socket.recv())
            if message.get("method") == "Runtime.exceptionThrown":
                problems.append(message["params"]["exceptionDetails"].get("text", "exception"))
            elif message.get("method") == "Log.entryAdded" and message["params"]["entry"]["level"] == "error":
                problems.append(message["params"]["entry"].get("text", "error"))
            elif message.get("method") == "Runtime.consoleAPICalled" and message["params"]["type"] == "error":
                problems.append(str(message["params"]["args"]))
            if message.get("id") == counter[0]:
                if "error" in message:
                    raise SystemExit("%s: %s" % (method, message["error"]))
                return message["result"]

    def js(expression):
        result = send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise SystemExit("%s: %s" % (expression, result["exceptionDetails"]))
        return result["result"].get("value")

    def load(url):
        send("Page.navigate", url=url)
        time.sleep(0.2)
        wait("the page " + url, lambda: js("document.readyState") == "complete")

    def screenshot(name, width):
        send("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        height = min(js("document.documentElement.scrollHeight"), 2600)
        send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(0.3)
        data = send("Page.captureScreenshot", format="png")["data"]
        with open(os.path.join(SHOTS, name), "wb") as out:
            out.write(base64.b64decode(data))
        print("wrote " + os.path.join(SHOTS, name))
        send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    send("Page.enable")
    send("Runtime.enable")
    send("Log.enable")
    send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    # Sign in through the form.
    load(BASE + "/ui/runs")
    check(js("location.pathname") == "/ui/login", "without a session the runs page sends to the login page")
    js("document.getElementById('token').value = %s; document.querySelector('form[action=\"/ui/login\"]').submit(); true" % json.dumps(TOKEN))
    wait("the runs page after signing in", lambda: js("location.pathname") == "/ui/runs" and js("document.readyState") == "complete")
    check("durable_session" not in js("document.cookie"), "the session cookie is HttpOnly (scripts cannot read it)")

    # The runs page.
    rows = js("Array.from(document.querySelectorAll('tr[data-run]')).map(r => r.getAttribute('data-run'))")
    check(set(runs.values()) <= set(rows), "the runs page lists every run started (%d rows)" % len(rows))
    flaky_row = js("(document.querySelector('tr[data-run=\"%s\"]') || {}).innerText || ''" % runs["flaky"])
    check("retrying" in flaky_row and "UpstreamTimeout" in flaky_row, "the retrying run is marked retrying, with its failure")
    check(js("document.querySelectorAll('tr[data-run] a.button.danger').length") >= 1, "an operator sees terminate buttons in the list")
    check(js("!document.getElementById('autorefresh').hidden"), "the auto-refresh switch is shown (the script ran)")
    retrying = js("fetch('/ui/runs?retrying=1').then(r => r.text()).then(t => new DOMParser().parseFromString(t, 'text/html').querySelectorAll('tr[data-run]').length)")
    check(retrying == 1, "the retrying filter finds exactly the retrying run (%s)" % retrying)
    if SHOTS:
        screenshot("console-runs.png", 1280)

    # Run pages: one bar per activity, the pending activity's failure, live while open.
    for name in ("crash-a", "transfer", "flaky"):
        activities = len(described(name)["activities"])
        load(BASE + "/ui/runs/" + runs[name])
        bars = js("document.querySelectorAll('svg.timeline rect.bar.activity').length")
        check(bars == activities and activities >= 3, "run %s: %d timeline bars for %d activities" % (name, bars, activities))
    pending = js("document.getElementById('pending').innerText")
    check("UpstreamTimeout: the model server did not answer within 30 s" in pending, "the pending activity's failure text is shown")
    check(js("document.querySelectorAll('svg.timeline circle.attempt-failed').length") >= 2, "failed attempts are marked on the timeline")
    wait("the run page's event stream", lambda: js("(document.getElementById('live-state') || {}).textContent") == "live", timeout=10)
    check(True, "the open run's page follows its events (server-sent events connected)")
    before = js("document.querySelectorAll('svg.timeline circle.attempt-failed').length")
    js("document.querySelector('svg.timeline rect.bar.activity.pending').dispatchEvent(new FocusEvent('focus')); true")
    check("attempt(s) recorded" in js("document.getElementById('timeline-detail').textContent"), "a focused bar explains itself")
    if SHOTS:
        screenshot("console-run.png", 1280)
    # A new failed attempt arrives over the event stream and the timeline is redrawn.
    try:
        wait("a new failed attempt drawn live", lambda: js("document.querySelectorAll('svg.timeline circle.attempt-failed').length") > before, timeout=12)
        check(True, "the timeline is redrawn live when the next attempt fails")
    except SystemExit:
        check(False, "the timeline is redrawn live when the next attempt fails")

    # Terminate from the list: the row's button, the confirmation page, its form; then the run's page.
    load(BASE + "/ui/runs")
    js("document.querySelector('tr[data-run=\"%s\"] a.button.danger').click(); true" % runs["gather"])
    wait("the confirmation page", lambda: "/confirm" in js("location.pathname + location.search") and js("document.readyState") == "complete")
    check(js("document.querySelector('h1').textContent") == "Terminate the run?", "Terminate in the list asks to confirm")
    js("document.getElementById('reason').value = 'checked from chromium'; document.querySelector('form.action button[type=submit]').click(); true")
    wait("the run page after terminating", lambda: js("location.search") == "?done=terminate" and js("document.readyState") == "complete")
    wait("the run terminated", lambda: described("gather")["status"] == "terminated")
    load(BASE + "/ui/runs/" + runs["gather"])
    check("checked from chromium" in js("document.getElementById('summary').innerText"), "the terminated run's page shows the reason")

    # A phone's width: nothing wider than the screen (tables and the timeline scroll in their boxes).
    send("Emulation.setDeviceMetricsOverride", width=390, height=800, deviceScaleFactor=2, mobile=True)
    for path in ("/ui/runs", "/ui/runs/" + runs["flaky"]):
        load(BASE + path)
        width = js("document.documentElement.scrollWidth")
        check(width <= 392, "%s fits a 390 px screen (%d px wide)" % (path, width))
    check(not problems, "no script error or CSP violation (%s)" % "; ".join(problems[:3]))
    socket.close()
finally:
    browser.terminate()
    try:
        browser.wait(10)
    except subprocess.TimeoutExpired:
        browser.kill()
    shutil.rmtree(profile, ignore_errors=True)

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("console check passed")
