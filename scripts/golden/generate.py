"""Golden fixtures for the Swift FLUX.1 transformer tests.

Run from the repository root:

    python3 -m venv .venv   # or any venv; torch must be the CPU wheel
    .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/golden/generate.py

It deletes and rewrites everything under ``Tests/Fixtures/golden/`` deterministically (fixed seeds, one
CPU thread) and prints a summary table. Nothing is downloaded; it runs offline in well under a minute.

Two models (diffusers ``FluxTransformer2DModel`` configs) are written:

* ``tiny`` - diffusers' own unit-test config (no guidance, random-normal position ids).
* ``dev``  - FLUX.1-dev-like: guidance embedder, 3 heads, 2 double + 3 single blocks, a non-square
  4x6x10 latent packed to 15 tokens with the real FLUX id grid.

Weights are random but rounded to bf16-representable values, so the F32, BF16, sharded and BFL copies
all hold exactly the same numbers and every reference output applies to each of them.

Per model ``<m>``:

* ``<m>/``, ``<m>_sharded/`` (>= 3 shards + index), ``<m>_bf16/`` - diffusers ``save_pretrained`` folders.
* ``<m>_bfl.safetensors`` - Black Forest Labs single-file layout (``tiny`` with the ComfyUI
  ``model.diffusion_model.`` prefix, ``dev`` without).
* ``<m>.io.safetensors`` - one forward: inputs, ``output_float32_diffusers`` and
  ``output_float64_reference`` (diffusers in float64 with its float32 islands patched to float64).
* ``<m>.sample.safetensors`` - a 4-step flow-matching Euler run in float64 and float32.

Plus ``dtypes.safetensors`` / ``dtypes.expected.json`` (loader dtype coverage, written by the
safetensors library) and ``dtypes_unaligned.*`` (hand-written, tensors at odd byte offsets).

The float64 reference is cross-checked against an independent NumPy implementation of the model
that reads the BFL-layout weights (so it also checks the converter).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
import diffusers.models.embeddings as dm_embeddings  # noqa: E402
import diffusers.models.transformers.transformer_flux as dm_flux  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from diffusers.pipelines.flux.pipeline_flux import calculate_shift  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests" / "Fixtures" / "golden"
BFL_PREFIX = "model.diffusion_model."
STEPS = 4

CONFIGS = {
    "tiny": dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8], guidance_embeds=False,
    ),
    "dev": dict(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=16,
        num_attention_heads=3, joint_attention_dim=40, pooled_projection_dim=24,
        axes_dims_rope=[4, 6, 6], guidance_embeds=True,
    ),
}

RMS_WEIGHTS = ("norm_q.weight", "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight")


# ----------------------------------------------------------------------------------------------
# Weights


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def build_model(name: str, seed: int) -> FluxTransformer2DModel:
    model = FluxTransformer2DModel(**CONFIGS[name]).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():  # fixed module order -> deterministic
            w = torch.randn(p.shape, generator=g) * (0.1 if p.ndim >= 2 else 0.05)
            if pname.endswith(RMS_WEIGHTS):
                w += 1.0  # keep the QK RMSNorm away from degenerate ~0 weights
            p.copy_(bf16_round(w))
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}, "unexpected buffers"
    return model


# ----------------------------------------------------------------------------------------------
# diffusers <-> BFL single-file layout (flux.md §4.3)

# One-to-one renames (diffusers suffix, BFL suffix), applied to both .weight and .bias.
_TOP = [
    ("x_embedder", "img_in"),
    ("context_embedder", "txt_in"),
    ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
    ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
    ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
    ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
    ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
    ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
    ("proj_out", "final_layer.linear"),
]
_DOUBLE = [
    ("norm1.linear", "img_mod.lin"),
    ("norm1_context.linear", "txt_mod.lin"),
    ("attn.to_out.0", "img_attn.proj"),
    ("attn.to_add_out", "txt_attn.proj"),
    ("ff.net.0.proj", "img_mlp.0"),
    ("ff.net.2", "img_mlp.2"),
    ("ff_context.net.0.proj", "txt_mlp.0"),
    ("ff_context.net.2", "txt_mlp.2"),
]
_DOUBLE_NORMS = [
    ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
    ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
    ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
    ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
]
_SINGLE = [("norm.linear", "modulation.lin"), ("proj_out", "linear2")]
_SINGLE_NORMS = [
    ("attn.norm_q.weight", "norm.query_norm.scale"),
    ("attn.norm_k.weight", "norm.key_norm.scale"),
]


def _block_count(keys, prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)}
    assert idx == set(range(len(idx))), f"non-contiguous {prefix} indices"
    return len(idx)


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    # diffusers norm_out.linear rows are [scale; shift], BFL final adaLN rows are [shift; scale].
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def diffusers_to_bfl(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}

    def put(k, v):
        assert prefix + k not in out
        out[prefix + k] = v.contiguous().clone()

    for wb in ("weight", "bias"):
        for d, b in _TOP:
            if f"{d}.{wb}" in sd:
                put(f"{b}.{wb}", sd[f"{d}.{wb}"])
        put(f"final_layer.adaLN_modulation.1.{wb}", _swap_halves(sd[f"norm_out.linear.{wb}"]))
        for i in range(_block_count(sd, "transformer_blocks.")):
            p = f"transformer_blocks.{i}."
            for d, b in _DOUBLE:
                put(f"double_blocks.{i}.{b}.{wb}", sd[f"{p}{d}.{wb}"])
            put(f"double_blocks.{i}.img_attn.qkv.{wb}",
                torch.cat([sd[f"{p}attn.to_{x}.{wb}"] for x in "qkv"], 0))
            put(f"double_blocks.{i}.txt_attn.qkv.{wb}",
                torch.cat([sd[f"{p}attn.add_{x}_proj.{wb}"] for x in "qkv"], 0))
        for i in range(_block_count(sd, "single_transformer_blocks.")):
            p = f"single_transformer_blocks.{i}."
            for d, b in _SINGLE:
                put(f"single_blocks.{i}.{b}.{wb}", sd[f"{p}{d}.{wb}"])
            put(f"single_blocks.{i}.linear1.{wb}",
                torch.cat([sd[f"{p}attn.to_{x}.{wb}"] for x in "qkv"] + [sd[f"{p}proj_mlp.{wb}"]], 0))
    for i in range(_block_count(sd, "transformer_blocks.")):
        for d, b in _DOUBLE_NORMS:
            put(f"double_blocks.{i}.{b}", sd[f"transformer_blocks.{i}.{d}"])
    for i in range(_block_count(sd, "single_transformer_blocks.")):
        for d, b in _SINGLE_NORMS:
            put(f"single_blocks.{i}.{b}", sd[f"single_transformer_blocks.{i}.{d}"])
    assert sum(v.numel() for v in out.values()) == sum(v.numel() for v in sd.values())
    return out


def bfl_to_diffusers(bfl: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Independent inverse: hidden size comes from img_in (diffusers' own converter hard-codes 3072)."""
    sd = {k[len(BFL_PREFIX):] if k.startswith(BFL_PREFIX) else k: v for k, v in bfl.items()}
    hidden = sd["img_in.weight"].shape[0]
    out: dict[str, torch.Tensor] = {}
    for wb in ("weight", "bias"):
        for d, b in _TOP:
            if f"{b}.{wb}" in sd:
                out[f"{d}.{wb}"] = sd[f"{b}.{wb}"]
        out[f"norm_out.linear.{wb}"] = _swap_halves(sd[f"final_layer.adaLN_modulation.1.{wb}"])
        for i in range(_block_count(sd, "double_blocks.")):
            p = f"transformer_blocks.{i}."
            for d, b in _DOUBLE:
                out[f"{p}{d}.{wb}"] = sd[f"double_blocks.{i}.{b}.{wb}"]
            for x, t in zip("qkv", sd[f"double_blocks.{i}.img_attn.qkv.{wb}"].split(hidden, 0)):
                out[f"{p}attn.to_{x}.{wb}"] = t
            for x, t in zip("qkv", sd[f"double_blocks.{i}.txt_attn.qkv.{wb}"].split(hidden, 0)):
                out[f"{p}attn.add_{x}_proj.{wb}"] = t
        for i in range(_block_count(sd, "single_blocks.")):
            p = f"single_transformer_blocks.{i}."
            for d, b in _SINGLE:
                out[f"{p}{d}.{wb}"] = sd[f"single_blocks.{i}.{b}.{wb}"]
            lin1 = sd[f"single_blocks.{i}.linear1.{wb}"]
            parts = lin1.split([hidden, hidden, hidden, lin1.shape[0] - 3 * hidden], 0)
            for x, t in zip(("to_q", "to_k", "to_v"), parts[:3]):
                out[f"{p}attn.{x}.{wb}"] = t
            out[f"{p}proj_mlp.{wb}"] = parts[3]
    for i in range(_block_count(sd, "double_blocks.")):
        for d, b in _DOUBLE_NORMS:
            out[f"transformer_blocks.{i}.{d}"] = sd[f"double_blocks.{i}.{b}"]
    for i in range(_block_count(sd, "single_blocks.")):
        for d, b in _SINGLE_NORMS:
            out[f"single_transformer_blocks.{i}.{d}"] = sd[f"single_blocks.{i}.{b}"]
    return {k: v.contiguous() for k, v in out.items()}


