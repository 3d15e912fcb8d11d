#!/usr/bin/env bash
# Installs what Durable builds against and tests with, when missing: the SQLite and LZ4 headers,
# python3 (the process-pool tests and benchmark run it as a model worker, stdlib only) with venv (the
# API fuzz run's schemathesis comes from PyPI into a venv) and PostgreSQL (the server binaries for the
# tests' throwaway cluster, and pg_dump); with --chromium also Debian's chromium (the console's headless
# browser check, Scripts/console-check.sh). Used by Scripts/demo.sh and (with --chromium) Scripts/test.sh;
# safe to run again.
set -euo pipefail
missing=()
for pkg in libsqlite3-dev liblz4-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v /usr/bin/python3 >/dev/null || missing+=(python3)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${1:-}" = "--chromium" ]; then command -v chromium >/dev/null || missing+=(chromium); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift 6 toolchain first" >&2; exit 1; }
