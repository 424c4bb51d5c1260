#!/usr/bin/env bash
# Which concepts can the product's defaults erase from the committed base model? Runs `mce erase --concept C`
# with every option at its default for each concept, then tabulates the runs' report.json files.
#   scripts/erasure/concept_survey.sh [CONCEPT …]
# Default concepts: the six classes the base model draws recognisably at least 85% of the time
# (`mce evaluate-base` per class), the issue's "from ≥ 85%" condition. Outputs out/survey/<concept>/ and
# out/survey/summary.md. Extra `mce erase` arguments can be passed in MCE_ERASE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
concepts=("$@")
[ ${#concepts[@]} -eq 0 ] && concepts=("ankle boot" bag sneaker dress trousers zebra)
swift build -c release --product mce >&2
out=out/survey
mkdir -p "$out"
runs=()
for c in "${concepts[@]}"; do
    dir="$out/${c// /-}"
    [ -f "$dir/report.json" ] || {
        # shellcheck disable=SC2086
        .build/release/mce erase --concept "$c" --out "$dir" ${MCE_ERASE_ARGS:-} >&2
    }
    runs+=("$dir")
done
python3 scripts/evaluation/survey_table.py "${runs[@]}" | tee "$out/summary.md"
