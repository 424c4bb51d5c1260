#!/usr/bin/env bash
# Masks on the text encoder (`--sites text_ff`) against the authors' sites, for one concept: one `mce erase`
# run per setting, then `mce evaluate --compare` of all of them (same prompts and seeds) twice: with the pinned
# protocol's 4 neutral prompts per class, and with 16 (304 neutral prompts), which measures neutral accuracy
# within about ±0.03 instead of ±0.06. Their summary.md files are the tables in the README, roadmap issue 5.
#   scripts/erasure/text_encoder_sites.sh [CONCEPT]      (default "ankle boot"; outputs under out/text-sites/)
# The rows with --text-preserve measured in session 10 used the term's first form (raw MiniLM outputs, no null
# prompt); check out fd3ef62 to reproduce those. Since session 12 γ defaults to 1 with text-encoder sites and
# the default sites include them, so the rows name both explicitly.
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
# Measured with the defaults before session 14 (deconcept target, β 1).
ERASE_DEFAULTS="--target deconcept --beta 1 --binarise threshold:0 $BEFORE_SESSION18"
erase_settings "$concept" "$out" "" "${settings[@]}"
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --out "$out/evaluate" >&2
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --per-class 16 --out "$out/evaluate-16" >&2
cat "$out/evaluate/summary.md" "$out/evaluate-16/summary.md"
