#!/usr/bin/env bash
# The FLUX engine on a committed FLUX-architecture model (the golden `dev` fixture: guidance embeddings,
# 2 double + 3 single blocks): its layout and size, one forward pass checked against diffusers' float64
# output, and a 4-step sample from its BFL-layout copy; then PNG samples from the small world's base model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product mce >&2
bin=.build/release/mce
G=Tests/Fixtures/golden
out=${MCE_OUT:-out/engine-demo}
mkdir -p "$out"
"$bin" info --model "$G/dev"
"$bin" forward --model "$G/dev" --inputs "$G/dev.io.safetensors" --output "$out/forward.safetensors"
"$bin" sample --model "$G/dev_bfl.safetensors" --config "$G/dev/config.json" --inputs "$G/dev.sample.safetensors" \
    --steps 4 --output "$out/sample.safetensors"
"$bin" compare "$out/forward.safetensors" output "$G/dev.io.safetensors" output_float64_reference
"$bin" compare "$out/sample.safetensors" sample "$G/dev.sample.safetensors" sample_float64_reference
# The small world's committed text-to-image model: PNG samples for two prompts.
"$bin" generate --prompt "a red cat on a blue background" --prompt "a yellow sneaker on a purple background" \
    --count 4 --guidance 3 --out "$out/generate"
echo "outputs in $out/"
