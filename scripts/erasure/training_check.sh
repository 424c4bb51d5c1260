#!/usr/bin/env bash
# The training-check table (docs/results.md): the training check of `mce erase` on the six seeds of the
# γ 3 / λ > 0.5 table (the defaults since 5f04ebf, `--retries 0` so that every seed keeps its own run), printing each run's
# check: the binarised mask's objective and the training prompts it breaks. With the default `--retries 1`,
# a run that breaks prompts is followed by the next seed's run, which these runs also hold. The rows'
# evaluations are those of scripts/erasure/text_preserve_gamma.sh (the same masks).
# About 4.5 minutes per run alone on 2 cores: about 30 minutes.
#   scripts/erasure/training_check.sh [CONCEPT]      (default "ankle boot")
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/erasure/erase_settings.sh
source scripts/erasure/erase_settings.sh
erase_output training-check "$@"
settings=()
for s in 0 1 2 3 4 5; do settings+=("seed$s|--retries 0 --seed $s"); done
erase_settings "$concept" "$out" "--eval-prompts 0" "${settings[@]}"
for run in "${runs[@]}"; do
    python3 - "$run/report.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["checks"][0]
broken = [i for i in c["items"] if i["broken"]]
print("seed %d: objective %.4f (erase %.4f, preserve %.4f, text %.4f); %d of %d training prompts broken (error above %.4f)"
      % (c["seed"], c["objective"], c["erase"], c["preserve"], c.get("textPreserve") or 0, len(broken), len(c["items"]), c["brokenAbove"]))
for i in sorted(broken, key=lambda i: -i["loss"]):
    print("  %s '%s': %.4f (before erasing %.4f)" % ("concept" if i["isConcept"] else "neutral", i["prompt"], i["loss"], i["before"]))
PY
done
