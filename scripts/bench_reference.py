"""PyTorch reference numbers for `mce bench forward`.

    python scripts/bench_reference.py forward --config small|medium [--repeats 20] [--threads N]

Builds diffusers' FluxTransformer2DModel with random weights (fp32, eval, no_grad, batch 1, 16 text
tokens), runs 3 warm-up forwards, times `repeats` forwards and prints one JSON line:
{"impl", "config", "median_s", "gflops", "gflop_per_forward", "peak_rss_mib", "threads", ...}.
The FLOP count is the same formula the Swift benchmark uses (see `forward_flops`); the script also
checks it against a count taken from hooks on every Linear actually called.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402

import diffusers  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402

TEXT_TOKENS = 16

CONFIGS = {
    "small": dict(
        model=dict(patch_size=1, in_channels=48, num_layers=2, num_single_layers=4, attention_head_dim=64,
                   num_attention_heads=4, joint_attention_dim=384, pooled_projection_dim=384,
                   guidance_embeds=False, axes_dims_rope=[8, 28, 28]),
        grid=8,
    ),
    "medium": dict(
        model=dict(patch_size=1, in_channels=64, num_layers=4, num_single_layers=8, attention_head_dim=64,
                   num_attention_heads=8, joint_attention_dim=512, pooled_projection_dim=512,
                   guidance_embeds=False, axes_dims_rope=[8, 28, 28]),
        grid=16,
    ),
}


def forward_flops(cfg: dict, image_tokens: int, text_tokens: int) -> int:
    """FLOPs of one forward, batch 1; must stay identical to the Swift `bench forward` formula.

    2 * sum over every Linear called of rows * in * out, where rows is the token count of its input
    (1 for the embedder / modulation Linears applied to the [1, dim] temb), plus 4 * S * S * dim per
    attention call (QK^T and PV), S = text + image tokens. Elementwise ops (norms, RoPE, softmax,
    activations, residuals) are ignored.
    """
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mlp = 4 * dim
    li, lt = image_tokens, text_tokens
    s = li + lt
    c_in = cfg["in_channels"]
    c_out = cfg.get("out_channels") or c_in

    macs = li * c_in * dim + lt * cfg["joint_attention_dim"] * dim            # x_embedder, context_embedder
    macs += 256 * dim + dim * dim                                              # timestep_embedder (rows = 1)
    if cfg["guidance_embeds"]:
        macs += 256 * dim + dim * dim                                          # guidance_embedder
    macs += cfg["pooled_projection_dim"] * dim + dim * dim                     # text_embedder
    per_double = (
        2 * dim * 6 * dim                                                      # norm1 / norm1_context (rows = 1)
        + (li + lt) * 4 * dim * dim                                            # q,k,v,out and add_q,k,v,add_out
        + (li + lt) * 2 * dim * mlp                                            # ff / ff_context
    )
    per_single = dim * 3 * dim + s * (3 * dim * dim + dim * mlp + (dim + mlp) * dim)
    macs += cfg["num_layers"] * per_double + cfg["num_single_layers"] * per_single
    macs += dim * 2 * dim + li * dim * c_out                                   # norm_out.linear, proj_out
    attn_calls = cfg["num_layers"] + cfg["num_single_layers"]
    return 2 * macs + attn_calls * 4 * s * s * dim


def hooked_flops(model, inputs) -> int:
    """The same count taken from the Linear / attention modules actually called (a cross-check)."""
    total = [0]

    def lin_hook(mod, args, out):
        x = args[0]
        total[0] += 2 * (x.numel() // mod.in_features) * mod.in_features * mod.out_features

    seq = inputs["hidden_states"].shape[1] + inputs["encoder_hidden_states"].shape[1]
    dim = model.inner_dim

    def attn_hook(mod, args, out):
        total[0] += 4 * seq * seq * dim

    handles = [m.register_forward_hook(lin_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    handles += [b.attn.register_forward_hook(attn_hook)
                for b in list(model.transformer_blocks) + list(model.single_transformer_blocks)]
    with torch.no_grad():
        model(**inputs)
    for h in handles:
        h.remove()
    return total[0]


def make_inputs(cfg: dict, grid: int) -> dict:
    g = torch.Generator().manual_seed(0)
    r, c = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return dict(
        hidden_states=torch.randn(1, grid * grid, cfg["in_channels"], generator=g),
        encoder_hidden_states=torch.randn(1, TEXT_TOKENS, cfg["joint_attention_dim"], generator=g),
        pooled_projections=torch.randn(1, cfg["pooled_projection_dim"], generator=g),
        timestep=torch.tensor([0.5]),
        img_ids=torch.stack([torch.zeros_like(r), r, c], -1).reshape(-1, 3).float(),
        txt_ids=torch.zeros(TEXT_TOKENS, 3),
        return_dict=False,
    )


def bench_forward(name: str, repeats: int) -> dict:
    spec = CONFIGS[name]
    cfg = spec["model"]
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**cfg).eval()
    inputs = make_inputs(cfg, spec["grid"])
    flops = forward_flops(cfg, spec["grid"] ** 2, TEXT_TOKENS)
    counted = hooked_flops(model, inputs)  # also the first warm-up forward
    assert counted == flops, f"FLOP formula {flops} != hooked count {counted}"

    times = []
    with torch.no_grad():
        for _ in range(2):
            model(**inputs)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "impl": f"diffusers+torch {torch.__version__}",
        "config": name,
        "median_s": round(median, 6),
        "gflops": round(flops / median / 1e9, 3),
        "gflop_per_forward": round(flops / 1e9, 6),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "image_tokens": spec["grid"] ** 2,
        "text_tokens": TEXT_TOKENS,
        "diffusers": diffusers.__version__,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="PyTorch reference benchmark for `mce bench`.")
    sub = ap.add_subparsers(dest="command", required=True)
    fw = sub.add_parser("forward", help="time one transformer forward")
    fw.add_argument("--config", choices=sorted(CONFIGS), required=True)
    fw.add_argument("--repeats", type=int, default=20)
    fw.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(bench_forward(a.config, a.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
