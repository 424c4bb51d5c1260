#!/usr/bin/env bash
# The combined-sites settings for one concept (measured at e39e3e7): masks on the authors' transformer sites and on the text
# encoder together, the balance of their terms, the learning-rate schedule, and the spread between seeds.
# Each setting is one `mce erase --concept CONCEPT ARGS --eval-per-class 16` run, measured by its own
# evaluation (the pinned protocol with 16 neutral prompts per class; the evaluation's prompts and seeds follow
# --seed, so each seed is compared with the original on its own prompts). The table (out/.../summary.md) is
# the combined-sites table in docs/results.md. About 9 minutes per run on 2 cores.
#   scripts/erasure/combined_sites.sh [CONCEPT]      (default "ankle boot"; outputs under out/combined-sites/)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output combined-sites "$@"
both="--sites ff,ff_context,norm1_context,text_ff"
# name | extra arguments
settings=(
    "authors-sites|--sites ff,ff_context,norm1_context"
    "text-ff-keep1|--sites text_ff --text-preserve 1"
    "text-ff-keep1-seed1|--sites text_ff --text-preserve 1 --seed 1"
    "both-keep1|$both --text-preserve 1"
    "both-keep1-seed1|$both --text-preserve 1 --seed 1"
    "both-keep1-seed2|$both --text-preserve 1 --seed 2"
    "both-keep3|$both --text-preserve 3"
    "both-keep1-beta3|$both --text-preserve 1 --beta 3"
    "both-keep1-cosine|$both --text-preserve 1 --lr-schedule cosine"
)
# Measured with the defaults before 3cb0704 (deconcept target, β 1).
ERASE_DEFAULTS="--target deconcept --beta 1 --binarise threshold:0 $PIN_NO_RETRY"
erase_settings "$concept" "$out" "--eval-per-class 16" "${settings[@]}"
python3 scripts/evaluation/survey_table.py --by-run "${runs[@]}" | tee "$out/summary.md"
