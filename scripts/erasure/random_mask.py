#!/usr/bin/env python3
"""Random-mask control: copies of a learned mask file whose masked units are drawn at random.

Each copy masks exactly as many units per site as the learned file, chosen uniformly at random (seeded), so
`mce evaluate --masks LEARNED --compare COPIES…` shows how much of a learned mask's effect — on the concept
and on everything else — a mask of the same size and placement but no learning would have. Logits are
written as +3 (kept) / −3 (masked); the metadata is the learned file's with `method = random-control` and no
β (so the copies do not enter a β-sweep plot).

    .venv/bin/python scripts/erasure/random_mask.py LEARNED.safetensors OUT_DIR [COPIES=3]
        → OUT_DIR/random-<seed>.safetensors for seeds 1…COPIES
"""
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    copies = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    if not os.path.isfile(src):
        sys.exit(f"{src}: no such mask file")
    with safe_open(src, "np") as f:
        meta = dict(f.metadata() or {})
        masks = {k[: -len(".mask")]: f.get_tensor(k) for k in f.keys() if k.endswith(".mask")}
    if meta.get("format") != "mce-masks-1" or not masks:
        sys.exit(f"{src}: not an mce mask file (format {meta.get('format')!r}, {len(masks)} masks)")
    meta.pop("beta", None)
    meta["method"] = "random-control"
    total = sum(int((m == 0).sum()) for m in masks.values())
    os.makedirs(out, exist_ok=True)
    for seed in range(1, copies + 1):
        rng = np.random.default_rng(seed)
        tensors = {}
        for site, m in sorted(masks.items()):
            masked = int((m == 0).sum())
            new = np.ones_like(m)
            new[rng.choice(m.size, size=masked, replace=False)] = 0
            tensors[f"{site}.mask"] = new
            tensors[f"{site}.logits"] = np.where(new > 0, 3.0, -3.0).astype(m.dtype)
        path = os.path.join(out, f"random-{seed}.safetensors")
        save_file(tensors, path + ".tmp", metadata={**meta, "seed": str(seed)})
        os.replace(path + ".tmp", path)
        print(f"{path}: {total} units masked")


if __name__ == "__main__":
    main()
