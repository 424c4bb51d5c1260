"""Tabulates and plots `mce erase` reports of a β sweep (standard library only).

    python3 scripts/plot_beta_sweep.py out/beta-sweep docs/beta-sweep.svg

Reads DIR/beta-*/report.json, prints a Markdown table and writes an SVG line plot of concept ACC (held-in and
held-out wording), neutral object accuracy, neutral SSIM and the share of masked units against β (log axis).
"""
import glob
import json
import math
import os
import sys

root, svg_path = sys.argv[1], sys.argv[2]
rows = []
for path in glob.glob(os.path.join(root, "beta-*", "report.json")):
    r = json.load(open(path))
    rep = r["report"]
    rows.append({
        "beta": r["options"]["beta"],
        "acc_in_before": rep["heldIn"]["before"], "acc_in": rep["heldIn"]["after"],
        "acc_out_before": rep["heldOut"]["before"], "acc_out": rep["heldOut"]["after"],
        "neutral_before": rep["neutral"]["before"], "neutral": rep["neutral"]["after"],
        "ssim": rep["neutralSSIM"], "bg": rep["conceptBackgroundKept"],
        "masked": rep["maskedUnits"] / max(1, rep["totalUnits"]),
        "masked_units": rep["maskedUnits"], "total": rep["totalUnits"],
    })
if not rows:
    sys.exit(f"no {root}/beta-*/report.json found")
rows.sort(key=lambda r: r["beta"])
print("| β | concept ACC held-in (before → after) | held-out wording | neutral object acc. | neutral SSIM | background kept | units masked |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['beta']:g} | {r['acc_in_before']:.2f} → {r['acc_in']:.2f} | {r['acc_out_before']:.2f} → {r['acc_out']:.2f} | "
          f"{r['neutral_before']:.2f} → {r['neutral']:.2f} | {r['ssim']:.3f} | {r['bg']:.2f} | "
          f"{r['masked_units']} / {r['total']} ({100 * r['masked']:.1f}%) |")

W, H, L, R, T, B = 640, 360, 60, 170, 20, 50
xs = [math.log10(r["beta"]) if r["beta"] > 0 else -3 for r in rows]
x0, x1 = min(xs), max(xs)
if x1 == x0:
    x0, x1 = x0 - 1, x1 + 1
def px(x): return L + (x - x0) / (x1 - x0) * (W - L - R)
def py(y): return T + (1 - y) * (H - T - B)
series = [("concept ACC, held-in", "acc_in", "#d62728"), ("concept ACC, held-out wording", "acc_out", "#ff7f0e"),
          ("neutral object accuracy", "neutral", "#1f77b4"), ("neutral SSIM", "ssim", "#2ca02c"),
          ("units masked (share)", "masked", "#7f7f7f")]
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
for i in range(6):
    y = i / 5
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
for r, x in zip(rows, xs):
    out.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{r["beta"]:g}</text>')
out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">β (preservation weight, log scale)</text>')
for k, (name, key, colour) in enumerate(series):
    pts = " ".join(f"{px(x):.1f},{py(r[key]):.1f}" for r, x in zip(rows, xs))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for r, x in zip(rows, xs):
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(r[key]):.1f}" r="3" fill="{colour}"/>')
    out.append(f'<rect x="{W - R + 10}" y="{T + 18 * k}" width="12" height="3" fill="{colour}"/>')
    out.append(f'<text x="{W - R + 26}" y="{T + 18 * k + 5}">{name}</text>')
out.append("</svg>")
os.makedirs(os.path.dirname(svg_path) or ".", exist_ok=True)
tmp = svg_path + ".tmp"
with open(tmp, "w") as f:
    f.write("\n".join(out) + "\n")
os.replace(tmp, svg_path)
print(f"\nplot: {svg_path}")
