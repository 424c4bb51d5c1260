"""Compares two `mce world train-base` loss curves (OUT/losses.csv), e.g. an f32 and a bf16 run of the same seed.

    python3 scripts/world/compare_losses.py out/train-f32/losses.csv out/train-bf16/losses.csv [--window 100]

For each window of steps it prints both mean losses, their difference and the noise of a window mean (the
standard error from the per-step spread of both runs), and at the end the largest |difference| in units of that
noise. Curves "within noise" stay below about 2 (a window mean moves by that much between two seeds' runs).
"""
import argparse
import csv
import math
import statistics


def read(path):
    with open(path) as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--window", type=int, default=100)
    args = ap.parse_args()
    a, b = read(args.a), read(args.b)
    steps = sorted(set(a) & set(b))
    if not steps:
        raise SystemExit("no common steps")
    print(f"| steps | {args.a} | {args.b} | difference | noise (SE) | difference / noise |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for lo in range(steps[0], steps[-1] + 1, args.window):
        w = [s for s in steps if lo <= s < lo + args.window]
        if len(w) < 2:
            continue
        xa, xb = [a[s] for s in w], [b[s] for s in w]
        ma, mb = statistics.mean(xa), statistics.mean(xb)
        se = math.sqrt((statistics.variance(xa) + statistics.variance(xb)) / len(w))
        z = abs(ma - mb) / se if se > 0 else float("inf")
        worst = max(worst, z)
        print(f"| {w[0]}–{w[-1]} | {ma:.4f} | {mb:.4f} | {mb - ma:+.4f} | {se:.4f} | {z:.2f} |")
    print(f"\nlargest |difference| / noise over {len(steps)} common steps: {worst:.2f}")


if __name__ == "__main__":
    main()
