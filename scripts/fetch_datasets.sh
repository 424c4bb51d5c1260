#!/usr/bin/env bash
# Installs/fetches the small world's two datasets once, into a cache that the Swift `World` loaders read.
# Nothing is downloaded at run time; after this script the data lives in
#
#   $DATA/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte   original IDX files, gunzipped
#   $DATA/animal-mnist/animal-{images-idx3,labels-idx1}-ubyte           converted once to IDX
#
# with DATA = ${MCE_DATA:-${MCE_CACHE:-$HOME/.cache/mce}} (the Swift code resolves it the same way).
#
# Sources (pinned by SHA-256 below, checked before and after conversion):
#   Fashion-MNIST: Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/*.gz);
#                  installed with apt-get (root or sudo) when missing. The .gz files are gunzipped into the
#                  cache because the Swift side has no zlib module; the bytes are the original IDX files.
#   Animal-MNIST:  PyPI `animal-mnist==0.4`, fetched with `pip download --no-deps` (its tensorflow dependency
#                  is only used by an MNIST helper). The two pickled numpy arrays in the wheel are converted by
#                  scripts/world/convert_animal_mnist.py (restricted unpickler; no numpy needed).
#
# Idempotent: when every cached file is present with the right hash it only says so and exits 0.
set -euo pipefail

DATA="${MCE_DATA:-${MCE_CACHE:-${HOME:?HOME is not set; set MCE_DATA}/.cache/mce}}"
FM_SRC="${MCE_FASHION_MNIST_SRC:-/usr/share/datasets/fashion-mnist}"
HERE="$(cd "$(dirname "$0")" && pwd)"

