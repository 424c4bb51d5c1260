"""Reference SSIM values for Tests/ErasureTests (torchmetrics' structural_similarity_index_measure, its defaults:
Gaussian 11×11 window, sigma 1.5, data_range 1, per-image mean).

    python scripts/erasure/generate_ssim_fixture.py   # venv from scripts/setup_python.sh + torchmetrics
"""
import numpy as np
import torch
from safetensors.numpy import save_file
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

rng = np.random.default_rng(7)
pairs = []
base = rng.random((3, 32, 32)).astype(np.float32)
pairs.append((base, base.copy()))                                                     # identical
pairs.append((base, np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)))     # mild noise
yy, xx = np.mgrid[0:32, 0:32] / 31.0
smooth = np.stack([xx, yy, (xx + yy) / 2]).astype(np.float32)
pairs.append((smooth, np.clip(smooth * 0.8 + 0.1, 0, 1)))                              # contrast change
pairs.append((smooth, rng.random((3, 32, 32)).astype(np.float32)))                     # unrelated
tensors = {}
values = []
for i, (a, b) in enumerate(pairs):
    a = a.astype(np.float32); b = b.astype(np.float32)
    tensors[f"a.{i}"] = a
    tensors[f"b.{i}"] = b
    v = ssim(torch.from_numpy(b)[None].double(), torch.from_numpy(a)[None].double(), data_range=1.0).item()
    values.append(v)
tensors["ssim"] = np.array(values, dtype=np.float64)
print(values)
save_file(tensors, "Tests/Fixtures/erasure/ssim.safetensors", metadata={"generator": "scripts/erasure/generate_ssim_fixture.py", "torchmetrics": __import__("torchmetrics").__version__})
