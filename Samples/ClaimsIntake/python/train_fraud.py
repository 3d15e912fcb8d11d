"""Trains the fraud model on a generated data set (fixed seed) and saves it with its SHA-256.

The data set stands in for an insurer's labelled history: 6,000 claims whose features are those the
workflow sends (FEATURES), drawn from distributions that differ between honest and fraudulent
claims, with overlap and label noise so the model is not trivially right. A gradient-boosted tree
ensemble (scikit-learn) is fitted on 80 % and scored on the held-out 20 %.

    python train_fraud.py OUT_DIR        # writes OUT_DIR/fraud_model.joblib and OUT_DIR/fraud_model.json
"""
import json
import os
import sys

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from worker_protocol import sha256_file

FEATURES = ["logAmount", "itemCount", "policyAgeDays", "priorClaims", "fraudSimilarity", "amountMismatch",
            "ocrConfidence"]
SEED = 20261205
VERSION = "2026.12-gb1"


def generate(rows, rng):
    fraud = rng.random(rows) < 0.12
    n = rows
    log_amount = np.where(fraud, rng.normal(8.2, 0.7, n), rng.normal(6.9, 0.8, n))
    items = np.where(fraud, rng.integers(1, 4, n), rng.integers(1, 6, n))
    age = np.where(fraud, rng.gamma(1.5, 40, n), rng.gamma(2.0, 400, n))
    prior = np.where(fraud, rng.poisson(1.8, n), rng.poisson(0.4, n))
    similarity = np.clip(np.where(fraud, rng.normal(0.50, 0.10, n), rng.normal(0.30, 0.08, n)), -1, 1)
    # A claimed total that differs from the invoice: clerical slips among honest claims (small), and
    # inflated totals among fraudulent ones (often larger).
    mismatch = np.where(fraud, np.abs(rng.normal(0.12, 0.15, n)) * (rng.random(n) < 0.5),
                        np.abs(rng.normal(0.0, 0.06, n)) * (rng.random(n) < 0.15))
    confidence = np.clip(rng.normal(72, 10, n), 20, 96)
    x = np.column_stack([log_amount, items, age, prior, similarity, mismatch, confidence])
    flipped = rng.random(n) < 0.03                     # label noise: mistakes in the history
    y = np.where(flipped, ~fraud, fraud).astype(int)
    return x, y


def main(out):
    rng = np.random.default_rng(SEED)
    x, y = generate(6000, rng)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    model = GradientBoostingClassifier(n_estimators=150, max_depth=3, learning_rate=0.08, random_state=SEED)
    model.fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "fraud_model.joblib")
    joblib.dump({"model": model, "features": FEATURES, "version": VERSION}, path)
    meta = {"name": "fraud-gb", "version": VERSION, "file": "fraud_model.joblib", "sha256": sha256_file(path),
            "features": FEATURES, "seed": SEED, "rows": len(y), "testAUC": round(float(auc), 4),
            "sklearn": sklearn.__version__, "estimator": "GradientBoostingClassifier(150, depth 3)"}
    with open(os.path.join(out, "fraud_model.json"), "w") as handle:
        json.dump(meta, handle, indent=2)
    print(f"trained {meta['name']}@{VERSION}: {len(y)} rows (seed {SEED}), held-out AUC {auc:.3f}, "
          f"sha256 {meta['sha256'][:12]}… in {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: train_fraud.py OUT_DIR")
    main(sys.argv[1])
