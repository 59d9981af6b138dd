#!/usr/bin/env bash
# Reproduce the shipped shapes-blip-caption and shapes-blip-vqa models, then measure them on
# held-out scenes through vislang's public API (vislang.caption / vislang.ask).
# Takes about 20 minutes on a 2-core CPU. Usage: bash recipes/shapes-blip.sh [WORKDIR]
set -euo pipefail
work="${1:-/tmp/vislang-shapes-blip}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
assets="$repo/src/vislang/assets/models"

# Training scenes: seed 5150, drawn fresh every step (64 per step); one vision tower, two heads.
python "$repo/recipes/train_shapes_blip.py" train --out "$work" \
  --steps 3500 --batch-size 64 --lr 1e-3 --warmup 100 --width 128 --vision-layers 4 \
  --text-layers 2 --patch 8 --threads 2 --bf16
for name in shapes-blip-caption shapes-blip-vqa; do
  rm -rf "$assets/$name" && cp -r "$work/$name" "$assets/$name"
done

# Held-out scenes: seed 77777, never used in training; numbers go to eval.json beside each model.
python "$repo/recipes/train_shapes_blip.py" eval -n 500 \
  --caption-model shapes-blip-caption --vqa-model shapes-blip-vqa \
  --json-out "$assets/shapes-blip-caption/eval.json" "$assets/shapes-blip-vqa/eval.json"