def assert_state_dicts_bit_equal(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b), f"{what}: key sets differ: {sorted(set(a) ^ set(b))[:6]}"
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, f"{what}: {k} dtype/shape"
        assert torch.equal(a[k].view(torch.int32 if a[k].element_size() == 4 else torch.int16),
                           b[k].view(torch.int32 if b[k].element_size() == 4 else torch.int16)), \
            f"{what}: {k} not bit-equal"


# ----------------------------------------------------------------------------------------------
# float64 reference: replace diffusers' three float32 islands (flux.md §2.9)


def _timestep_embedding_f64(timesteps, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1,
                            scale=1, max_period=10000):
    half = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - downscale_freq_shift)
    args = timesteps[:, None].to(torch.float64) * torch.exp(exponent)[None, :] * scale
    sin, cos = torch.sin(args), torch.cos(args)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    assert embedding_dim % 2 == 0
    _ISLAND_CALLS["timestep"] += 1
    return emb


def _rope_table_f64(dim, pos, theta=10000.0, use_real=False, linear_factor=1.0, ntk_factor=1.0,
                    repeat_interleave_real=True, freqs_dtype=torch.float32):
    assert use_real and repeat_interleave_real and linear_factor == 1.0 and ntk_factor == 1.0
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.outer(pos.to(torch.float64), freqs)
    _ISLAND_CALLS["rope_table"] += 1
    return ang.cos().repeat_interleave(2, dim=1), ang.sin().repeat_interleave(2, dim=1)


