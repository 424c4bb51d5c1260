#!/usr/bin/env bash
# The README's β sweep: erases one concept from the committed base model at several preservation weights β
# (everything else at the defaults), then tabulates and plots the reports.
#   scripts/beta_sweep.sh [CONCEPT] [β …]        e.g. scripts/beta_sweep.sh bag 0.1 1 10 100
# Outputs: out/beta-sweep/beta-<β>/ (masks, baked model, report.json, grid.png), docs/beta-sweep.svg and a
# Markdown table on stdout. Extra `mce erase` arguments can be passed in MCE_ERASE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
concept=${1:-bag}
shift || true
betas=("$@")
[ ${#betas[@]} -eq 0 ] && betas=(0.1 1 10 100)
swift build -c release --product mce >&2
out=out/beta-sweep
mkdir -p "$out"
for b in "${betas[@]}"; do
    # shellcheck disable=SC2086
    .build/release/mce erase --concept "$concept" --beta "$b" --out "$out/beta-$b" ${MCE_ERASE_ARGS:-} >&2
done
python3 scripts/plot_beta_sweep.py "$out" docs/beta-sweep.svg
