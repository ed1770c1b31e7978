#!/usr/bin/env bash
# The exact commands that trained models/refiner (see docs/training.md, "The shipped
# refiner model"). CPU only (2 cores shared with other jobs).
# Net1 is the paper's, kept as it is (--init paper, --net1-epochs 0: there was no CPU time to
# fine-tune it); Net2 (U-Net with batch norm) is trained from scratch in stage 1, then fine-tuned
# in stage 2 with deeper / more frequent unrolling (up to 8 of its own iterations on 90 % of the
# batches), because after stage 1 it still slowly erased soft Net1 boundaries when iterated.
# Each stage is resumable (RESUME=1 scripts/train_refiner.sh). The model files of stage 2 (not
# the checkpoints) are copied to models/refiner.
# (Stage 1 was started with --net2-epochs 5 and stopped after epoch 4 for lack of CPU time, then
# finished with RESUME=1 and --net2-epochs 4, which is what this file now says.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p out
DATA=(--pairs 300 --size 128 256 --crop 96 96 --grain-size 8 80
      --data-cache out/default_pairs_300.npz --val-limit 10 --val-iterations 1 3 10
      --device auto --threads 2)
# stage 1: Net2 from scratch on the paper's Net1
nice -n 5 "$PY" -m napari_grains train --out out/default_run --init paper "${DATA[@]}" \
  --net1-epochs 0 --net2-epochs 4 --crops-per-pair 3 \
  --batch-size 16 --lr 1e-3 --decay-every 2 --decay-factor 0.5 --seed 0 \
  ${RESUME:+--resume out/default_run}
# stage 2: fine-tune Net2 on its own unrolled outputs
nice -n 5 "$PY" -m napari_grains train --out out/default_ft --init out/default_run "${DATA[@]}" \
  --net1-epochs 0 --net2-epochs 2 --crops-per-pair 3 \
  --batch-size 16 --lr 5e-4 --decay-every 2 --decay-factor 0.5 --unroll 8 --unroll-prob 0.9 \
  --seed 1 ${RESUME:+--resume out/default_ft}
mkdir -p models/refiner
cp out/default_ft/net1.safetensors out/default_ft/net2.safetensors out/default_ft/card.json \
  models/refiner/
