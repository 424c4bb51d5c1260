#!/usr/bin/env python3
"""Markdown table of several `mce erase` runs (their report.json), one row per run, with the issue's targets.

    python3 scripts/evaluation/survey_table.py out/survey/ankle-boot out/survey/bag …
    python3 scripts/evaluation/survey_table.py --by-run out/combined-sites/ankle-boot/*   (first column: run folder)
"""
import json
import sys
from pathlib import Path

from comparison_table import detection_rate as acc


def row(directory, by_run=False):
    path = Path(directory) / "report.json"
    if not path.is_file():
        sys.exit(f"{path}: no report (did `mce erase --out {directory}` finish?)")
    r = json.loads(path.read_text())
    e = r.get("evaluation")
    if not e or not e.get("runs"):
        sys.exit(f"{path}: no evaluation (run `mce erase` with --eval-prompts > 0)")
    orig, run = e["original"], e["runs"][0]

    a0, a1 = acc(orig, "training templates"), acc(run["metrics"], "training templates")
    s0, s1 = acc(orig, "held-out synonyms"), acc(run["metrics"], "held-out synonyms")
    n0, n1 = orig["neutral"]["objectAccuracy"], run["metrics"]["neutral"]["objectAccuracy"]
    ssim, bg = run["comparison"]["neutralSSIM"], run["metrics"]["conceptBgColorAccuracy"]
    t = run["targets"]        # the verdicts `mce evaluate` recorded against its protocol's thresholds
    met = [t["conceptWasThere"] and t["conceptGone"], t["neutralKept"], t["ssim"], t["background"]]
    label = Path(directory).name if by_run else ", ".join(e["concepts"])
    return (f"| {label} | {a0:.3f} → {a1:.3f} | {s0:.3f} → {s1:.3f} | {n0:.3f} → {n1:.3f} "
            f"| {ssim:.3f} | {bg:.3f} | {r['maskedUnits']:,} of {r['totalUnits']:,} | {r['cost']['eraseSeconds']:.0f} "
            f"| {sum(met)} of 4 |")


def main():
    args = sys.argv[1:]
    by_run = bool(args) and args[0] == "--by-run"
    runs = args[1:] if by_run else args
    if not runs:
        sys.exit(__doc__)
    print(f"| {'run' if by_run else 'concept'} | ACC training templates | ACC held-out synonyms | neutral object accuracy | neutral SSIM "
          "| background kept | units masked | erase s | targets met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in runs:
        print(row(d, by_run))


if __name__ == "__main__":
    main()
