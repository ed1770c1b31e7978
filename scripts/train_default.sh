#!/usr/bin/env bash
# The exact command that trained models/default (see docs/training.md).
# CPU only (2 cores shared with other jobs). Net1 is the paper's, kept as it is (--init paper,
# --net1-epochs 0: there was no CPU time to fine-tune it); Net2 is trained from scratch.
# Training runs into out/default_run (resumable: RESUME=1 scripts/train_default.sh), then the
# model files (not the checkpoint) are copied to models/default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p out
nice -n 5 "$PY" -m napari_grains train \
  --out out/default_run \
  --init paper \
  --pairs 300 --size 128 256 --crop 96 96 --grain-size 8 80 \
  --net1-epochs 0 --net2-epochs 5 --crops-per-pair 3 \
  --batch-size 16 --lr 1e-3 --decay-every 2 --decay-factor 0.5 \
  --val-limit 10 --val-iterations 1 3 10 \
  --seed 0 --device auto --threads 2 \
  --data-cache out/default_pairs_300.npz \
  ${RESUME:+--resume out/default_run} \
  "$@"
mkdir -p models/default
cp out/default_run/net1.safetensors out/default_run/net2.safetensors out/default_run/card.json \
  models/default/
