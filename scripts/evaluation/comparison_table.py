#!/usr/bin/env python3
"""The robustness comparison table (docs/attacks.md) from `mce evaluate --attacks` reports.

    scripts/evaluation/comparison_table.py out/compare-ankle-boot/evaluation/report.json [more reports…]

One row per model (the original first, then each erased model of the report), one block per report.
Standard library only.
"""
import json
import sys

ATTACKS = ["paraphrase", "ring-a-bell", "embedding", "relearning"]


def fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def detection_rate(metrics, name):
    """Concept ACC of one prompt set ("training templates", "held-out synonyms", …) in a report's metrics."""
    return next(s["detectionRate"] for s in metrics["conceptSets"] if s["name"] == name)


def rows(report):
    acc = detection_rate
    attacks = report.get("attacks") or []
    def asr(run, attack, original=False):
        for a in attacks:
            if a["attack"] == attack and (original or a["run"] == run):
                return a["originalASR"] if original else a["asr"]
        return None

    o = report["original"]
    yield ["original", fmt(acc(o, "training templates")), fmt(acc(o, "held-out synonyms")), fmt(o["neutral"]["objectAccuracy"]),
           "–", fmt(o["neutral"].get("fidToReal"), 1), "–"] + [fmt(asr(None, a, original=True)) for a in ATTACKS] + ["–", "–"]
    for r in report["runs"]:
        m, c = r["metrics"], r["comparison"]
        cost = r.get("cost") or {}
        if not cost.get("eraseSeconds"):      # reports written before weight methods recorded their cost
            try:
                with open(r["source"] + "/report.json") as f:
                    cost = dict(cost, eraseSeconds=json.load(f)["cost"]["eraseSeconds"])
            except (OSError, KeyError, ValueError):
                pass
        yield [r["name"], fmt(acc(m, "training templates")), fmt(acc(m, "held-out synonyms")), fmt(m["neutral"]["objectAccuracy"]),
               fmt(c.get("neutralFIDToOriginal"), 1), fmt(m["neutral"].get("fidToReal"), 1), fmt(c["neutralSSIM"])] \
            + [fmt(asr(r["name"], a)) for a in ATTACKS] \
            + [str(cost["maskedUnits"]) if "maskedUnits" in cost else "0", fmt(cost.get("eraseSeconds"), 0)]


def main(paths):
    head = ["model", "ACC train. templ.", "ACC held-out syn.", "neutral obj. acc.", "FID to orig.", "FID to real", "SSIM"] \
        + [f"ASR {a}" for a in ATTACKS] + ["units masked", "erase s"]
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        print(f"**{', '.join(report['concepts'])}** ({path})\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows(report):
            print("| " + " | ".join(row) + " |")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
