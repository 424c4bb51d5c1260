#!/usr/bin/env python3
"""Writes Tests/Fixtures/world/datasets.json: values the Swift World tests compare against, computed here
independently (pure Python, no numpy) from the cache that scripts/fetch_datasets.sh fills.

  python3 scripts/world/make_fixture.py [DATA_DIR] > Tests/Fixtures/world/datasets.json

It re-implements the Animal-MNIST split (SplitMix64 + Fisher-Yates, see Sources/Testbed/World/Datasets.swift) and
the scene resampling formula (Sources/Testbed/World/Scene.swift) in float64.
"""
import json
import math
import os
import struct
import sys

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class RNG:
    def __init__(self, seed):
        self.state = seed & M64

    def next(self):
        self.state = (self.state + GOLDEN) & M64
        return mix(self.state)

    def below(self, n):
        return self.next() % n

    def shuffle(self, a):
        for i in range(len(a) - 1, 0, -1):
            j = self.below(i + 1)
            a[i], a[j] = a[j], a[i]


def read_idx(path):
    b = open(path, "rb").read()
    assert b[0] == 0 and b[1] == 0 and b[2] == 8
    nd = b[3]
    shape = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return list(shape), b[4 + 4 * nd:]


def checksum(img):
    """sum((k + 1) * p_k) mod 2^32 over the 784 pixels."""
    return sum((k + 1) * p for k, p in enumerate(img)) % (1 << 32)


def image_info(images, labels, i, src=None):
    img = images[i * 784:(i + 1) * 784]
    d = {"index": i, "label": labels[i], "sum": sum(img), "checksum": checksum(img),
         "pixel_14_14": img[14 * 28 + 14]}
    if src is not None:
        d["sourceIndex"] = src
    return d


def render_alpha(mask, scale, dx, dy, size=32):
    cx, cy = size / 2 + dx, size / 2 + dy
    out = [0.0] * (size * size)

    def m(yy, xx):
        return 0.0 if (yy < 0 or yy >= 28 or xx < 0 or xx >= 28) else float(mask[yy * 28 + xx])

    for y in range(size):
        v = (y + 0.5 - cy) / scale + 13.5
        y0 = math.floor(v); fy = v - y0
        for x in range(size):
            u = (x + 0.5 - cx) / scale + 13.5
            x0 = math.floor(u); fx = u - x0
            top = m(y0, x0) * (1 - fx) + m(y0, x0 + 1) * fx
            bot = m(y0 + 1, x0) * (1 - fx) + m(y0 + 1, x0 + 1) * fx
            out[y * size + x] = (top * (1 - fy) + bot * fy) / 255
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MCE_DATA") or os.environ.get("MCE_CACHE") or \
        os.path.expanduser("~/.cache/mce")
    out = {"fashion": {}, "animal": {}, "render": []}
    fm = {}
    for split, prefix, picks in (("train", "train", [0, 1, 12345, 59999]), ("test", "t10k", [0, 1, 9999])):
        ishape, images = read_idx(f"{root}/fashion-mnist/{prefix}-images-idx3-ubyte")
        lshape, labels = read_idx(f"{root}/fashion-mnist/{prefix}-labels-idx1-ubyte")
        fm[split] = images
        out["fashion"][split] = {
            "count": lshape[0],
            "labelCounts": [labels.count(c) for c in range(10)],
            "pixelSum": sum(images),
            "images": [image_info(images, labels, i) for i in picks],
        }

    _, aimages = read_idx(f"{root}/animal-mnist/animal-images-idx3-ubyte")
    _, alabels = read_idx(f"{root}/animal-mnist/animal-labels-idx1-ubyte")
    rng = RNG(0x414E494D414C5331)
    train, test = [], []
    for c in range(10):
        idx = [i for i in range(len(alabels)) if alabels[i] == c]
        rng.shuffle(idx)
        train += idx[:800]
        test += idx[800:]
    train.sort(); test.sort()
    out["animal"]["fileLabelCounts"] = [alabels.count(c) for c in range(10)]
    for split, pick in (("train", train), ("test", test)):
        imgs = b"".join(aimages[i * 784:(i + 1) * 784] for i in pick)
        labs = bytes(alabels[i] for i in pick)
        out["animal"][split] = {
            "count": len(pick),
            "labelCounts": [labs.count(c) for c in range(10)],
            "firstSourceIndices": pick[:5],
            "sourceIndexSum": sum(pick),
            "pixelSum": sum(imgs),
            "images": [image_info(imgs, labs, i, pick[i]) for i in (0, 1, len(pick) - 1)],
        }

    # Scene alpha masks: Fashion-MNIST train image 0 and Animal-MNIST file image 4321 under a few placements.
    cases = [("fashion-train", 0, 1.0, 0.0, 0.0), ("fashion-train", 0, 0.9, 0.7, -1.3),
             ("animal-file", 4321, 1.1, -2.0, 1.5), ("animal-file", 4321, 0.8, 1.25, 0.5)]
    for name, i, s, dx, dy in cases:
        src = fm["train"] if name == "fashion-train" else aimages
        a = render_alpha(src[i * 784:(i + 1) * 784], s, dx, dy)
        probes = [(y, x) for y in (0, 5, 10, 16, 21, 27, 31) for x in (3, 9, 16, 22, 30)]
        out["render"].append({"image": name, "index": i, "scale": s, "dx": dx, "dy": dy,
                              "alphaSum": sum(a),
                              "probes": [[y, x, a[y * 32 + x]] for y, x in probes]})
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
