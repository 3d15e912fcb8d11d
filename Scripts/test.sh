#!/usr/bin/env bash
# The whole test suite: installs the system libraries when missing, builds every product (the tests
# spawn the built executables as real processes), then runs the Swift Testing suites.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Scripts/install-deps.sh
swift build --build-tests
swift test --skip-build "$@"
