#!/usr/bin/env bash
# Reproduces the performance tables of docs/performance.md: each benchmark runs for mce and for the PyTorch reference
# (diffusers FluxTransformer2DModel + torch CPU) alternately, ROUNDS times, in one session on one machine, in both
# precisions: mce `--precision f32|bf16` against PyTorch fp32 and under bf16 autocast (`--autocast bf16`).
# PRECISIONS="f32 bf16" (default) picks them. Output: out/bench/bench.jsonl (one JSON line per run) and a markdown
# table of medians on stdout, one row per benchmark with all four columns.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
PRECISIONS=${PRECISIONS:-f32 bf16}
venv=${MCE_VENV:-.venv}
[ -x "$venv/bin/python" ] || scripts/setup_python.sh
scripts/setup.sh
swift build -c release --product mce >&2
mkdir -p out/bench
log=out/bench/bench.jsonl
: > "$log"
run() { "$@" | tee -a "$log" >&2; }
ac() { [ "$1" = bf16 ] && echo bf16 || echo none; }
for r in $(seq "$ROUNDS"); do
    for p in $PRECISIONS; do
        for c in small medium; do
            run .build/release/mce bench forward --config $c --repeats 30 --precision $p
            run "$venv/bin/python" scripts/bench_reference.py forward --config $c --repeats 30 --autocast $(ac $p)
        done
        for spec in "small 4" "small 32" "medium 4"; do
            set -- $spec
            run .build/release/mce bench erase-step --config $1 --steps $2 --repeats 5 --precision $p
            run "$venv/bin/python" scripts/bench_reference.py erase-step --config $1 --steps $2 --repeats 5 --autocast $(ac $p)
        done
        # A training step of the committed base model's kind: batch 64, the world's padded caption length.
        run .build/release/mce bench train-step --config small --batch 64 --repeats 5 --precision $p
        tt=$(tail -n 1 "$log" | python3 -c 'import json, sys; print(json.load(sys.stdin)["text_tokens"])')
        run "$venv/bin/python" scripts/bench_reference.py train-step --config small --batch 64 --text-tokens "$tt" --repeats 5 --autocast $(ac $p)
    done
done
python3 - "$log" <<'PY'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    impl = "mce" if d["impl"].startswith("mce") else "pytorch"
    key = (d.get("bench", "forward"), d["config"], d.get("steps", d.get("batch", "")))
    rows.setdefault(key, {}).setdefault((impl, d.get("precision", "f32")), []).append(d)
def med(v, k, field):
    return statistics.median(x[field] for x in v[k]) if k in v else float("nan")
# Seconds per call (train-step: per step of 64 samples); speed-ups of mce bf16 over each PyTorch column.
print("| bench | config | N | mce f32 s | mce bf16 s | PyTorch fp32 s | PyTorch bf16 s | bf16 vs f32 (mce) | mce bf16 vs PyTorch fp32 | vs PyTorch bf16 | peak RSS MiB mce f32 / bf16 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (bench, cfg, n), v in rows.items():
    mf, mb = med(v, ("mce", "f32"), "median_s"), med(v, ("mce", "bf16"), "median_s")
    pf, pb = med(v, ("pytorch", "f32"), "median_s"), med(v, ("pytorch", "bf16"), "median_s")
    rf, rb = med(v, ("mce", "f32"), "peak_rss_mib"), med(v, ("mce", "bf16"), "peak_rss_mib")
    print(f"| {bench} | {cfg} | {n} | {mf:.4f} | {mb:.4f} | {pf:.4f} | {pb:.4f} | {mf/mb:.2f}× | {pf/mb:.2f}× | {pb/mb:.2f}× | {rf:.0f} / {rb:.0f} |")
PY
