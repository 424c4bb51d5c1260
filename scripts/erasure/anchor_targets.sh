#!/usr/bin/env bash
# The anchor-target tables (docs/results.md): what sets the erasure's neutral cost. For one concept:
#   1. `--unit-cost K` for K = 0.3, 1, 3, 10 (deconcept target, β 1, seed 0);
#   2. anchor targets: `--target sneaker` (seed 0), `--target nearest` (seed 1), `--target nearest --beta 0.3`
#      (seeds 0, 1, 2) and `--target nearest --text-ablation mean` (seed 0);
#   3. one `mce evaluate --per-class 16` of all of them (the tables' 304-prompt rows: every model sees the same
#      prompts and seeds, so grouping does not change a row) and one `mce evaluate --per-class 48` of the three
#      `--target nearest --beta 0.3` seeds (the 912-prompt table).
# The summary.md files under out/anchor-targets/CONCEPT/ are the tables. About 4.5 minutes per erase run alone
# on 2 cores, 2 minutes per model at 16 prompts per class and 6 at 48 (about 2 hours in all).
# The target and β are given explicitly, so the runs do not depend on the defaults of the day.
#   scripts/erasure/anchor_targets.sh [CONCEPT]      (default "ankle boot")
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output anchor-targets "$@"
settings=()
for k in 0.3 1 3 10; do settings+=("unit-cost-$k|--target deconcept --beta 1 --unit-cost $k"); done
settings+=("anchor-sneaker-seed0|--target sneaker --beta 1 --seed 0")
settings+=("nearest-seed1|--target nearest --beta 1 --seed 1")
for s in 0 1 2; do settings+=("nearest-beta0.3-seed$s|--target nearest --beta 0.3 --seed $s"); done
settings+=("nearest-mean-seed0|--target nearest --beta 1 --text-ablation mean --seed 0")
ERASE_DEFAULTS=$PIN_GAMMA1_LAMBDA0_NO_RETRY
erase_settings "$concept" "$out" "--eval-prompts 0" "${settings[@]}"
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --per-class 16 --out "$out/evaluate-16" >&2
.build/release/mce evaluate --masks "$out/nearest-beta0.3-seed0" --compare "$out/nearest-beta0.3-seed1" \
    --compare "$out/nearest-beta0.3-seed2" --per-class 48 --out "$out/evaluate-48" >&2
cat "$out/evaluate-16/summary.md" "$out/evaluate-48/summary.md"
