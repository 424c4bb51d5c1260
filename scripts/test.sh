#!/usr/bin/env bash
# Installs build dependencies and the world's data if missing, then runs the whole test suite (XCTest; no
# Python needed). Extra arguments go to `swift test` (e.g. --filter GradientTests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
swift test --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line with the XCTest totals.
summary=$(grep -E "Executed [0-9]+ tests?, with" "$log" | tail -1)
if [[ $summary =~ Executed\ ([0-9]+)\ tests?,\ with\ (([0-9]+)\ tests?\ skipped\ and\ )?([0-9]+)\ failures? ]]; then
    total=${BASH_REMATCH[1]} skipped=${BASH_REMATCH[3]:-0} failed=${BASH_REMATCH[4]}
    echo "tests: $((total - skipped - failed)) passed, $failed failed, $skipped skipped"
fi
exit "$status"
