"""Fraud-scoring worker: the scikit-learn model trained by train_fraud.py, loaded once per process.

Refuses to start when the model file's SHA-256 is not the one recorded at training (a swapped or
damaged file), and reports name, version, weights hash and training metadata in its ready line, so
each score in the journal names the exact model that produced it.
Input: {"claimId", "features": {name: number}}; output: {"score", "model"}.
"""
import json
import math
import os

import joblib

from worker_protocol import NonRetryable, serve, sha256_file


def load():
    folder = os.environ.get("CLAIMS_MODEL_DIR")
    if not folder:
        raise SystemExit("CLAIMS_MODEL_DIR is not set (the folder train_fraud.py wrote)")
    with open(os.path.join(folder, "fraud_model.json")) as handle:
        meta = json.load(handle)
    path = os.path.join(folder, meta["file"])
    digest = sha256_file(path)
    if digest != meta["sha256"]:
        raise SystemExit(f"{path}: SHA-256 {digest} is not the {meta['sha256']} recorded at training; retrain")
    bundle = joblib.load(path)
    model, features = bundle["model"], bundle["features"]
    identity = {"name": meta["name"], "version": meta["version"], "weights": {meta["file"]: digest},
                "metadata": {"seed": str(meta["seed"]), "rows": str(meta["rows"]), "testAUC": str(meta["testAUC"]),
                             "sklearn": meta["sklearn"]}}

    def handle(request):
        given = request.get("features")
        if not isinstance(given, dict):
            raise NonRetryable(f"claim {request.get('claimId')}: features must be an object")
        missing = [name for name in features if not isinstance(given.get(name), (int, float))]
        if missing:
            raise NonRetryable(f"claim {request.get('claimId')}: missing or non-numeric features {', '.join(missing)}")
        row = [[float(given[name]) for name in features]]
        if not all(math.isfinite(value) for value in row[0]):
            raise NonRetryable(f"claim {request.get('claimId')}: a feature is not a finite number")
        score = float(model.predict_proba(row)[0][1])
        return {"score": round(score, 4), "model": f"{meta['name']}@{meta['version']}"}

    return identity, handle


if __name__ == "__main__":
    serve(load)
