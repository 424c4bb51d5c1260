#!/usr/bin/env bash
# Masks on the text encoder (`--sites text_ff`) against the authors' sites, for one concept: one `mce erase`
# run per setting, then `mce evaluate --compare` of all of them (same prompts and seeds) twice: with the pinned
# protocol's 4 neutral prompts per class, and with 16 (304 neutral prompts), which measures neutral accuracy
# within about ±0.03 instead of ±0.06. Their summary.md files are the text-encoder tables in docs/results.md.
#   scripts/erasure/text_encoder_sites.sh [CONCEPT]      (default "ankle boot"; outputs under out/text-sites/)
# The rows with --text-preserve measured at c9cc765 used the term's first form (raw MiniLM outputs, no null
# prompt); check out fd3ef62 to reproduce those. Since 749996b the default sites include the text encoder's
# units and γ has a default with them, so the rows name both explicitly.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output text-sites "$@"
# name | extra arguments (each run: `mce erase --concept CONCEPT ARGS`)
settings=(
    "authors-sites|--sites ff,ff_context,norm1_context"
    "text-ff|--sites text_ff --text-preserve 0"
    "text-ff-keep0.5|--sites text_ff --text-preserve 0.5"
    "text-ff-keep1|--sites text_ff --text-preserve 1"
    "text-ff-keep3|--sites text_ff --text-preserve 3"
    "text-ff-keep1-90it|--sites text_ff --text-preserve 1 --iterations 90"
)
# Measured with the defaults before 3cb0704 (deconcept target, β 1).
ERASE_DEFAULTS="--target deconcept --beta 1 --binarise threshold:0 $PIN_NO_RETRY"
erase_settings "$concept" "$out" "" "${settings[@]}"
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --out "$out/evaluate" >&2
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --per-class 16 --out "$out/evaluate-16" >&2
cat "$out/evaluate/summary.md" "$out/evaluate-16/summary.md"
