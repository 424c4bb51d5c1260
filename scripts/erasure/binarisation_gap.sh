#!/usr/bin/env bash
# Where the neutral cost of the defaults of 749996b comes from, and whether letting the objective see the binary
# mask (`--binary-finish`) lowers it. For one concept:
#   1. the defaults with seeds 0, 1, 2 and the same with `--binary-finish 15` (`mce erase … --eval-per-class 16`);
#   2. variants of the seed-0 mask (scripts/erasure/mask_variants.py): its text-encoder masks alone, its
#      transformer masks alone, and its logits binarised again at λ > −1, −2, −3 — one `mce evaluate`;
#   3. all six runs in one `mce evaluate` (same prompts and seeds for all, seed 0), which also gives each
#      run's change of neutral accuracy with its paired interval.
# The summary.md files under out/binarisation-gap/CONCEPT/ are the binarisation-gap tables in docs/results.md.
# About 9 minutes per erase run and 2 minutes per model evaluated, on 2 cores (about 85 minutes in all).
#   scripts/erasure/binarisation_gap.sh [CONCEPT]      (default "ankle boot")
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output binarisation-gap "$@"
settings=()
for s in 0 1 2; do settings+=("defaults-seed$s|--seed $s"); done
for s in 0 1 2; do settings+=("binary-finish-15-seed$s|--binary-finish 15 --seed $s"); done
# Measured with the defaults before 3cb0704 (deconcept target, β 1).
ERASE_DEFAULTS="--target deconcept --beta 1 $PIN_GAMMA1_LAMBDA0_NO_RETRY"
erase_settings "$concept" "$out" "--eval-per-class 16" "${settings[@]}"

.venv/bin/python scripts/erasure/mask_variants.py "$out/defaults-seed0/masks.safetensors" "$out/variants" 1 2 3 >&2
v=$out/variants
.build/release/mce evaluate --masks "$v/text-only.safetensors" --compare "$v/transformer-only.safetensors" \
    --compare "$v/threshold-1.safetensors" --compare "$v/threshold-2.safetensors" --compare "$v/threshold-3.safetensors" \
    --concept "$concept" --per-class 16 --out "$v/evaluation" >&2
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --per-class 16 --out "$out/joint" >&2
cat "$v/evaluation/summary.md" "$out/joint/summary.md"