def _apply_rotary_emb_f64(x, freqs_cis, use_real=True, use_real_unbind_dim=-1, sequence_dim=2):
    assert use_real and use_real_unbind_dim == -1 and x.dtype == torch.float64
    cos, sin = freqs_cis
    assert cos.dtype == torch.float64
    shape = (None, None, slice(None), slice(None)) if sequence_dim == 2 else (None, slice(None), None, slice(None))
    cos, sin = cos[shape], sin[shape]
    x_real, x_imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    x_rot = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    _ISLAND_CALLS["apply_rope"] += 1
    return x * cos + x_rot * sin


_ISLAND_CALLS = {"timestep": 0, "rope_table": 0, "apply_rope": 0}


@contextlib.contextmanager
def float64_islands():
    # FluxPosEmbed also does ids.float(); harmless here because every stored id is an F32 value.
    saved = (dm_embeddings.get_timestep_embedding, dm_flux.get_1d_rotary_pos_embed, dm_flux.apply_rotary_emb)
    for k in _ISLAND_CALLS:
        _ISLAND_CALLS[k] = 0
    dm_embeddings.get_timestep_embedding = _timestep_embedding_f64
    dm_flux.get_1d_rotary_pos_embed = _rope_table_f64
    dm_flux.apply_rotary_emb = _apply_rotary_emb_f64
    try:
        yield
        assert all(_ISLAND_CALLS.values()), f"a float32 island was not patched: {_ISLAND_CALLS}"
    finally:
        (dm_embeddings.get_timestep_embedding, dm_flux.get_1d_rotary_pos_embed,
         dm_flux.apply_rotary_emb) = saved


