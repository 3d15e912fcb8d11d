"""Calls each model directly in one Python process, without a pool: the baseline for the pool's
overhead, and a cold start per call for comparison (a new process that loads the model, then one call).

    direct_bench.py CLAIMS_DIR [CALLS]     (run with the venv's python from this folder; CLAIMS_MODEL_DIR set)
"""
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import embed_worker
import fraud_worker
import ocr_worker


def percentiles(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, round(q * (len(values) - 1)))]
    return f"{pick(.5):8.1f} {pick(.95):8.1f} {pick(.99):8.1f}"


def main(claims_dir, calls):
    claims = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(claims_dir, "claims", "*.json")))]
    requests = {
        "ocr_worker": [{"claimId": c["claimId"], "scan": c["scan"]} for c in claims],
        "embed_worker": [{"claimId": c["claimId"], "text": " ".join(i["description"] for i in c["items"]) +
                          " claim for damage and repair costs"} for c in claims],
        "fraud_worker": [{"claimId": c["claimId"], "features": {
            "logAmount": 7.0, "itemCount": len(c["items"]), "policyAgeDays": c["policyAgeDays"],
            "priorClaims": c["priorClaims"], "fraudSimilarity": 0.3, "amountMismatch": 0.0, "ocrConfidence": 70}}
            for c in claims],
    }
    print(f"{'MODEL':<14} {'LOAD ms':>8}  {'DIRECT CALL p50/p95/p99 ms':>27}  {'COLD PROCESS+LOAD+CALL p50 ms':>30}")
    for module in (ocr_worker, embed_worker, fraud_worker):
        name = module.__name__
        begun = time.perf_counter()
        _, handle = module.load()
        load_ms = (time.perf_counter() - begun) * 1000
        inputs = requests[name]
        handle(inputs[0])  # first call: lazy initialisation inside the libraries
        timings = []
        for index in range(calls):
            begun = time.perf_counter()
            handle(inputs[index % len(inputs)])
            timings.append((time.perf_counter() - begun) * 1000)
        cold = []
        for index in range(3):  # a new process per call: start, import, load, one request, exit
            line = json.dumps({"id": 1, "input": inputs[index % len(inputs)]}) + "\n"
            begun = time.perf_counter()
            done = subprocess.run([sys.executable, f"{name}.py"], input=line, capture_output=True, text=True)
            cold.append((time.perf_counter() - begun) * 1000)
            if done.returncode != 0 or '"output"' not in done.stdout:
                sys.exit(f"{name}: a cold call failed: {done.stderr[-400:]}")
        print(f"{name:<14} {load_ms:8.0f}  {percentiles(timings):>27}  {statistics.median(cold):30.0f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
