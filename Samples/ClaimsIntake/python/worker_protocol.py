"""The JSON-lines protocol of a Durable process-pool worker (Docs/activities.md, "Process pools").

A worker loads its model once, prints one ready line naming the model (name, version, the SHA-256 of
its weights files, metadata), then answers one request per line until its stdin ends. Each worker of
this sample is a module with a `load()` that returns (model description, handler); `serve` does the
rest.
"""
import hashlib
import json
import signal
import sys
import time
import traceback


class NonRetryable(Exception):
    """An error a retry cannot fix (bad input): reported with nonRetryable true."""


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def serve(load):
    """Loads the model, prints the ready line, answers requests until EOF on stdin."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started = time.perf_counter()
    model, handle = load()
    load_ms = (time.perf_counter() - started) * 1000
    model.setdefault("metadata", {})["loadMs"] = f"{load_ms:.0f}"
    print(json.dumps({"ready": True, "model": model}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            begun = time.perf_counter()
            output = handle(request["input"])
            output["modelMs"] = round((time.perf_counter() - begun) * 1000, 3)
            answer = {"id": request["id"], "output": output}
        except NonRetryable as error:
            answer = {"id": request["id"], "error": {"type": "InvalidInput", "message": str(error), "nonRetryable": True}}
        except Exception as error:  # reported to the engine, which retries by the activity's policy
            traceback.print_exc(file=sys.stderr)
            answer = {"id": request["id"], "error": {"type": type(error).__name__, "message": str(error)}}
        print(json.dumps(answer), flush=True)
