#!/usr/bin/env python3
"""Converts Animal-MNIST 0.4's pickled numpy arrays into IDX files that the Swift loader reads.

Usage: convert_animal_mnist.py DATA_GZ LABEL_GZ OUT_IMAGES OUT_LABELS

The wheel ships two gzip-compressed pickles of numpy arrays:
  animal_data_version_3.gz   uint8 (10000, 28, 28), C order
  animal_label_version_3.gz  int64 (10000,), values 0..9
They are read with a *restricted* unpickler that knows only the three numpy globals such a pickle
names (ndarray reconstruction and dtype) and builds plain Python stand-ins for them: numpy is not
needed, and the pickle cannot run any other code. Output is standard IDX (as used by MNIST):
  images: magic 0x00000803, dims 10000, 28, 28 (big-endian uint32), then uint8 pixels row-major
  labels: magic 0x00000801, dim 10000, then one uint8 label per image
Each output is written to OUT.tmp and renamed into place; the caller checks the hashes.
"""
import gzip
import io
import os
import pickle
import struct
import sys


class _DType:
    def __init__(self, name, align=False, copy=True):
        self.name = name
        self.state = None

    def __setstate__(self, state):
        self.state = state  # (version, byteorder, subarray, names, fields, elsize, alignment, flags)


class _Array:
    def __init__(self):
        self.shape = None
        self.dtype = None
        self.fortran = None
        self.raw = None

    def __setstate__(self, state):
        # numpy ndarray.__reduce__ state: (version, shape, dtype, is_fortran, raw bytes)
        _version, self.shape, self.dtype, self.fortran, self.raw = state


def _reconstruct(_cls, _shape, _typecode):
    return _Array()


class _Ndarray:  # only ever passed to _reconstruct as its first argument
    pass


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _Ndarray,
    ("numpy", "dtype"): _DType,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in an Animal-MNIST pickle") from None


def load_array(path):
    with gzip.open(path, "rb") as f:
        arr = _Unpickler(io.BytesIO(f.read())).load()
    if not isinstance(arr, _Array) or arr.raw is None:
        raise ValueError(f"{path}: not a pickled numpy array")
    if arr.fortran:
        raise ValueError(f"{path}: Fortran-ordered array not supported")
    return arr


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    data_gz, label_gz, out_images, out_labels = argv[1:]
    images = load_array(data_gz)
    labels = load_array(label_gz)
    if images.dtype.name != "u1" or len(images.shape) != 3 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"unexpected image array: dtype {images.dtype.name}, shape {images.shape}")
    n = images.shape[0]
    if len(images.raw) != n * 28 * 28:
        raise ValueError("image byte count does not match its shape")
    if labels.dtype.name != "i8" or tuple(labels.shape) != (n,):
        raise ValueError(f"unexpected label array: dtype {labels.dtype.name}, shape {labels.shape}")
    order = labels.dtype.state[1] if labels.dtype.state else "<"
    fmt = (">" if order == ">" else "<") + f"{n}q"
    lab = struct.unpack(fmt, labels.raw)
    if any(v < 0 or v > 9 for v in lab):
        raise ValueError("labels outside 0..9")
    write_atomic(out_images, struct.pack(">IIII", 0x803, n, 28, 28) + bytes(images.raw))
    write_atomic(out_labels, struct.pack(">II", 0x801, n) + bytes(lab))
    print(f"converted {n} Animal-MNIST images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
