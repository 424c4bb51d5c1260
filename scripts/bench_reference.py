"""PyTorch reference numbers for `mce bench forward` and `mce bench erase-step`.

    python scripts/bench_reference.py forward --config small|medium [--repeats 20] [--threads N]
    python scripts/bench_reference.py erase-step --config small|medium --steps N [--repeats 5] [--threads N]
    python scripts/bench_reference.py train-step --config small|medium --text-tokens T [--batch 64] [--repeats 5] [--threads N]

Builds diffusers' FluxTransformer2DModel with random weights (fp32, eval, batch 1, 16 text tokens).
`--autocast bf16` runs every timed call under torch.autocast("cpu", dtype=torch.bfloat16) (bf16 matmuls
through oneDNN, fp32 weights and optimiser state), the counterpart of `mce bench … --precision bf16`;
the JSON line then says "precision": "bf16" (else "f32").

`forward` runs 3 warm-up forwards (no_grad), times `repeats` forwards and prints one JSON line:
{"impl", "config", "median_s", "gflops", "gflop_per_forward", "peak_rss_mib", "threads", ...}.
The FLOP count is the same formula the Swift benchmark uses (see `forward_flops`); the script also
checks it against a count taken from hooks on every Linear actually called.

`erase-step` times one optimisation iteration of the concept-erasure objective (see `erase_iteration`):
masks m = sigmoid(logits) on `ff`, `ff_context` and `norm1_context` of every double block, an N-step
Euler sample without grad, a step-wise checkpointed backward of mean((x_0 - target)^2) to the logits
and one AdamW step. It warms up 1 iteration, times `repeats` and prints one JSON line with
"bench": "erase-step"; FLOPs are counted as 3*N forwards (N forward steps, N replays, their backward
as one forward each), as the Swift side does. It then checks, in float64 on the small config, that the
checkpointed gradients equal a plain full backprop through a 2-step sampler.

`train-step` times one training step of the base model's kind (see `bench_train_step`): a batch of random
latents, text states and logit-normal σ, forward in train mode, MSE to a random target, backward to every
weight, AdamW; samples/s and GFLOP/s (3 forwards' worth per sample, as the Swift side counts it).
"""

from __future__ import annotations

import argparse
import json
import math
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

# Set from --autocast: "f32" (plain fp32) or "bf16" (torch.autocast on the CPU in bfloat16).
PRECISION = "f32"


def autocast():
    """The context the timed calls run in: bf16 autocast, or nothing."""
    import contextlib
    if PRECISION == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()

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
    with torch.no_grad(), autocast():
        for _ in range(2):
            model(**inputs)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "impl": f"diffusers+torch {torch.__version__}",
        "precision": PRECISION,
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


# ----------------------------------------------------------------------------------------------
# erase-step

ERASE_SITES = ("ff", "ff_context", "norm1_context")
LOGIT_INIT = 3.0


def install_masks(model) -> tuple[dict, list[str]]:
    """Forward hooks multiplying the outputs of ff.net[0] / ff_context.net[0] (after GELU) and
    norm1_context.linear of every double block by masks[site]; fill `masks` before each forward."""
    masks: dict = {}
    sites = []
    for i, b in enumerate(model.transformer_blocks):
        for leaf, mod in zip(ERASE_SITES, (b.ff.net[0], b.ff_context.net[0], b.norm1_context.linear)):
            site = f"transformer_blocks.{i}.{leaf}"
            mod.register_forward_hook(lambda m, a, out, site=site: out * masks[site])
            sites.append(site)
    return masks, sites


def mask_widths(model, sites) -> list[int]:
    dim = model.inner_dim
    return [6 * dim if s.endswith("norm1_context") else 4 * dim for s in sites]


def euler_sigmas(steps: int, dtype) -> torch.Tensor:
    """linspace(1, 1/N, N) + [0], no time shift (the bench configs have no guidance, like schnell)."""
    return torch.cat([torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64),
                      torch.zeros(1, dtype=torch.float64)]).to(dtype)


