#!/usr/bin/env bash
# The neutral-prompts table (docs/results.md): more neutral training prompts with the anchor target. For one concept,
# `--target nearest --beta 0.3 --neutral-prompts 60` over seeds 0, 1, 2 and `--target nearest --beta 1` on
# seed 2, then one `mce evaluate --per-class 48` of all four (912 neutral prompts; every model sees the same
# prompts and seeds, so grouping does not change a row). The `--neutral-prompts 20` rows are the runs of
# scripts/erasure/anchor_targets.sh.
# About 4.5 minutes per erase run alone on 2 cores and 6 per model evaluated (about 50 minutes in all).
# The table's rows marked "before c4b3096" (unequal counts alternated, then a run of neutral prompts) need
# `git checkout 98e2025` and the same `mce erase` arguments.
#   scripts/erasure/neutral_prompts.sh [CONCEPT]      (default "ankle boot")
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output neutral-prompts "$@"
settings=()
for s in 0 1 2; do settings+=("nearest-beta0.3-n60-seed$s|--target nearest --beta 0.3 --neutral-prompts 60 --seed $s"); done
settings+=("nearest-beta1-seed2|--target nearest --beta 1 --seed 2")
ERASE_DEFAULTS=$PIN_GAMMA1_LAMBDA0_NO_RETRY
erase_settings "$concept" "$out" "--eval-prompts 0" "${settings[@]}"
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --per-class 48 --out "$out/evaluate-48" >&2
cat "$out/evaluate-48/summary.md"