# ----------------------------------------------------------------------------------------------
# Independent NumPy float64 forward, written from flux.md §2 and reading BFL-layout weights.


def numpy_forward_bfl(bfl: dict[str, torch.Tensor], cfg: dict, inp: dict[str, torch.Tensor]) -> np.ndarray:
    w = {(k[len(BFL_PREFIX):] if k.startswith(BFL_PREFIX) else k): v.double().numpy() for k, v in bfl.items()}
    H, D = cfg["num_attention_heads"], cfg["attention_head_dim"]
    dim = H * D

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    def silu(x):
        return x / (1.0 + np.exp(-x))

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def ln(x):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)

    def rms(x, p):
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * w[p]

    def proj(t):  # t already x1000
        f = np.exp(-math.log(10000.0) * np.arange(128) / 128.0)
        a = t * f
        return np.concatenate([np.cos(a), np.sin(a)])

    def mlp_emb(p, x):
        return lin(silu(lin(x, p + ".in_layer")), p + ".out_layer")

    def heads(x):
        return x.reshape(x.shape[0], H, D)

    ids = np.concatenate([inp["txt_ids"].double().numpy(), inp["img_ids"].double().numpy()], 0)
    ang = np.concatenate([np.outer(ids[:, a], 1.0 / 10000.0 ** (np.arange(0, d, 2) / d))
                          for a, d in enumerate(cfg["axes_dims_rope"])], 1)[:, None, :]  # [S,1,D/2]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(x):
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def attention(q, k, v):  # [S,H,D] each
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(D)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        return np.einsum("hqk,khd->qhd", s, v).reshape(q.shape[0], dim)

    x = inp["hidden_states"].double().numpy()[0]
    c = inp["encoder_hidden_states"].double().numpy()[0]
    t = float(inp["timestep"].double()[0]) * 1000.0
    vec = mlp_emb("time_in", proj(t)) + mlp_emb("vector_in", inp["pooled_projections"].double().numpy()[0])
    if "guidance" in inp:
        vec = vec + mlp_emb("guidance_in", proj(float(inp["guidance"].double()[0]) * 1000.0))
    x, c = lin(x, "img_in"), lin(c, "txt_in")
    Lt = c.shape[0]
    sv = silu(vec)

    i = 0
    while f"double_blocks.{i}.img_mod.lin.weight" in w:
        p = f"double_blocks.{i}."
        m = lin(sv, p + "img_mod.lin").reshape(6, dim)
        mc = lin(sv, p + "txt_mod.lin").reshape(6, dim)
        xn = ln(x) * (1 + m[1]) + m[0]
        cn = ln(c) * (1 + mc[1]) + mc[0]
        q, k, v = np.split(lin(xn, p + "img_attn.qkv"), 3, axis=1)
        cq, ck, cv = np.split(lin(cn, p + "txt_attn.qkv"), 3, axis=1)
        q = rms(heads(q), p + "img_attn.norm.query_norm.scale")
        k = rms(heads(k), p + "img_attn.norm.key_norm.scale")
        cq = rms(heads(cq), p + "txt_attn.norm.query_norm.scale")
        ck = rms(heads(ck), p + "txt_attn.norm.key_norm.scale")
        o = attention(rope(np.concatenate([cq, q])), rope(np.concatenate([ck, k])),
                      np.concatenate([heads(cv), heads(v)]))
        x = x + m[2] * lin(o[Lt:], p + "img_attn.proj")
        x = x + m[5] * lin(gelu(lin(ln(x) * (1 + m[4]) + m[3], p + "img_mlp.0")), p + "img_mlp.2")
        c = c + mc[2] * lin(o[:Lt], p + "txt_attn.proj")
        c = c + mc[5] * lin(gelu(lin(ln(c) * (1 + mc[4]) + mc[3], p + "txt_mlp.0")), p + "txt_mlp.2")
        i += 1

    h = np.concatenate([c, x])
    i = 0
    while f"single_blocks.{i}.linear1.weight" in w:
        p = f"single_blocks.{i}."
        shift, scale, gate = lin(sv, p + "modulation.lin").reshape(3, dim)
        y = lin(ln(h) * (1 + scale) + shift, p + "linear1")
        q, k, v, mlp = y[:, :dim], y[:, dim:2 * dim], y[:, 2 * dim:3 * dim], y[:, 3 * dim:]
        q = rope(rms(heads(q), p + "norm.query_norm.scale"))
        k = rope(rms(heads(k), p + "norm.key_norm.scale"))
        a = attention(q, k, heads(v))
        h = h + gate * lin(np.concatenate([a, gelu(mlp)], 1), p + "linear2")
        i += 1

    shift, scale = lin(sv, "final_layer.adaLN_modulation.1").reshape(2, dim)  # BFL: shift first
    x = ln(h[Lt:]) * (1 + scale) + shift
    return lin(x, "final_layer.linear")[None]


