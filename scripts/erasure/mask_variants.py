#!/usr/bin/env python3
"""Variants of a learned mask file, to find which of its units do what.

    .venv/bin/python scripts/erasure/mask_variants.py LEARNED.safetensors OUT_DIR [T …]
        → OUT_DIR/text-only.safetensors         only the text encoder's masks (transformer sites all kept)
          OUT_DIR/transformer-only.safetensors  only the transformer's masks (text-encoder sites all kept)
          OUT_DIR/threshold-<T>.safetensors     every site binarised again from its logits at λ > −T
                                                  (T > 0: only units pushed below −T stay masked)

Then `mce evaluate --masks OUT_DIR/A.safetensors --compare OUT_DIR/B.safetensors …` measures them on the same
prompts and seeds. Logits stay the learned ones; the metadata is the learned file's without β (so the
variants do not enter a β-sweep plot), with `method` and `binarisation` saying what was changed.
"""
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

TEXT_PREFIX = "text_encoder."


def write(path, tensors, meta):
    save_file(tensors, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)
    masked = sum(int((t == 0).sum()) for k, t in tensors.items() if k.endswith(".mask"))
    print(f"{path}: {masked} units masked")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    try:
        thresholds = [float(t) for t in sys.argv[3:]]
    except ValueError:
        sys.exit(f"thresholds must be numbers, got {sys.argv[3:]}")
    if not os.path.isfile(src):
        sys.exit(f"{src}: no such mask file")
    with safe_open(src, "np") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    sites = sorted(k[: -len(".mask")] for k in tensors if k.endswith(".mask"))
    if meta.get("format") != "mce-masks-1" or not sites or any(f"{s}.logits" not in tensors for s in sites):
        sys.exit(f"{src}: not an mce mask file with logits (format {meta.get('format')!r}, {len(sites)} masks)")
    if not any(s.startswith(TEXT_PREFIX) for s in sites) or all(s.startswith(TEXT_PREFIX) for s in sites):
        print(f"{src}: masks only one of text encoder / transformer; the -only variants equal it or keep everything")
    meta.pop("beta", None)
    os.makedirs(out, exist_ok=True)
    for name, keep_text in (("text-only", True), ("transformer-only", False)):
        new = dict(tensors)
        for s in sites:
            if s.startswith(TEXT_PREFIX) != keep_text:
                new[f"{s}.mask"] = np.ones_like(tensors[f"{s}.mask"])
        write(os.path.join(out, f"{name}.safetensors"), new, {**meta, "method": f"{meta.get('method', 'mask')}, {name}"})
    for t in thresholds:
        new = dict(tensors)
        for s in sites:
            new[f"{s}.mask"] = (tensors[f"{s}.logits"] > -t).astype(tensors[f"{s}.mask"].dtype)
        write(os.path.join(out, f"threshold-{t:g}.safetensors"), new, {**meta, "binarisation": f"threshold:{-t}"})


if __name__ == "__main__":
    main()