# --- pinned hashes -------------------------------------------------------------------------------------
# Debian dataset-fashion-mnist 0.0~git20200523.55506a9-1, the .gz files as shipped
declare -A FM_GZ_SHA=(
    [train-images-idx3-ubyte]=b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
    [train-labels-idx1-ubyte]=0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
    [t10k-images-idx3-ubyte]=cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
    [t10k-labels-idx1-ubyte]=8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
)
# the same files gunzipped (what the cache holds)
declare -A FM_SHA=(
    [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
    [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
    [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
    [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)
AM_VERSION=0.4
AM_WHEEL=animal_mnist-0.4-py3-none-any.whl
AM_WHEEL_SHA=aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce
AM_DATA_GZ_SHA=68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce
AM_LABEL_GZ_SHA=dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57
declare -A AM_SHA=(
    [animal-images-idx3-ubyte]=78be9d27ff8d75a1eae55853f0b6e9dda457debab0d0d95c20610aaffa88e5d6
    [animal-labels-idx1-ubyte]=ebe12bc8de9440ef5b785b7c21fb67087b377cc851b65e009f278d22d099cdb2
)

# --- helpers -------------------------------------------------------------------------------------------
die() { echo "fetch_datasets: error: $*" >&2; exit 1; }
say() { echo "fetch_datasets: $*" >&2; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
sha_ok() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$2" ]; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else die "need root or sudo to run: $*"; fi
}
command -v sha256sum >/dev/null 2>&1 || die "sha256sum (coreutils) not found"

fashion_ready() { for f in "${!FM_SHA[@]}"; do sha_ok "$DATA/fashion-mnist/$f" "${FM_SHA[$f]}" || return 1; done; }
animal_ready() { for f in "${!AM_SHA[@]}"; do sha_ok "$DATA/animal-mnist/$f" "${AM_SHA[$f]}" || return 1; done; }

if fashion_ready && animal_ready; then
    say "datasets already in $DATA (hashes verified)"
    exit 0
fi

# --- Fashion-MNIST -------------------------------------------------------------------------------------
if ! fashion_ready; then
    if [ ! -f "$FM_SRC/train-images-idx3-ubyte.gz" ]; then
        [ "$FM_SRC" = /usr/share/datasets/fashion-mnist ] ||
            die "Fashion-MNIST not found in MCE_FASHION_MNIST_SRC=$FM_SRC"
        say "installing Debian package dataset-fashion-mnist"
        as_root apt-get update -qq || die "apt-get update failed"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null ||
            die "apt-get install dataset-fashion-mnist failed"
    fi
    mkdir -p "$DATA/fashion-mnist"
    for f in "${!FM_GZ_SHA[@]}"; do
        gz="$FM_SRC/$f.gz"
        [ -f "$gz" ] || die "missing $gz (package dataset-fashion-mnist incomplete?)"
        sha_ok "$gz" "${FM_GZ_SHA[$f]}" || die "$gz: SHA-256 $(sha_of "$gz") differs from the pinned ${FM_GZ_SHA[$f]}"
        out="$DATA/fashion-mnist/$f"
        sha_ok "$out" "${FM_SHA[$f]}" && continue
        gzip -dc "$gz" >"$out.tmp.$$" || die "gunzip $gz failed"
        sha_ok "$out.tmp.$$" "${FM_SHA[$f]}" || { rm -f "$out.tmp.$$"; die "$gz: unpacked file has an unexpected SHA-256"; }
        mv -f "$out.tmp.$$" "$out"
    done
    say "Fashion-MNIST ready in $DATA/fashion-mnist"
fi

# --- Animal-MNIST --------------------------------------------------------------------------------------
if ! animal_ready; then
    command -v python3 >/dev/null 2>&1 || { say "installing python3"; as_root apt-get update -qq;
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null; }
    if ! python3 -m pip --version >/dev/null 2>&1; then
        say "installing python3-pip"
        as_root apt-get update -qq || die "apt-get update failed"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null ||
            die "could not install python3-pip (needed to fetch animal-mnist from PyPI)"
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    say "downloading animal-mnist==$AM_VERSION (--no-deps)"
    python3 -m pip download --quiet --no-deps "animal-mnist==$AM_VERSION" -d "$tmp" >&2 ||
        die "pip download animal-mnist==$AM_VERSION failed (PyPI reachable?)"
    whl="$tmp/$AM_WHEEL"
    [ -f "$whl" ] || die "pip did not produce $AM_WHEEL"
    sha_ok "$whl" "$AM_WHEEL_SHA" || die "$AM_WHEEL: SHA-256 $(sha_of "$whl") differs from the pinned $AM_WHEEL_SHA"
    python3 - "$whl" "$tmp" <<'PY' || die "could not unpack $AM_WHEEL"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        with open(f"{sys.argv[2]}/{name}", "wb") as out:
            out.write(z.read(f"animal_mnist/data/Animal_MNIST/{name}"))
PY
    sha_ok "$tmp/animal_data_version_3.gz" "$AM_DATA_GZ_SHA" || die "animal_data_version_3.gz: unexpected SHA-256"
    sha_ok "$tmp/animal_label_version_3.gz" "$AM_LABEL_GZ_SHA" || die "animal_label_version_3.gz: unexpected SHA-256"
    python3 "$HERE/world/convert_animal_mnist.py" "$tmp/animal_data_version_3.gz" "$tmp/animal_label_version_3.gz" \
        "$tmp/animal-images-idx3-ubyte" "$tmp/animal-labels-idx1-ubyte" || die "Animal-MNIST conversion failed"
    mkdir -p "$DATA/animal-mnist"
    for f in "${!AM_SHA[@]}"; do
        sha_ok "$tmp/$f" "${AM_SHA[$f]}" || die "converted $f: SHA-256 $(sha_of "$tmp/$f") differs from the pinned ${AM_SHA[$f]}"
        cp "$tmp/$f" "$DATA/animal-mnist/$f.tmp.$$" && mv -f "$DATA/animal-mnist/$f.tmp.$$" "$DATA/animal-mnist/$f"
    done
    say "Animal-MNIST ready in $DATA/animal-mnist"
fi

fashion_ready && animal_ready || die "cache in $DATA still fails its hash check"
say "datasets ready in $DATA"