# ----------------------------------------------------------------------------------------------
# Inputs, packing, scheduler


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, f = x.shape
    return x.view(b, h // 2, w // 2, f // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, f // 4, h, w)


def flux_image_ids(hh: int, ww: int) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(hh), torch.arange(ww), indexing="ij")
    return torch.stack([torch.zeros_like(r), r, c], -1).reshape(-1, 3).float()


def make_inputs(name: str, g: torch.Generator) -> tuple[dict, dict]:
    """Returns (model inputs, extra tensors) for one forward; all F32."""
    extra = {}
    if name == "tiny":
        # Random-normal ids, as diffusers' test; one continuing generator so no two tensors coincide.
        inp = {
            "hidden_states": torch.randn(1, 16, 4, generator=g),
            "encoder_hidden_states": torch.randn(1, 48, 32, generator=g),
            "pooled_projections": torch.randn(1, 32, generator=g),
            "timestep": torch.tensor([0.7]),
            "img_ids": torch.randn(16, 3, generator=g),
            "txt_ids": torch.randn(48, 3, generator=g),
        }
    else:
        z = torch.randn(1, 4, 6, 10, generator=g)
        extra["latent_unpacked"] = z
        inp = {
            "hidden_states": pack_latents(z),
            "encoder_hidden_states": torch.randn(1, 7, 40, generator=g),
            "pooled_projections": torch.randn(1, 24, generator=g),
            "timestep": torch.tensor([0.6]),
            "img_ids": flux_image_ids(3, 5),
            "txt_ids": torch.zeros(7, 3),
            "guidance": torch.tensor([3.5]),
        }
        # Cross-check our packing / ids against the pipeline's own helpers.
        assert torch.equal(inp["hidden_states"], FluxPipeline._pack_latents(z, 1, 4, 6, 10))
        assert torch.equal(inp["img_ids"], FluxPipeline._prepare_latent_image_ids(1, 3, 5, "cpu", torch.float32))
        assert torch.equal(unpack_latents(inp["hidden_states"], 6, 10), z)
    return inp, extra