def checkpointed_grads(model, masks, sites, logits, cond, x_t, target, sigmas):
    """Loss and d loss / d logits with step-wise checkpointing: only one step's graph is alive."""
    n = len(sigmas) - 1
    with torch.no_grad():
        masks.update(zip(sites, map(torch.sigmoid, logits)))
        xs = [x_t]
        for i in range(n):
            v = model(hidden_states=xs[-1], timestep=sigmas[i:i + 1], **cond, return_dict=False)[0]
            xs.append(xs[-1] + (sigmas[i + 1] - sigmas[i]) * v)

    x0 = xs[-1].requires_grad_()
    loss = ((x0 - target) ** 2).mean()
    (g,) = torch.autograd.grad(loss, x0)
    acc = [torch.zeros_like(l) for l in logits]
    for i in reversed(range(n)):
        xi = xs[i].detach().requires_grad_()
        masks.update(zip(sites, map(torch.sigmoid, logits)))  # in the graph this time
        v = model(hidden_states=xi, timestep=sigmas[i:i + 1], **cond, return_dict=False)[0]
        x_next = xi + (sigmas[i + 1] - sigmas[i]) * v
        g, *gl = torch.autograd.grad(x_next, [xi] + logits, grad_outputs=g)
        for a, d in zip(acc, gl):
            a += d
        xs[i + 1] = None  # the stored latents are no longer needed
    return loss.detach(), acc


def erase_iteration(model, masks, sites, logits, opt, cond, x_t, target, sigmas) -> float:
    with autocast():
        loss, grads = checkpointed_grads(model, masks, sites, logits, cond, x_t, target, sigmas)
    for l, gr in zip(logits, grads):
        l.grad = gr
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss)


def erase_setup(name: str, steps: int, dtype):
    spec = CONFIGS[name]
    cfg = spec["model"]
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**cfg).eval().requires_grad_(False).to(dtype)
    inputs = make_inputs(cfg, spec["grid"])
    x_t = inputs["hidden_states"].to(dtype)
    cond = {k: (v.to(dtype) if k in ("encoder_hidden_states", "pooled_projections") else v)
            for k, v in inputs.items() if k not in ("hidden_states", "timestep", "return_dict")}
    target = 0.5 * torch.randn(x_t.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    masks, sites = install_masks(model)
    return model, masks, sites, cond, x_t, target, euler_sigmas(steps, dtype)


def check_replay_equals_full_backprop(steps: int = 2) -> float:
    """float64, small config: the checkpointed logit gradients vs backprop through the whole sampler."""
    model, masks, sites, cond, x_t, target, sigmas = erase_setup("small", steps, torch.float64)
    g = torch.Generator().manual_seed(2)
    # Distinct random logits per site, so a mix-up between same-shaped sites (ff / ff_context) shows.
    logits = [(LOGIT_INIT + torch.randn(w, generator=g, dtype=torch.float64)).requires_grad_()
              for w in mask_widths(model, sites)]
    loss_c, grads_c = checkpointed_grads(model, masks, sites, logits, cond, x_t, target, sigmas)

    masks.update(zip(sites, map(torch.sigmoid, logits)))
    x = x_t
    for i in range(steps):
        x = x + (sigmas[i + 1] - sigmas[i]) * model(hidden_states=x, timestep=sigmas[i:i + 1], **cond,
                                                    return_dict=False)[0]
    loss_f = ((x - target) ** 2).mean()
    grads_f = torch.autograd.grad(loss_f, logits)

    loss_f = float(loss_f.detach())
    assert abs(float(loss_c) - loss_f) <= 1e-14 * loss_f, (float(loss_c), loss_f)
    scale = max(float(gf.abs().max()) for gf in grads_f)
    assert scale > 0
    diff = max(float((gc - gf).abs().max()) for gc, gf in zip(grads_c, grads_f)) / scale
    assert diff < 1e-12, f"checkpointed vs full backprop logit gradients: max rel diff {diff:.3e}"
    return diff


def bench_erase_step(name: str, steps: int, repeats: int, lr: float = 0.5) -> dict:
    spec = CONFIGS[name]
    model, masks, sites, cond, x_t, target, sigmas = erase_setup(name, steps, torch.float32)
    logits = [torch.full((w,), LOGIT_INIT, requires_grad=True) for w in mask_widths(model, sites)]
    opt = torch.optim.AdamW(logits, lr=lr, weight_decay=0.01)
    flops = 3 * steps * forward_flops(spec["model"], spec["grid"] ** 2, TEXT_TOKENS)

    args = (model, masks, sites, logits, opt, cond, x_t, target, sigmas)
    losses = [erase_iteration(*args)]  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        losses.append(erase_iteration(*args))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the float64 check below
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0], f"loss did not decrease: {losses}"
    check = check_replay_equals_full_backprop()
    return {
        "impl": f"diffusers+torch {torch.__version__}",
        "precision": PRECISION,
        "bench": "erase-step",
        "config": name,
        "steps": steps,
        "median_s": round(median, 6),
        "gflops": round(flops / median / 1e9, 3),
        "gflop_per_iteration": round(flops / 1e9, 6),
        "peak_rss_mib": round(rss, 1),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "mask_entries": sum(l.numel() for l in logits),
        "image_tokens": spec["grid"] ** 2,
        "text_tokens": TEXT_TOKENS,
        "loss_first": round(losses[0], 6),
        "loss_last": round(losses[-1], 6),
        "replay_vs_full_backprop_max_rel": float(f"{check:.3g}"),
        "diffusers": diffusers.__version__,
    }


