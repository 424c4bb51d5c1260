"""Golden fixture for baking masks: diffusers with a fixed binary mask applied through hooks.

Run from the repository root, after ``generate.py`` (it reads the ``dev`` model and ``dev.io.safetensors``,
which it leaves untouched; ``generate.py`` wipes the whole folder, so rerun this after it). Deterministic:
a rerun rewrites both files byte for byte.

    .venv/bin/python scripts/golden/generate_masked.py

Writes

* ``Tests/Fixtures/golden/dev-mask.safetensors`` - a fixed binary mask over every site of all 11 kinds of the
  ``dev`` model (~30% of units masked, at least one unit masked and one kept per site), in mce's mask-file
  format: F32 tensors ``<site>.mask`` (site = diffusers module name, Sources/Engine/Flux/MaskSites.swift).
* ``Tests/Fixtures/golden/dev-masked-out.safetensors`` - one forward pass of diffusers'
  ``FluxTransformer2DModel`` on the inputs of ``dev.io.safetensors`` with the mask applied by forward hooks
  (``generate_gradients.MaskHooks``: the outputs of ``ff.net[0]``, ``ff_context.net[0]``, ``norm1.linear``,
  ``norm1_context.linear``, single ``norm.linear``, ``act_mlp``, ``attn.add_{q,k,v}_proj``, and per head on the joint attention output
  before ``to_out[0]``/``to_add_out`` or on the single block's attention output):
  ``output_float64_reference`` (float64, float32 islands patched as in generate.py) and
  ``output_float32_diffusers``.

The Swift test (Tests/ErasureTests/BakingTests.swift) bakes the mask into the ``dev`` folder and checks the
baked model's plain forward against ``output_float64_reference``.

The diffusers side of the check, "diffusers loads the baked checkpoint":

    MCE_BAKED_OUT=/tmp/dev-baked swift test --disable-swift-testing --filter BakingTests/testBakedDevMatchesDiffusersWithHookedMasks
    .venv/bin/python scripts/golden/generate_masked.py --check-baked /tmp/dev-baked

loads the baked folder with ``FluxTransformer2DModel.from_pretrained``, runs it without hooks, and asserts
that its output equals the hooked output (and that its weights equal the mask folded into the original
weights in PyTorch); it prints the max differences and writes nothing.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as G  # noqa: E402  (sets the offline env vars before importing diffusers)
import generate_gradients as GG  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from diffusers import FluxTransformer2DModel  # noqa: E402

MODEL = "dev"
SEED = 2000  # generate.py's seed for dev
MASK_PATH = G.OUT / "dev-mask.safetensors"
OUT_PATH = G.OUT / "dev-masked-out.safetensors"
INPUTS = ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids", "guidance")


def all_sites(cfg: dict) -> list[str]:
    """Every mask site of the model, in MaskSite.Kind order."""
    d = [f"transformer_blocks.{i}." for i in range(cfg["num_layers"])]
    s = [f"single_transformer_blocks.{i}." for i in range(cfg["num_single_layers"])]
    return ([p + "ff" for p in d] + [p + "ff_context" for p in d] + [p + "norm1_context" for p in d]
            + [p + "norm1" for p in d] + [p + "attn" for p in d]
            + [p + "proj_mlp" for p in s] + [p + "norm" for p in s] + [p + "attn" for p in s]
            + [p + f"attn.add_{x}_proj" for x in "qkv" for p in d])


def make_masks(cfg: dict) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED + 500)
    masks = {}
    for site in all_sites(cfg):
        w = GG.site_width(cfg, site)
        m = (torch.rand(w, generator=g) >= 0.3).float()
        # Every site must both mask and keep something, so each kind is exercised and nothing is trivial.
        if m.min() == 1:
            m[int(torch.randint(w, (1,), generator=g))] = 0
        if m.max() == 0:
            m[int(torch.randint(w, (1,), generator=g))] = 1
        masks[site] = m
    return masks


def hooked_forward(model: FluxTransformer2DModel, masks: dict, inp: dict, f64: bool) -> torch.Tensor:
    hooks = GG.MaskHooks(model, list(masks))
    hooks.masks = {s: m.to(torch.float64 if f64 else torch.float32) for s, m in masks.items()}
    try:
        out = G.forward_f64(model, inp) if f64 else G.forward(model, inp, torch.float32)
    finally:
        hooks.remove()
    for s in masks:
        single, _, leaf = GG.parse_site(s)
        want = 2 if leaf == "attn" and not single else 1
        assert hooks.calls[s] == want, f"hook {s} fired {hooks.calls[s]} times, want {want}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-baked", metavar="FOLDER",
                    help="a diffusers folder baked from dev with dev-mask.safetensors; compare, write nothing")
    args = ap.parse_args()
    G.diffusers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    cfg = G.CONFIGS[MODEL]
    model32 = GG.load_model(MODEL, SEED)  # asserts the fixture equals generate.py's deterministic build
    model64 = copy.deepcopy(model32).double()
    io = load_file(G.OUT / f"{MODEL}.io.safetensors")
    inp = {k: io[k] for k in INPUTS}

    if args.check_baked:
        stored = load_file(MASK_PATH)
        masks = {k[:-len(".mask")]: v for k, v in stored.items()}
        assert set(masks) == set(all_sites(cfg)) and set(stored) == {s + ".mask" for s in masks}
    else:
        masks = make_masks(cfg)
    out32 = hooked_forward(model32, masks, inp, f64=False)
    out64 = hooked_forward(model64, masks, inp, f64=True)
    scale = float(out64.abs().max())

    if args.check_baked:
        ref = load_file(OUT_PATH)
        d_fix = G.max_abs(out64, ref["output_float64_reference"])
        assert d_fix < 1e-12 * scale, f"hooked output differs from {OUT_PATH.name}: {d_fix}"
        baked32 = FluxTransformer2DModel.from_pretrained(args.check_baked, torch_dtype=torch.float32).eval()
        # The baked weights are the mask folded into the original ones (value-equal; -0 vs +0 aside).
        folded = GG.fold_masks(model32, masks).state_dict()
        sd = baked32.state_dict()
        assert set(sd) == set(folded), "baked folder has other tensors"
        bad = [k for k in sd if not torch.equal(sd[k], folded[k])]
        assert not bad, f"baked weights differ from the folded mask: {bad[:5]}"
        b32 = G.forward(baked32, inp, torch.float32)
        b64 = G.forward_f64(copy.deepcopy(baked32).double(), inp)
        d32, d64 = G.max_abs(b32, out32), G.max_abs(b64, out64)
        print(f"baked {args.check_baked} loaded by diffusers {G.diffusers.__version__}, plain forward vs hooked mask:")
        print(f"  float32: max|diff| {d32:.3e}   float64: max|diff| {d64:.3e}   (max|out| {scale:.4f})")
        assert d64 <= 1e-12 * scale and d32 <= 1e-5 * scale, "baked checkpoint does not reproduce the hooked mask"
        return

    # Hooks vs the same masks folded into the weights in PyTorch (an independent statement of the sites).
    with torch.no_grad(), G.float64_islands():
        fold64 = G.forward(GG.fold_masks(model64, masks), inp, torch.float64)
    d_fold = G.max_abs(fold64, out64)
    assert d_fold < 1e-12 * scale, f"hooks vs folded weights: {d_fold}"
    plain = io["output_float64_reference"]
    d_mask = G.max_abs(out64, plain)
    assert d_mask > 0.05 * scale, "the mask has no visible effect"

    total = sum(m.numel() for m in masks.values())
    masked = sum(int((m == 0).sum()) for m in masks.values())
    G.write_safetensors(MASK_PATH, {f"{s}.mask": m for s, m in masks.items()},
                        {"concept": "golden-fixed-mask", "model": MODEL,
                         "note": "fixed binary mask over every site of dev (scripts/golden/generate_masked.py)"})
    G.write_safetensors(OUT_PATH, {"output_float64_reference": out64, "output_float32_diffusers": out32},
                        {"model": MODEL, "inputs": f"{MODEL}.io.safetensors", "masks": MASK_PATH.name,
                         "note": f"diffusers {G.diffusers.__version__} torch {torch.__version__} CPU, masks by forward hooks"})
    print(f"{MASK_PATH.relative_to(G.REPO)}: {len(masks)} sites, {masked} of {total} units masked "
          f"({100 * masked / total:.1f}%)")
    print(f"{OUT_PATH.relative_to(G.REPO)}: max|out| {scale:.4f}, vs unmasked {d_mask:.3e}, "
          f"hooks vs folded weights {d_fold:.1e}, fp32 vs f64 {G.max_abs(out32, out64):.1e}")


if __name__ == "__main__":
    main()
