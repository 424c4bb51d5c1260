#!/usr/bin/env bash
# The stability-selection table (docs/results.md): where the defaults' neutral cost comes from, and whether averaging the
# logits of runs with other seeds (stability selection: `mce erase --restarts`, `mce masks average`) removes it.
# For one concept, `--target nearest --beta 0.3` (the defaults since 3cb0704, given explicitly):
#   1. single runs with seeds 0–5 and one `--restarts 3 --seed 6` run (seeds 6, 7, 8);
#   2. `mce masks average` of seeds 0–2 and of seeds 3–5, binarised at λ > 0 and λ > 0.5, and the restarts
#      run binarised again at λ > 0.5;
#   3. seed 2's mask split into its text-encoder part and its transformer part (mask_variants.py);
#   4. one `mce evaluate --per-class 48` of all of them (912 neutral prompts; every model sees the same
#      prompts and seeds) and the text-change probe of the erased text encoders.
# About 4.5 minutes per erase run alone on 2 cores (the restarts run three times that), 6 minutes per
# evaluated model: about 2.5 hours in all. The table is out/stability-selection/CONCEPT/evaluate-48/summary.md.
#   scripts/erasure/stability_selection.sh [CONCEPT]      (default "ankle boot")
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output stability-selection "$@"
settings=()
for s in 0 1 2 3 4 5; do settings+=("seed$s|--target nearest --beta 0.3 --seed $s"); done
settings+=("restarts3-seed6|--target nearest --beta 0.3 --seed 6 --restarts 3")
ERASE_DEFAULTS=$PIN_GAMMA1_LAMBDA0_NO_RETRY
erase_settings "$concept" "$out" "--eval-prompts 0" "${settings[@]}"
mce=.build/release/mce
for t in 0 0.5; do
    $mce masks average "$out"/seed{0,1,2}/masks.safetensors --binarise "threshold:$t" --out "$out/average012-t$t.safetensors" >&2
    $mce masks average "$out"/seed{3,4,5}/masks.safetensors --binarise "threshold:$t" --out "$out/average345-t$t.safetensors" >&2
done
$mce masks average "$out/restarts3-seed6/masks.safetensors" --binarise threshold:0.5 --out "$out/restarts3-seed6-t0.5.safetensors" >&2
.venv/bin/python scripts/erasure/mask_variants.py "$out/seed2/masks.safetensors" "$out/seed2-split" >&2
$mce evaluate --masks "${runs[0]}" --compare "${runs[@]:1}" "$out"/average{012,345}-t{0,0.5}.safetensors \
    "$out/restarts3-seed6-t0.5.safetensors" "$out/seed2-split/text-only.safetensors" \
    "$out/seed2-split/transformer-only.safetensors" --per-class 48 --out "$out/evaluate-48" >&2
encoders=()
for m in "$out"/average{012,345}-t{0,0.5}.safetensors "$out/restarts3-seed6-t0.5.safetensors"; do
    $mce masks bake --masks "$m" --out "${m%.safetensors}-baked/model" >&2
    encoders+=("${m%.safetensors}-baked/text_encoder")
done
.venv/bin/python scripts/erasure/text_change_probe.py --concept "$concept" "$out"/seed{0,1,2,3,4,5}/text_encoder \
    "$out/restarts3-seed6/text_encoder" "${encoders[@]}"
cat "$out/evaluate-48/summary.md"