# ----------------------------------------------------------------------------------------------
# train-step

def bench_train_step(name: str, batch: int, text_tokens: int, repeats: int) -> dict:
    spec = CONFIGS[name]
    cfg = spec["model"]
    grid = spec["grid"]
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**cfg).train()
    g = torch.Generator().manual_seed(1)
    r, c = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    inputs = dict(
        hidden_states=torch.randn(batch, grid * grid, cfg["in_channels"], generator=g),
        encoder_hidden_states=torch.randn(batch, text_tokens, cfg["joint_attention_dim"], generator=g),
        pooled_projections=torch.randn(batch, cfg["pooled_projection_dim"], generator=g),
        timestep=torch.sigmoid(torch.randn(batch, generator=g)),
        img_ids=torch.stack([torch.zeros_like(r), r, c], -1).reshape(-1, 3).float(),
        txt_ids=torch.zeros(text_tokens, 3),
        return_dict=False,
    )
    target = torch.randn(inputs["hidden_states"].shape, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    flops = 3 * batch * forward_flops(cfg, grid * grid, text_tokens)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = model(**inputs)[0]
        loss = ((out.float() - target) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    losses = [step()]  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0], f"loss did not fall: {losses}"
    return {
        "impl": f"diffusers+torch {torch.__version__}",
        "precision": PRECISION,
        "bench": "train-step",
        "config": name,
        "batch": batch,
        "median_s": round(median, 6),
        "samples_per_s": round(batch / median, 3),
        "gflops": round(flops / median / 1e9, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "image_tokens": grid * grid,
        "text_tokens": text_tokens,
        "loss_first": round(losses[0], 6),
        "loss_last": round(losses[-1], 6),
        "diffusers": diffusers.__version__,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="PyTorch reference benchmark for `mce bench`.")
    sub = ap.add_subparsers(dest="command", required=True)
    fw = sub.add_parser("forward", help="time one transformer forward")
    fw.add_argument("--config", choices=sorted(CONFIGS), required=True)
    fw.add_argument("--repeats", type=int, default=20)
    fw.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    fw.add_argument("--autocast", choices=["none", "bf16"], default="none", help="bf16: time under torch.autocast(cpu, bfloat16)")
    er = sub.add_parser("erase-step", help="time one concept-erasure optimisation iteration")
    er.add_argument("--config", choices=sorted(CONFIGS), required=True)
    er.add_argument("--steps", type=int, required=True, help="Euler steps N")
    er.add_argument("--repeats", type=int, default=5)
    er.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    er.add_argument("--autocast", choices=["none", "bf16"], default="none", help="bf16: time under torch.autocast(cpu, bfloat16)")
    tr = sub.add_parser("train-step", help="time one training step (forward, MSE, backward, AdamW)")
    tr.add_argument("--config", choices=sorted(CONFIGS), required=True)
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--text-tokens", type=int, required=True, help="text tokens per sample (mce's JSON reports its own)")
    tr.add_argument("--repeats", type=int, default=5)
    tr.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    tr.add_argument("--autocast", choices=["none", "bf16"], default="none", help="bf16: time under torch.autocast(cpu, bfloat16)")
    a = ap.parse_args()
    global PRECISION
    PRECISION = "bf16" if a.autocast == "bf16" else "f32"
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.command == "forward":
        print(json.dumps(bench_forward(a.config, a.repeats)))
    elif a.command == "train-step":
        assert a.batch >= 1 and a.text_tokens >= 1 and a.repeats >= 1
        print(json.dumps(bench_train_step(a.config, a.batch, a.text_tokens, a.repeats)))
    else:
        assert a.steps >= 1 and a.repeats >= 1
        print(json.dumps(bench_erase_step(a.config, a.steps, a.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
