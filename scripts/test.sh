#!/usr/bin/env bash
# Installs build dependencies if missing, then runs the whole test suite (no Python needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift test "$@"
