#!/usr/bin/env bash
# Masks on the text encoder (`--sites text_ff`) against the authors' sites, for one concept: one `mce erase`
# run per setting, then one `mce evaluate --compare` of all of them (same prompts and seeds; its summary.md is
# the table in the README, roadmap issue 5).
#   scripts/erasure/text_encoder_sites.sh [CONCEPT]      (default "ankle boot"; outputs under out/text-sites/)
set -euo pipefail
cd "$(dirname "$0")/../.."
concept=${1:-ankle boot}
out=out/text-sites/${concept// /-}
swift build -c release --product mce >&2
mkdir -p "$out"
# name | extra arguments (each run: `mce erase --concept CONCEPT ARGS`)
settings=(
    "authors-sites|"
    "text-ff|--sites text_ff"
    "text-ff-beta5|--sites text_ff --beta 5"
    "text-ff-keep1|--sites text_ff --text-preserve 1"
    "text-ff-keep3|--sites text_ff --text-preserve 3"
    "text-ff-keep10|--sites text_ff --text-preserve 10"
    "text-ff-keep10-beta5|--sites text_ff --text-preserve 10 --beta 5"
    "text-ff-keep10-120it|--sites text_ff --text-preserve 10 --iterations 120"
    "text-ff-layers01-keep10|--sites text_encoder.encoder.layer.0.intermediate,text_encoder.encoder.layer.1.intermediate --text-preserve 10"
)
runs=()
for s in "${settings[@]}"; do
    name=${s%%|*} args=${s#*|}
    [ -f "$out/$name/report.json" ] || {
        # shellcheck disable=SC2086
        .build/release/mce erase --concept "$concept" $args --out "$out/$name" >&2
    }
    runs+=("$out/$name")
done
.build/release/mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" --out "$out/evaluate" >&2
cat "$out/evaluate/summary.md"
