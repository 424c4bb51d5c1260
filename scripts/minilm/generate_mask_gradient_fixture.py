"""Fixture for the Swift MiniLM feed-forward mask gradient (Sources/Engine/TextEncoder/FeedForwardMasks.swift).

Run from the repository root in the venv of scripts/setup_python.sh, after scripts/fetch_minilm.sh:

    .venv/bin/python scripts/minilm/generate_mask_gradient_fixture.py

Writes Tests/Fixtures/minilm/mask_gradient_cases.safetensors: for a few prompts encoded one at a time with
transformers' BertModel in float64, multipliers on every layer's 1,536 GELU outputs (`masks`, F32 [6, 1536],
uniform in [0, 1], seed 0) and random upstream gradients of the loss
    L = Σ_k ⟨dhidden_k, last_hidden_state_k⟩ + ⟨dpooled_k, normalize(mean_t last_hidden_state_k)⟩,
it stores `<k>.token_ids`, `<k>.dhidden`, `<k>.dpooled`, the masked `<k>.last_hidden_state` and `<k>.pooled`,
and `grad` (F32 [6, 1536]): dL/dmasks by autograd.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_fixtures import ROOT, save_safetensors  # noqa: E402

PROMPTS = ["a red ankle boot on a blue background", "kitten", "two striped zebras, one grazing, on a white background"]


def main():
    minilm = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(os.environ.get("MCE_MINILM", "~/.cache/mce/minilm"))
    tok = AutoTokenizer.from_pretrained(minilm)
    bert = AutoModel.from_pretrained(minilm).double().eval()
    layers = len(bert.encoder.layer)
    width = bert.config.intermediate_size
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(layers, width, generator=g, dtype=torch.float64).requires_grad_(True)
    for l in range(layers):
        bert.encoder.layer[l].intermediate.register_forward_hook(lambda m, i, o, l=l: o * masks[l])
    tensors, loss = {}, 0
    for k, prompt in enumerate(PROMPTS):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        hidden = bert(input_ids=ids).last_hidden_state[0]
        mean = hidden.mean(0)
        pooled = mean / mean.norm().clamp_min(1e-12)
        dh = torch.randn(hidden.shape, generator=g, dtype=torch.float64)
        dp = torch.randn(pooled.shape, generator=g, dtype=torch.float64)
        loss = loss + (dh * hidden).sum() + (dp * pooled).sum()
        tensors[f"{k}.token_ids"] = ids[0].numpy().astype(np.int64)
        tensors[f"{k}.dhidden"] = dh.numpy().astype(np.float32)
        tensors[f"{k}.dpooled"] = dp.numpy().astype(np.float32)
        tensors[f"{k}.last_hidden_state"] = hidden.detach().numpy().astype(np.float32)
        tensors[f"{k}.pooled"] = pooled.detach().numpy().astype(np.float32)
    loss.backward()
    tensors["masks"] = masks.detach().numpy().astype(np.float32)
    tensors["grad"] = masks.grad.numpy().astype(np.float32)
    out = ROOT / "Tests" / "Fixtures" / "minilm" / "mask_gradient_cases.safetensors"
    save_safetensors(out, tensors, metadata={"prompts": json.dumps(PROMPTS), "torch": torch.__version__,
                                             "about": "dL/dmasks of MiniLM feed-forward multipliers, float64 autograd"})
    print(f"{out}: {out.stat().st_size:,} bytes; |grad| max {masks.grad.abs().max():.4g}")


if __name__ == "__main__":
    main()
