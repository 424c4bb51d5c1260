#!/usr/bin/env python3
"""Feasibility probe: minimalist masks on the TEXT ENCODER's feed-forward units instead of the transformer's.

Why: in the committed 2 + 4-block model the concept word reaches the image tokens through the first double
block's attention, whose text keys and values are computed from the context-embedder projection of MiniLM's
states — before any of the authors' mask sites (see text_path_probe.py). A mask unit on a transformer site is
shared by every prompt's tokens, so switching it off cannot single out one concept. MiniLM's feed-forward units
act per token too, but upstream of that leak, and a unit that fires only on the concept word's tokens leaves
other prompts untouched when it is switched off.

The same objective as `mce erase` (deconcept target, β, fixed noise per prompt, 20 guided Euler steps, hard-concrete
masks with logits initialised to 3, AdamW at lr 0.5 on the logits, 4 items per step), written in PyTorch with
autograd (the sampler steps are checkpointed). The learned mask is binarised (logit > 0) and baked into a copy of
MiniLM (a masked unit zeroes its column of `output.dense`), which the Swift tools read through MCE_MINILM:

    .venv/bin/python scripts/erasure/text_encoder_mask_probe.py --concept "ankle boot" --out out/te-probe
    MCE_MINILM=out/te-probe/minilm .build/release/mce evaluate --erased models/base --concept "ankle boot" ...
"""
import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel
from safetensors.torch import load_file, save_file
from torch.utils.checkpoint import checkpoint
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "world"))
from heldout_text_probe import read_templates, read_vocabulary, render  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PADDED = 18          # PromptEncoder.paddedLength for the world
GAMMA, ZETA, TAU = -0.1, 1.1, 0.83


def hard_concrete(logits, gen):
    u = torch.rand(logits.shape, generator=gen).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + logits) / TAU)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


class MaskedEncoder:
    def __init__(self, minilm, layers):
        self.tok = AutoTokenizer.from_pretrained(minilm)
        self.enc = AutoModel.from_pretrained(minilm).eval()
        for p in self.enc.parameters():
            p.requires_grad_(False)
        self.layers = layers
        self.masks = {}
        for l in layers:
            self.enc.encoder.layer[l].intermediate.register_forward_hook(
                lambda m, i, o, l=l: o * self.masks[l] if l in self.masks else o)

    def __call__(self, texts):
        b = self.tok(texts, padding="max_length", max_length=PADDED, truncation=False, return_tensors="pt")
        assert b["input_ids"].shape[1] == PADDED
        mask = b["attention_mask"].unsqueeze(-1).float()
        states = self.enc(**b).last_hidden_state * mask
        pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
        return states, pooled


