#!/usr/bin/env bash
# The robustness comparison: erases CONCEPT with the product's method on the authors' sites (β 1 and β 10;
# the sites the baselines default to, and mask's default before 749996b), the product's method at its
# current defaults (the authors' sites plus the text encoder's units), and the three baselines (per-step,
# finetune, esd) with their defaults, then measures all with one `mce evaluate --attacks all` (same prompts,
# seeds, attacks and budgets for every model). The table in docs/attacks.md has the first five (measured before the
# default changed); the mask-default column was added after it.
#   scripts/compare_methods.sh "ankle boot" [OUT]      → OUT/evaluation/{report.html,report.json,summary.md}
# Finished erase runs are reused (delete OUT/<method> to redo one). MCE_EVAL_ARGS adds evaluate options;
# MCE overrides the binary (default .build/release/mce).
set -euo pipefail
concept="${1:?usage: scripts/compare_methods.sh CONCEPT [OUT]}"
out="${2:-out/compare-${concept// /-}}"
mce="${MCE:-.build/release/mce}"
mkdir -p "$out"
erase() {
    local name=$1; shift
    if [ -f "$out/$name/report.json" ]; then echo "reusing $out/$name"; return; fi
    "$mce" erase --concept "$concept" --eval-prompts 0 --out "$out/$name" "$@"
}
# The table's mask runs used the deconcept target and β 1, the defaults before 3cb0704.
authors="--sites ff,ff_context,norm1_context --target deconcept"
# shellcheck disable=SC2086
erase mask-b1 --beta 1 $authors
# shellcheck disable=SC2086
erase mask-b10 --beta 10 $authors
erase mask-default
erase per-step --method per-step
erase finetune --method finetune
erase esd --method esd
# shellcheck disable=SC2086
"$mce" evaluate --concept "$concept" --compare "$out/mask-b1" "$out/mask-b10" "$out/per-step" "$out/finetune" "$out/esd" "$out/mask-default" \
    --attacks all --out "$out/evaluation" ${MCE_EVAL_ARGS:-}
echo "table: $out/evaluation/summary.md"
