#!/usr/bin/env bash
# The web console in a real browser: Debian's chromium, headless, driven over the DevTools protocol by
# Scripts/console_check.py (websocket-client from PyPI, in a venv made once). It starts a real `serve`
# of the test application (with its worker) on a fresh journal, builds runs through the API, signs in
# through the login form and checks what the runs page and run pages show (see the .py). With
# --screenshots it also writes Docs/console-runs.png and Docs/console-run.png (shown in Docs/console.md).
# Needs the products built (swift build); Scripts/test.sh runs it. Takes about 20 s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v chromium >/dev/null || bash Scripts/install-deps.sh --chromium
VENV="${DURABLE_CONSOLE_VENV:-$HOME/.cache/durable-console-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import websocket' 2>/dev/null; then
  echo "creating the console check's venv at $VENV" >&2
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "websocket-client==1.9.0"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/durable-console.XXXXXX")"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
.build/debug/durable auth add console-operator --role operator --file "$work/tokens.json" 2>/dev/null > "$work/token"
source Scripts/test-serve.sh
STEP_MS=120 start_test_serve --auth "$work/tokens.json"
shots=()
[ "${1:-}" = "--screenshots" ] && shots=(--screenshots Docs)
"$VENV/bin/python" Scripts/console_check.py "http://$address" "$(cat "$work/token")" "${shots[@]}" \
  || { echo "--- serve log" >&2; tail -50 "$work/serve.log" >&2; exit 1; }
