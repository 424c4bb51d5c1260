#!/usr/bin/env python3
"""How selective an erased text encoder is: how much it changes each class's captions as the transformer reads them.

For 40 training-wording captions per world class (seeded), the MiniLM token states (padded to the world's
caption length, padding rows zero, as PromptEncoder) are read through the committed model's context embedder
(weight only), and for every erased encoder the relative change ‖W·h' − W·h‖ / ‖W·h‖ of the whole sequence is
averaged per class. A selective mask changes the concept's captions and leaves the others; the summary line
gives the mean change of the other classes' captions, the concept's, and their ratio.

    .venv/bin/python scripts/erasure/text_change_probe.py --concept "ankle boot" OUT1/text_encoder [OUT2/text_encoder …]

(`mce erase` writes OUT/text_encoder when text-encoder sites are masked; `mce masks bake` writes one beside its
output.) Needs the venv of scripts/setup_python.sh.
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "world"))
from heldout_text_probe import read_templates, read_vocabulary, sample_captions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PADDED = 18          # PromptEncoder.paddedLength for the world


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--concept", required=True, help="the erased world class (its name)")
    ap.add_argument("--model", default=str(REPO / "models/base"), help="diffusers folder whose context embedder reads the text")
    ap.add_argument("--minilm", default=os.path.expanduser("~/.cache/mce/minilm"), help="the original text encoder")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("encoders", nargs="+", help="erased text encoders (MiniLM folders)")
    a = ap.parse_args()

    classes, colours = read_vocabulary()
    if a.concept not in classes:
        sys.exit(f"--concept: '{a.concept}' is not a world class (classes: {', '.join(classes)})")
    weights = load_file(str(Path(a.model) / "diffusion_pytorch_model.safetensors"))
    wc = weights["context_embedder.weight"].float()
    train_t, _ = read_templates()
    names = list(classes)
    texts, _, labels = sample_captions(classes, colours, train_t, a.per_class * len(names), 1)
    labels = torch.tensor(labels)
    tok = AutoTokenizer.from_pretrained(a.minilm)
    batch = tok(texts, padding="max_length", max_length=PADDED, truncation=False, return_tensors="pt")
    assert batch["input_ids"].shape[1] == PADDED, "a caption is longer than the padded length"
    mask = batch["attention_mask"].unsqueeze(-1).float()

    def read(folder):
        enc = AutoModel.from_pretrained(folder).eval()
        with torch.no_grad():
            return ((enc(**batch).last_hidden_state * mask) @ wc.T).reshape(len(texts), -1)

    original = read(a.minilm)
    print(f"relative change of the captions' text as the context embedder reads it ({a.per_class} captions per class)")
    for folder in a.encoders:
        rel = (read(folder) - original).norm(dim=1) / original.norm(dim=1)
        per_class = {n: rel[labels == k].mean().item() for k, n in enumerate(names)}
        others = statistics.mean(v for n, v in per_class.items() if n != a.concept)
        print(f"{folder}: other classes {others:.3f}, {a.concept} {per_class[a.concept]:.3f}, ratio {per_class[a.concept] / others:.2f}")
        print("  " + "  ".join(f"{n} {v:.3f}" for n, v in sorted(per_class.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
