#!/usr/bin/env bash
# The β sweep (docs/results.md): erases one concept from the committed base model at several preservation weights β
# (everything else at the defaults), then measures all runs in one `mce evaluate` report.
#   scripts/beta_sweep.sh [CONCEPT] [β …]        e.g. scripts/beta_sweep.sh "ankle boot" 0.1 1 10 100
# Outputs: out/beta-sweep/beta-<β>/ (masks, baked model), out/beta-sweep/evaluate/ (report.html,
# report.json, beta-sweep.svg), copied to docs/beta-sweep.svg. Extra `mce erase` arguments can be passed
# in MCE_ERASE_ARGS, extra `mce evaluate` arguments in MCE_EVAL_ARGS; MCE_SWEEP_OUT and MCE_SWEEP_PLOT
# change the output folder and the plot's copy (the sweeps in docs/results.md use different ones).
set -euo pipefail
cd "$(dirname "$0")/.."
concept=${1:-ankle boot}
shift || true
betas=("$@")
[ ${#betas[@]} -eq 0 ] && betas=(0.1 1 10 100)
swift build -c release --product mce >&2
out=${MCE_SWEEP_OUT:-out/beta-sweep}
plot=${MCE_SWEEP_PLOT:-docs/beta-sweep.svg}
mkdir -p "$out" "$(dirname "$plot")"
runs=()
for b in "${betas[@]}"; do
    # shellcheck disable=SC2086
    .build/release/mce erase --concept "$concept" --beta "$b" --eval-prompts 0 --out "$out/beta-$b" ${MCE_ERASE_ARGS:-} >&2
    runs+=("$out/beta-$b")
done
# shellcheck disable=SC2086
.build/release/mce evaluate --concept "$concept" --compare "${runs[@]}" --out "$out/evaluate" ${MCE_EVAL_ARGS:-}
cp "$out/evaluate/beta-sweep.svg" "$plot"
echo "plot: $plot"
