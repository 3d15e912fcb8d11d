# Sourced by the scripts that check a real server (api-fuzz.sh, console-check.sh): start_test_serve
# starts `durable-test-worker serve --port 0 --worker` (the test application, its worker in the same
# process) on a fresh journal in $work, with the arguments given added, and waits until it listens.
# It sets `pid` and `address` (host:port) and exits with the server's log when it does not start.
# The caller's EXIT trap kills $pid. Needs the products built (swift build).
start_test_serve() {
  .build/debug/durable-test-worker serve --port 0 --journal "$work/journal.sqlite" --worker "$@" \
    > "$work/serve.log" 2>&1 &
  pid=$!
  address=""
  for _ in $(seq 200); do
    address="$(grep -o 'serving http://[0-9.:]*' "$work/serve.log" | head -1 | cut -d/ -f3)" || true
    [ -n "$address" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "serve did not start within 20 s" >&2
  cat "$work/serve.log" >&2
  exit 1
}