def sigma_schedule(name: str, image_seq_len: int) -> tuple[np.ndarray, dict]:
    base = np.linspace(1.0, 1.0 / STEPS, STEPS)
    if name == "tiny":
        sig, meta = base, {"shift": "none"}
        sched = FlowMatchEulerDiscreteScheduler()
        sched.set_timesteps(sigmas=base.tolist())
    else:
        mu = image_seq_len * (1.15 - 0.5) / (4096 - 256) + 0.5 - 256 * (1.15 - 0.5) / (4096 - 256)
        assert mu == calculate_shift(image_seq_len, 256, 4096, 0.5, 1.15)
        sig = math.exp(mu) / (math.exp(mu) + (1.0 / base - 1.0))
        meta = {"shift": "dynamic", "mu": repr(mu)}
        sched = FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096)
        sched.set_timesteps(sigmas=base.tolist(), mu=mu)
    sig = np.append(sig, 0.0)
    ref = sched.sigmas.double().numpy()  # the scheduler keeps float32
    assert ref.shape == sig.shape and np.abs(ref - sig).max() < 1e-7, (ref, sig)
    return sig, {"steps": str(STEPS), **meta}


# ----------------------------------------------------------------------------------------------
# Runs


def forward(model, inp: dict, dtype) -> torch.Tensor:
    args = {k: v.to(dtype) for k, v in inp.items()}
    with torch.no_grad():
        return model(**args, return_dict=False)[0]


def forward_f64(model64, inp: dict) -> torch.Tensor:
    with float64_islands():
        return forward(model64, inp, torch.float64)


def euler_sample(step_fn, x: torch.Tensor, sigmas: torch.Tensor):
    vs = []
    for i in range(len(sigmas) - 1):
        v = step_fn(x, sigmas[i:i + 1])
        vs.append(v)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x, torch.stack(vs)


def canonicalize_header(path: Path) -> None:
    """Sort the __metadata__ keys in place.

    The library keeps metadata in a hash map, so its key order (and the file hash) changes from run
    to run; a fixed order keeps regenerated fixtures byte-identical. Tensor entries and data are kept.
    """
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if "__metadata__" in header:
        header = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + raw[8 + n:])


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    canonicalize_header(path)


