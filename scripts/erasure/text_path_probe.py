#!/usr/bin/env python3
"""Where the concept word travels in the base model: how much of the text tokens that enter the single-stream
blocks is their context-embedder projection, which no mask at the authors' sites can touch.

In a FLUX double block the text tokens' residual stream is  h ← h + gate·attn(…) + gate·ff(…), with the gates
and the attention input's scale/shift from `norm1_context` — the authors' mask sites (`ff`, `ff_context`,
`norm1_context`) can switch those additions off, but never the residual itself, which starts as
`context_embedder(MiniLM states)`. The single blocks then read the text tokens again (keys and values of every
joint attention). This script measures, on world captions (training wording), for the real (unpadded) text
tokens after the last double block, h = c₀ + δ (c₀ the context-embedder projection, δ everything the double
blocks added):
  * the norms of c₀ and δ and the cosine of h with c₀;
  * the share of the between-class variance of h at the concept word's tokens that c₀ and δ carry;
  * nearest-centroid class accuracy (held-out half of the captions) from c₀ alone and from δ alone.

Reads the committed model with diffusers and MiniLM with transformers (venv of scripts/setup_python.sh):
    .venv/bin/python scripts/erasure/text_path_probe.py [MODEL_DIR] [MINILM_DIR]
"""
import os
import sys
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "world"))
from heldout_text_probe import read_templates, read_vocabulary, sample_captions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PADDED = 18      # PromptEncoder.paddedLength for the world: the longest caption, in tokens
SIGMA = 0.7      # the noise level the transformer is probed at (the text path does not depend on the image much)


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "models/base")
    minilm = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser("~/.cache/mce/minilm")
    tok, enc = AutoTokenizer.from_pretrained(minilm), AutoModel.from_pretrained(minilm).eval()
    flux = FluxTransformer2DModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    classes, colours = read_vocabulary()
    train_t, _ = read_templates()
    names = list(classes)
    texts, nouns, labels = sample_captions(classes, colours, train_t, 40 * len(names), 0)
    labels = torch.tensor(labels)

    b = tok(texts, padding="max_length", max_length=PADDED, truncation=False, return_tensors="pt")
    assert b["input_ids"].shape[1] == PADDED, "a caption is longer than the padded length"
    mask = b["attention_mask"].unsqueeze(-1).float()
    with torch.no_grad():
        states = enc(**b).last_hidden_state * mask          # padded rows are zeros, as in PromptEncoder
        pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)

    seen = {}
    flux.context_embedder.register_forward_hook(lambda m, i, o: seen.__setitem__("c0", o))
    last = flux.transformer_blocks[-1]
    last.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o[0]))   # (encoder_hidden_states, hidden_states)
    n = len(texts)
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    img_ids = torch.stack([torch.zeros(64), ys.flatten().float(), xs.flatten().float()], -1)
    with torch.no_grad():
        flux(hidden_states=torch.randn(n, 64, 48, generator=g), encoder_hidden_states=states,
             pooled_projections=pooled, timestep=torch.full((n,), SIGMA), img_ids=img_ids,
             txt_ids=torch.zeros(PADDED, 3), return_dict=False)
    c0, h = seen["c0"], seen["h"]
    d = h - c0
    real = mask.squeeze(-1).bool()
    cn, dn = c0[real].norm(dim=-1), d[real].norm(dim=-1)
    cos = torch.nn.functional.cosine_similarity(h[real], c0[real], dim=-1)
    print(f"text tokens after the last double block ({real.sum().item()} real tokens of {n} captions):")
    print(f"  |c0| mean {cn.mean():.2f}, |delta| mean {dn.mean():.2f} (ratio {(dn / cn).mean():.2f}), cos(h, c0) mean {cos.mean():.3f}")

    # The concept word's own tokens (the noun's WordPiece ids, found in the caption; plural captions
    # spell the noun with an s, so its first piece is matched then).
    noun_mask = torch.zeros(n, PADDED, 1)
    for i, (ids, noun) in enumerate(zip(b["input_ids"].tolist(), nouns)):
        piece = tok(noun, add_special_tokens=False)["input_ids"]
        for length in (len(piece), 1):
            at = next((j for j in range(len(ids) - length + 1) if ids[j:j + length] == piece[:length]), None)
            if at is not None:
                noun_mask[i, at:at + length] = 1
                break
        assert noun_mask[i].sum() > 0, texts[i]

    def caption_mean(x):
        return (x * noun_mask).sum(1) / noun_mask.sum(1)

    mc, md = caption_mean(c0), caption_mean(d)
    mh = mc + md

    def between(x):
        centroids = torch.stack([x[labels == k].mean(0) for k in range(len(names))])
        return centroids - centroids.mean(0)

    bc, bd, bh = between(mc), between(md), between(mh)
    total = (bh * bh).sum()
    print(f"  between-class variance of the concept word's tokens (mean per caption): c0 alone {(bc * bh).sum() / total:.2f} of it, delta {(bd * bh).sum() / total:.2f} "
          f"(|c0 part| {bc.norm():.2f}, |delta part| {bd.norm():.2f})")

    half = (torch.arange(n) // len(names)) % 2 == 0   # every class in both halves
    for name, x in (("c0 alone", mc), ("delta alone", md), ("h", mh)):
        centroids = torch.stack([x[half & (labels == k)].mean(0) for k in range(len(names))])
        pred = torch.cdist(x[~half], centroids).argmin(1)
        print(f"  nearest-centroid class accuracy from {name}: {(pred == labels[~half]).float().mean():.3f}")


if __name__ == "__main__":
    main()
