#!/usr/bin/env bash
# Installs build dependencies and the world's data if missing, then runs the whole test suite (XCTest; no
# Python needed). Extra arguments go to `swift test` (e.g. --filter GradientTests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# The explicit import check fails the build when a target imports a module it does not declare (the layering
# rule: a Product target may not import the Testbed).
swift test --disable-swift-testing --explicit-target-dependency-import-check error "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line with the totals, counted per test case (XCTest's own closing line counts failed
# assertions, so a test with two failing assertions would count twice).
passed=$(grep -cE "^Test Case '.*' passed \(" "$log" || true)
failed=$(grep -cE "^Test Case '.*' failed \(" "$log" || true)
skipped=$(grep -cE "^Test Case '.*' skipped \(" "$log" || true)
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
