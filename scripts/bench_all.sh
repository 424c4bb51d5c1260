#!/usr/bin/env bash
# Reproduces the performance tables of docs/performance.md: each benchmark runs for mce and for the PyTorch reference
# (diffusers FluxTransformer2DModel + torch CPU) alternately, ROUNDS times, in one session on one machine.
# Output: out/bench/bench.jsonl (one JSON line per run) and a markdown table of medians on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
venv=${MCE_VENV:-.venv}
[ -x "$venv/bin/python" ] || scripts/setup_python.sh
scripts/setup.sh
swift build -c release --product mce >&2
mkdir -p out/bench
log=out/bench/bench.jsonl
: > "$log"
run() { "$@" | tee -a "$log" >&2; }
for r in $(seq "$ROUNDS"); do
    for c in small medium; do
        run .build/release/mce bench forward --config $c --repeats 30
        run "$venv/bin/python" scripts/bench_reference.py forward --config $c --repeats 30
    done
    for spec in "small 4" "small 32" "medium 4"; do
        set -- $spec
        run .build/release/mce bench erase-step --config $1 --steps $2 --repeats 5
        run "$venv/bin/python" scripts/bench_reference.py erase-step --config $1 --steps $2 --repeats 5
    done
    # A training step of the committed base model's kind: batch 64, the world's padded caption length.
    run .build/release/mce bench train-step --config small --batch 64 --repeats 5
    tt=$(tail -n 1 "$log" | python3 -c 'import json, sys; print(json.load(sys.stdin)["text_tokens"])')
    run "$venv/bin/python" scripts/bench_reference.py train-step --config small --batch 64 --text-tokens "$tt" --repeats 5
done
python3 - "$log" <<'PY'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    impl = "mce" if d["impl"].startswith("mce") else "pytorch"
    key = (d.get("bench", "forward"), d["config"], d.get("steps", d.get("batch", "")))
    rows.setdefault(key, {}).setdefault(impl, []).append(d)
print("| bench | config | N | mce median s | mce GFLOP/s | mce peak RSS MiB | PyTorch median s | PyTorch GFLOP/s | PyTorch peak RSS MiB | speed-up |")
# train-step rows: N is the batch; samples/s = batch / median s.
print("|---|---|---|---|---|---|---|---|---|---|")
for (bench, cfg, n), v in rows.items():
    def med(impl, k):
        return statistics.median(x[k] for x in v.get(impl, [])) if impl in v else float("nan")
    m, p = med("mce", "median_s"), med("pytorch", "median_s")
    print(f"| {bench} | {cfg} | {n} | {m:.4f} | {med('mce','gflops'):.0f} | {med('mce','peak_rss_mib'):.0f} | "
          f"{p:.4f} | {med('pytorch','gflops'):.0f} | {med('pytorch','peak_rss_mib'):.0f} | {p/m:.2f}× |")
PY