def max_abs(a, b) -> float:
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def generate_model(name: str, seed: int) -> list[tuple]:
    cfg = CONFIGS[name]
    model = build_model(name, seed)
    model64 = copy.deepcopy(model).double()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []

    # --- weight folders
    model.save_pretrained(OUT / name)
    total = sum(v.numel() * 4 for v in sd.values())
    model.save_pretrained(OUT / f"{name}_sharded", max_shard_size=total // 4)
    shards = sorted((OUT / f"{name}_sharded").glob("*-of-*.safetensors"))
    assert len(shards) >= 3 and (OUT / f"{name}_sharded/diffusion_pytorch_model.safetensors.index.json").exists()
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(OUT / f"{name}_bf16")

    # --- BFL single file
    prefix = BFL_PREFIX if name == "tiny" else ""
    bfl = diffusers_to_bfl(sd, prefix)
    write_safetensors(OUT / f"{name}_bfl.safetensors", bfl, {"format": "pt"})
    assert_state_dicts_bit_equal(bfl_to_diffusers(bfl), sd, "BFL round trip (memory)")
    assert_state_dicts_bit_equal(bfl_to_diffusers(load_file(OUT / f"{name}_bfl.safetensors")), sd,
                                 "BFL round trip (file)")

    # --- one forward
    g = torch.Generator().manual_seed(seed + 1)
    inp, extra = make_inputs(name, g)
    out32 = forward(model, inp, torch.float32)
    out64 = forward_f64(model64, inp)
    assert out32.shape == inp["hidden_states"].shape
    np_ref = numpy_forward_bfl(bfl, cfg, inp)
    np_diff = max_abs(np_ref, out64)
    assert np_diff < 1e-11 * max(1.0, float(out64.abs().max())), f"{name}: numpy vs f64 diff {np_diff}"
    stock64 = forward(model64, inp, torch.float64)  # islands left in float32: shows they matter
    assert max_abs(stock64, out64) > 0, "float32 islands had no effect?"
    write_safetensors(OUT / f"{name}.io.safetensors",
                      {**inp, **extra, "output_float32_diffusers": out32, "output_float64_reference": out64},
                      {"model": name, "note": f"diffusers {diffusers.__version__} torch {torch.__version__} CPU"})
    rows.append((f"{name}.io", float(out64.abs().max()), max_abs(out32, out64), np_diff))

    # --- reload sanity: sharded and bf16 folders give the same weights and output
    for sub in (name, f"{name}_sharded", f"{name}_bf16"):
        m = FluxTransformer2DModel.from_pretrained(OUT / sub, torch_dtype=torch.float32).eval()
        assert_state_dicts_bit_equal(m.state_dict(), sd, f"{sub} reload")
        assert torch.equal(forward(m, inp, torch.float32), out32), f"{sub}: output differs"

    # --- 4-step Euler sampling
    sample_extra = {}
    if name == "dev":  # x_T drawn as an unpacked latent, like the pipeline
        z = torch.randn(1, 4, 6, 10, generator=g)
        x_t = pack_latents(z)
        sample_extra["latent_unpacked"] = z
    else:
        x_t = torch.randn(inp["hidden_states"].shape, generator=g)
    sigmas, meta = sigma_schedule(name, x_t.shape[1])
    cond = {k: v for k, v in inp.items() if k not in ("hidden_states", "timestep")}
    sig64 = torch.from_numpy(sigmas)

    def v64(x, s):
        with float64_islands():
            return forward(model64, {**cond, "hidden_states": x, "timestep": s}, torch.float64)

    def v32(x, s):
        return forward(model, {**cond, "hidden_states": x, "timestep": s}, torch.float32)

    s64, vel64 = euler_sample(v64, x_t.double(), sig64)
    s32, _ = euler_sample(v32, x_t.float(), sig64.float())

    # NumPy cross-check of the whole loop
    xn = x_t.double()
    for i in range(STEPS):
        v = torch.from_numpy(numpy_forward_bfl(bfl, cfg, {**cond, "hidden_states": xn, "timestep": sig64[i:i + 1]}))
        xn = xn + (sig64[i + 1] - sig64[i]) * v
    np_sdiff = max_abs(xn, s64)
    assert np_sdiff < 1e-11 * max(1.0, float(s64.abs().max())), f"{name}: numpy sample diff {np_sdiff}"

    if name == "dev":
        sample_extra["sample_float64_reference_unpacked"] = unpack_latents(s64, 6, 10)
    write_safetensors(OUT / f"{name}.sample.safetensors",
                      {**cond, "hidden_states": x_t, "timestep": sig64[:1].float(), "sigmas": sig64,
                       **sample_extra,
                       "velocities_float64_reference": vel64,
                       "sample_float64_reference": s64, "sample_float32_diffusers": s32},
                      {**meta, "model": name, "image_seq_len": str(x_t.shape[1])})
    rows.append((f"{name}.sample", float(s64.abs().max()), max_abs(s32, s64), np_sdiff))
    return rows


# ----------------------------------------------------------------------------------------------
# dtype fixtures for the safetensors loader


def to_expected(t: torch.Tensor, dtype: str) -> dict:
    return {"dtype": dtype, "shape": list(t.shape), "values": t.to(torch.float64).flatten().tolist()}


def generate_dtypes() -> None:
    tensors = {
        "t_f32": (torch.tensor([[1.5, -2.25, 0.1], [3.0e-5, -1.0e10, 7.0]], dtype=torch.float32), "F32"),
        "t_f64": (torch.tensor([0.1, -1.0 / 3.0, 1e-300, 12345.678], dtype=torch.float64), "F64"),
        # 65504 = F16 max; 2**-24 = smallest F16 subnormal
        "t_f16": (torch.tensor([0.1, -2.5, 65504.0, 2.0 ** -24, -0.000123], dtype=torch.float16), "F16"),
        "t_bf16": (torch.tensor([[0.1, -3.140625, 1.0e30], [-1.0e-20, 1.0, 256.5]], dtype=torch.bfloat16), "BF16"),
        "t_i64": (torch.tensor([-(2 ** 40) - 3, -1, 0, 2 ** 52 + 1], dtype=torch.int64), "I64"),
        "t_i32": (torch.tensor([-(2 ** 31), -7, 0, 2 ** 31 - 1], dtype=torch.int32), "I32"),
        "t_u8": (torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8), "U8"),
        "t_bool": (torch.tensor([True, False, True], dtype=torch.bool), "BOOL"),
        "scalar_f32": (torch.tensor(2.5, dtype=torch.float32), "F32"),
        "empty_f32": (torch.zeros(0, 3, dtype=torch.float32), "F32"),
    }
    meta = {"format": "pt", "note": "dtype fixture"}
    save_file({k: v for k, (v, _) in tensors.items()}, str(OUT / "dtypes.safetensors"), metadata=meta)
    canonicalize_header(OUT / "dtypes.safetensors")
    expected = {"__metadata__": meta, **{k: to_expected(v, d) for k, (v, d) in tensors.items()}}
    (OUT / "dtypes.expected.json").write_text(json.dumps(expected, indent=1) + "\n")

    # The library writer aligns every tensor; hand-write one with odd absolute offsets so loaders
    # must use unaligned reads.
    odd = [
        ("u8_pad", torch.tensor([7, 8, 9], dtype=torch.uint8), "U8"),
        ("t_f16_odd", torch.tensor([0.5, -1.25, 3.0e-3], dtype=torch.float16), "F16"),
        ("t_bf16_odd", torch.tensor([[1.0, -0.1], [2.0 ** 100, -7.5]], dtype=torch.bfloat16), "BF16"),
        ("t_f32_odd", torch.tensor([0.1, -2.0, 1.0e-40], dtype=torch.float32), "F32"),  # 1e-40: F32 subnormal
        ("t_f64_odd", torch.tensor([math.pi, -2.0 ** -1000], dtype=torch.float64), "F64"),
    ]
    meta_odd = {"format": "pt", "note": "unaligned fixture"}
    header, blob = {"__metadata__": meta_odd}, b""
    for name, t, d in odd:
        raw = t.contiguous().view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": d, "shape": list(t.shape), "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # buffer start 8-aligned, so the offsets above are the true alignment
    (OUT / "dtypes_unaligned.safetensors").write_bytes(struct.pack("<Q", len(hb)) + hb + blob)
    expected = {"__metadata__": meta_odd, **{n: to_expected(t, d) for n, t, d in odd}}
    (OUT / "dtypes_unaligned.expected.json").write_text(json.dumps(expected, indent=1) + "\n")

    # Self-test the checker on both files, and that it rejects a wrong value.
    checker = Path(__file__).with_name("check_swift_written.py")
    for stem in ("dtypes", "dtypes_unaligned"):
        r = subprocess.run([sys.executable, str(checker), str(OUT / f"{stem}.safetensors"),
                            str(OUT / f"{stem}.expected.json")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    bad = json.loads((OUT / "dtypes.expected.json").read_text())
    bad["t_bf16"]["values"][0] = 0.1
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bad, f)
    r = subprocess.run([sys.executable, str(checker), str(OUT / "dtypes.safetensors"), f.name],
                       capture_output=True, text=True)
    os.unlink(f.name)
    assert r.returncode == 1, "checker accepted a wrong value"


# ----------------------------------------------------------------------------------------------


def main() -> None:
    diffusers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # reduction order fixed -> bit-reproducible fp32 outputs
    torch.use_deterministic_algorithms(True)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    rows = []
    for seed, name in enumerate(CONFIGS):
        rows += generate_model(name, 1000 * (seed + 1))
    generate_dtypes()

    print(f"{'fixture':<14}{'max|out|':>12}{'fp32 vs f64':>14}{'rel':>11}{'numpy vs f64':>15}")
    for fx, mx, d, nd in rows:
        print(f"{fx:<14}{mx:>12.5g}{d:>14.3e}{d / mx:>11.2e}{nd:>15.2e}")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT.relative_to(REPO)} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
