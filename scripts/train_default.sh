#!/usr/bin/env bash
# The exact command that trained models/default (see docs/training.md).
# CPU only (2 shared cores); about an hour of wall time on this project's build machine.
# Training runs into out/default_run (resumable: rerun this script after a stop), then the
# model files (not the checkpoint) are copied to models/default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p out
nice -n 5 "$PY" -m napari_grains train \
  --out out/default_run \
  --init paper \
  --pairs 600 --size 128 256 --crop 96 96 --grain-size 8 80 \
  --net1-epochs 4 --net2-epochs 10 \
  --batch-size 16 --lr 3e-4 --net2-lr 1e-3 --decay-every 4 --decay-factor 0.5 \
  --val-limit 16 --val-iterations 1 4 16 \
  --seed 0 --device auto --threads 2 \
  --data-cache out/default_pairs.npz \
  ${RESUME:+--resume out/default_run} \
  "$@"
mkdir -p models/default
cp out/default_run/net1.safetensors out/default_run/net2.safetensors out/default_run/card.json \
  models/default/
