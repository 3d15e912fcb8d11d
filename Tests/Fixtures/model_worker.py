#!/usr/bin/env python3
"""A model-like worker speaking Durable's JSON-lines protocol, for the WorkerProcess tests.

Stdlib only. It prints a ready line, then answers one request line at a time:

    -> {"id":17,"activity":"Sentiment","attempt":1,"key":"...","input":{...},"heartbeat":...}
    <- {"id":17,"heartbeat":{...}}        (zero or more)
    <- {"id":17,"partial":...}            (zero or more: partial output)
    <- {"id":17,"output":...}  or  {"id":17,"error":{"type":"T","message":"M","nonRetryable":false}}

Environment:
    WARMUP_MS          sleep this long before the ready line (loading a model)
    PID_FILE           append this process's pid and a newline to this file first
    READY_LINE         print this instead of the normal ready line
    EXIT_BEFORE_READY  "1": write "cannot load model" to stderr and exit with status 5
    CALL_MS            fixed delay added to every call (model time)
    READ_DELAY_MS      sleep this long before reading each request line (a busy or slow reader)

An input object with "first": {...} has those fields replace its own in attempt 1 only (so a test
can make the first attempt crash or hang and the retry succeed).

Input ops: echo, sleep (writes "stderr" first, if given), fail, crash, malformed, flood ("bytes"
bytes without a newline, then sleeps "ms"), heartbeat, stall_heartbeats, stream ("tokens" as partial output, "ms" apart, then
their concatenation, or with "fail" a retryable error), ignore_term (with
"announce": true it heartbeats its pid once SIGTERM is ignored), stderr, request (outputs the request
without its input); anything else is answered with a non-retryable "UnknownOp" error.
SIGTERM writes "terminating" to stderr and exits with status 143. EOF on stdin exits 0.
"""

import json
import os
import signal
import sys
import time

CALLS = 0


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def write_stderr(text):
    sys.stderr.write(text)
    sys.stderr.flush()


def sleep_ms(ms):
    if ms > 0:
        time.sleep(ms / 1000.0)


def on_term(signum, frame):
    write_stderr("terminating\n")
    os._exit(143)


def echo(value):
    return {"value": value, "pid": os.getpid(), "calls": CALLS}


def handle(request):
    rid = request.get("id")
    payload = request.get("input")
    if not isinstance(payload, dict):
        payload = {}
    if request.get("attempt") == 1 and isinstance(payload.get("first"), dict):
        payload = dict(payload, **payload["first"])
    op = payload.get("op")

    if op == "echo":
        emit({"id": rid, "output": echo(payload.get("value"))})
    elif op == "sleep":
        write_stderr(payload.get("stderr", ""))
        sleep_ms(int(payload.get("ms", 0)))
        emit({"id": rid, "output": echo(payload.get("value"))})
    elif op == "fail":
        emit({
            "id": rid,
            "error": {
                "type": payload.get("type", "ModelError"),
                "message": payload.get("message", "failed"),
                "nonRetryable": bool(payload.get("nonRetryable", False)),
            },
        })
    elif op == "crash":
        write_stderr(payload.get("stderr", "crashing"))
        os._exit(3)
    elif op == "flood":
        sys.stdout.write("x" * int(payload.get("bytes", 0)))
        sys.stdout.flush()
        sleep_ms(int(payload.get("ms", 0)))
        emit({"id": rid, "output": echo(payload.get("value"))})
    elif op == "malformed":
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
    elif op == "heartbeat":
        count = int(payload.get("count", 1))
        for step in range(count):
            if step > 0:
                sleep_ms(int(payload.get("ms", 0)))
            emit({"id": rid, "heartbeat": {"step": step}})
        emit({"id": rid, "output": {"steps": count, "resumedFrom": request.get("heartbeat")}})
    elif op == "stall_heartbeats":
        count = int(payload.get("count", 1))
        for step in range(count):
            if step > 0:
                sleep_ms(int(payload.get("ms", 0)))
            emit({"id": rid, "heartbeat": {"step": step}})
        sleep_ms(int(payload.get("then_sleep_ms", 0)))
        emit({"id": rid, "output": {"steps": count}})
    elif op == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if payload.get("announce"):
            emit({"id": rid, "heartbeat": {"ignoring": "SIGTERM", "pid": os.getpid()}})
        sleep_ms(int(payload.get("ms", 0)))
        emit({"id": rid, "output": echo(payload.get("value"))})
    elif op == "stream":
        # Partial output: one line per token, "ms" apart; then the tokens joined, or (with
        # "fail": true) a retryable error after them.
        tokens = payload.get("tokens", [])
        for token in tokens:
            emit({"id": rid, "partial": token})
            sleep_ms(int(payload.get("ms", 0)))
        if payload.get("fail"):
            emit({"id": rid, "error": {"type": "ModelError", "message": "stream broke", "nonRetryable": False}})
        else:
            emit({"id": rid, "output": {"value": "".join(tokens)}})
    elif op == "request":
        envelope = {key: value for key, value in request.items() if key != "input"}
        emit({"id": rid, "output": envelope})
    elif op == "stderr":
        write_stderr(payload.get("text", ""))
        emit({"id": rid, "output": echo(payload.get("value"))})
    else:
        emit({
            "id": rid,
            "error": {"type": "UnknownOp", "message": "unknown op %r" % (op,), "nonRetryable": True},
        })


def main():
    global CALLS
    signal.signal(signal.SIGTERM, on_term)
    if os.environ.get("PID_FILE"):
        with open(os.environ["PID_FILE"], "a") as pids:
            pids.write("%d\n" % os.getpid())
    if os.environ.get("EXIT_BEFORE_READY") == "1":
        write_stderr("cannot load model\n")
        sys.exit(5)
    sleep_ms(int(os.environ.get("WARMUP_MS", "0")))
    call_ms = int(os.environ.get("CALL_MS", "0"))
    read_delay_ms = int(os.environ.get("READ_DELAY_MS", "0"))
    ready_line = os.environ.get("READY_LINE")
    if ready_line is not None:
        sys.stdout.write(ready_line + "\n")
        sys.stdout.flush()
    else:
        emit({"ready": True, "pid": os.getpid(), "model": "fixture"})

    while True:
        sleep_ms(read_delay_ms)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        CALLS += 1
        sleep_ms(call_ms)
        handle(request)


if __name__ == "__main__":
    sys.exit(main())