def sample(flux, noise, states, pooled, null_states, null_pooled, steps, guidance, grad):
    n = noise.shape[0]
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    img_ids = torch.stack([torch.zeros(64), ys.flatten().float(), xs.flatten().float()], -1)
    txt_ids = torch.zeros(PADDED, 3)
    sig = [1.0 + (1.0 / steps - 1.0) * i / (steps - 1) for i in range(steps)] + [0.0]
    cs = torch.cat([states, null_states.expand(n, -1, -1)])
    cp = torch.cat([pooled, null_pooled.expand(n, -1)])

    def step(x, cs, cp, s, sn):
        v = flux(hidden_states=torch.cat([x, x]), encoder_hidden_states=cs, pooled_projections=cp,
                 timestep=torch.full((2 * n,), s), img_ids=img_ids, txt_ids=txt_ids, return_dict=False)[0]
        vc, vu = v[:n], v[n:]
        return x + (sn - s) * (vu + guidance * (vc - vu))

    x = noise
    for i in range(steps):
        if grad:
            x = checkpoint(step, x, cs, cp, sig[i], sig[i + 1], use_reentrant=False)
        else:
            x = step(x, cs, cp, sig[i], sig[i + 1])
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--concept", default="ankle boot")
    ap.add_argument("--model", default=str(REPO / "models/base"))
    ap.add_argument("--minilm", default=os.path.expanduser("~/.cache/mce/minilm"))
    ap.add_argument("--layers", default="0,1,2,3,4,5")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/te-probe")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(os.cpu_count())

    classes, colours = read_vocabulary()
    train_t, _ = read_templates()
    concept = next(k for k, v in classes.items() if k == a.concept or a.concept in v[0])
    phrases = sorted(classes[concept][0], key=len, reverse=True)
    r = random.Random(a.seed)
    items = []   # (prompt, target prompt, is concept)
    for i in range(a.prompts):
        c, bg = r.sample(colours, 2)
        noun = r.choice(classes[concept][0])
        p = render(r.choice(train_t), noun, c, bg)
        items.append((p, render_target(p, phrases), True))
    others = [k for k in classes if k != concept]
    for i in range(a.prompts):
        c, bg = r.sample(colours, 2)
        k = others[i % len(others)]
        p = render(r.choice(train_t), r.choice(classes[k][0]), c, bg)
        items.append((p, p, False))
    nc = sum(1 for it in items if it[2])
    nn_ = len(items) - nc

    enc = MaskedEncoder(a.minilm, [int(x) for x in a.layers.split(",")])
    flux = FluxTransformer2DModel.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    for p in flux.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(a.seed)
    noises = torch.randn(len(items), 64, 48, generator=g)

    t0 = time.time()
    with torch.no_grad():
        st, po = enc([it[1] for it in items])
        ns, np_ = enc([""])
        targets = torch.cat([sample(flux, noises[i:i + 8], st[i:i + 8], po[i:i + 8], ns, np_, a.steps, a.guidance, False)
                             for i in range(0, len(items), 8)])
    print(f"targets in {time.time() - t0:.1f} s", flush=True)

    width = enc.enc.config.intermediate_size
    logits = {l: torch.full((width,), 3.0, requires_grad=True) for l in enc.layers}
    opt = torch.optim.AdamW(list(logits.values()), lr=a.lr, weight_decay=0.01, eps=a.eps)
    order = []
    mg = torch.Generator().manual_seed(a.seed + 1)
    for it in range(a.iterations):
        if len(order) < a.batch:
            perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(a.seed + 100 + it)).tolist()
            order += perm
        chosen, order = order[:a.batch], order[a.batch:]
        for group in opt.param_groups:
            group["lr"] = a.lr * min(1.0, (it + 1) / 5)
        enc.masks = {l: hard_concrete(logits[l], mg) for l in enc.layers}
        st, po = enc([items[i][0] for i in chosen])
        ns, np_ = enc([""])
        x = sample(flux, noises[chosen], st, po, ns, np_, a.steps, a.guidance, True)
        per = ((x - targets[chosen]) ** 2).mean(dim=(1, 2))
        w = torch.tensor([1 / nc if items[i][2] else a.beta / nn_ for i in chosen])
        loss = (per * w).sum() * len(items) / a.batch
        opt.zero_grad()
        loss.backward()
        opt.step()
        masked = sum(int((v <= 0).sum()) for v in logits.values())
        ce = [f"{per[j].item():.3f}{'c' if items[i][2] else 'n'}" for j, i in enumerate(chosen)]
        print(f"it {it + 1}/{a.iterations} loss {loss.item():.4f} [{' '.join(ce)}] masked {masked} "
              f"({time.time() - t0:.0f} s)", flush=True)

    out = Path(a.out)
    (out / "minilm").mkdir(parents=True, exist_ok=True)
    weights = load_file(os.path.join(a.minilm, "model.safetensors"))
    per_layer = {}
    for l, v in logits.items():
        keep = (v.detach() > 0).float()
        per_layer[l] = int((keep == 0).sum())
        key = next(k for k in weights if k.endswith(f"layer.{l}.output.dense.weight"))
        weights[key] = (weights[key] * keep.unsqueeze(0)).contiguous()
    save_file(weights, str(out / "minilm/model.safetensors"))
    shutil.copy(os.path.join(a.minilm, "vocab.txt"), out / "minilm/vocab.txt")
    for extra in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(a.minilm, extra)):
            shutil.copy(os.path.join(a.minilm, extra), out / "minilm" / extra)
    torch.save({l: v.detach() for l, v in logits.items()}, out / "logits.pt")
    summary = {"concept": concept, "masked_per_layer": per_layer, "masked": sum(per_layer.values()),
               "units": width * len(logits), "args": vars(a), "seconds": time.time() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


def render_target(prompt, phrases):
    """The deconcept target: every mention of the concept replaced by "object" (with its article)."""
    import re
    out = prompt
    for ph in phrases:
        out = re.sub(rf"\b(an?) {re.escape(ph)}\b", "an object", out)
        out = re.sub(rf"\b{re.escape(ph)}\b", "object", out)
    return out


if __name__ == "__main__":
    main()
