"""Check a safetensors file (e.g. one written by the Swift writer) against an expected JSON.

    python scripts/golden/check_swift_written.py FILE.safetensors EXPECTED.json [--tol 0]

EXPECTED.json maps tensor names to {"dtype": "F32", "shape": [..], "values": [..]} (values flattened
row-major, as float64 numbers; BOOL as 0/1) and may hold "__metadata__": {str: str}, which must then
match exactly (if absent, the file's metadata is not checked). The file must hold exactly the expected
tensors. The official Python library reads the file, so its validation (contiguous offsets, sizes,
header rules) applies too. Exit status: 0 match, 1 mismatch, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys

import torch
from safetensors import safe_open


def read_header(path: str) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("expected")
    ap.add_argument("--tol", type=float, default=0.0, help="max abs difference allowed (default exact)")
    a = ap.parse_args()

    try:
        expected = json.loads(open(a.expected).read())
        header = read_header(a.file)
        f = safe_open(a.file, framework="pt")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        file_meta = f.metadata()
    except Exception as e:  # noqa: BLE001 - any read failure is a failed check
        print(f"error: cannot read input: {e}")
        return 2

    errors = []
    want_meta = expected.pop("__metadata__", None)
    if want_meta is not None and (file_meta or {}) != want_meta:
        errors.append(f"__metadata__: got {file_meta}, want {want_meta}")
    if set(tensors) != set(expected):
        errors.append(f"tensor names: missing {sorted(set(expected) - set(tensors))}, "
                      f"unexpected {sorted(set(tensors) - set(expected))}")
    for name in sorted(set(tensors) & set(expected)):
        want, h, t = expected[name], header[name], tensors[name]
        if h["dtype"] != want["dtype"]:
            errors.append(f"{name}: dtype {h['dtype']} != {want['dtype']}")
        if list(h["shape"]) != list(want["shape"]):
            errors.append(f"{name}: shape {h['shape']} != {want['shape']}")
            continue
        got = t.to(torch.float64).flatten().tolist()
        if len(got) != len(want["values"]):
            errors.append(f"{name}: {len(got)} values, want {len(want['values'])}")
            continue
        bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want["values"]))
               if not (g == w or (math.isnan(g) and math.isnan(w)) or abs(g - w) <= a.tol)]
        if bad:
            i, g, w = bad[0]
            errors.append(f"{name}: {len(bad)} values differ, first [{i}] got {g!r} want {w!r}")

    for e in errors:
        print("mismatch:", e)
    failed = {e.split(":")[0] for e in errors}
    matched = [k for k in expected if k in tensors and k not in failed]
    meta_note = "" if want_meta is None else f", metadata {'differs' if '__metadata__' in failed else 'ok'}"
    print(f"{a.file}: {len(matched)}/{len(expected)} expected tensors match{meta_note}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
