#!/usr/bin/env bash
# Creates .venv with the Python reference tools (golden fixture generators, PyTorch benchmarks): the
# CPU build of torch pinned (an unpinned torch pulls gigabytes of CUDA wheels) plus diffusers & co.
# Not needed to build or test mce.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MCE_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r scripts/requirements.txt
echo "$venv ready" >&2
