# Sourced by the erasure scripts (from the repository root): where a script's runs go, and one `mce erase`
# run per setting, reusing finished ones.
#   erase_output ROOT [CONCEPT]   → concept (default "ankle boot") and out=out/ROOT/CONCEPT (spaces → -),
#                                   made, with the release mce built
erase_output() {
    concept=${2:-ankle boot}
    out=out/$1/${concept// /-}
    swift build -c release --product mce >&2
    mkdir -p "$out"
}

# Options whose defaults changed, for scripts whose tables were measured before (they pin them in
# ERASE_DEFAULTS): 8379ad3 added the retry of a run whose training check finds broken prompts (--retries 1);
# 5f04ebf changed, with text-encoder sites, γ 1 → 3 and the binarisation λ > 0 → λ > 0.5.
#   PIN_NO_RETRY                  no retry (tables measured before 8379ad3)
#   PIN_GAMMA1_LAMBDA0_NO_RETRY   γ 1, λ > 0 and no retry (tables measured before 5f04ebf)
PIN_NO_RETRY="--retries 0"
PIN_GAMMA1_LAMBDA0_NO_RETRY="--text-preserve 1 --binarise threshold:0 $PIN_NO_RETRY"

#   erase_settings CONCEPT OUT "EXTRA ARGS" "name|args" …   → runs=(OUT/name …), in the settings' order
# Each setting runs `.build/release/mce erase --concept CONCEPT $ERASE_DEFAULTS ARGS EXTRA --out OUT/name`
# unless OUT/name/report.json exists (delete the folder to redo one). ERASE_DEFAULTS pins options whose
# defaults changed since a script's tables were measured (ARGS, later on the line, still override them).
erase_settings() {
    local concept=$1 out=$2 extra=$3 s name args
    shift 3
    runs=()
    for s in "$@"; do
        name=${s%%|*} args=${s#*|}
        [ -f "$out/$name/report.json" ] || {
            # shellcheck disable=SC2086
            .build/release/mce erase --concept "$concept" ${ERASE_DEFAULTS:-} $args $extra --out "$out/$name" >&2
        }
        runs+=("$out/$name")
    done
}
