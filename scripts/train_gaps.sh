#!/usr/bin/env bash
# The gap-closing Net2 experiments of docs/training.md ("Teaching Net2 to close gaps"), exact
# commands. None met the bar for becoming the default, so nothing is copied to models/.
# gap_b's epoch-2 weights were taken from out/gap_b/checkpoint/last_net2.safetensors while the
# run was still going (the run was then stopped); all other rows are the runs' kept (best) model.
# CPU only, 2 threads; each run took 0.5-4 min on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p out
T=("$PY" -m napari_grains train --net1-epochs 0 --threads 2 --quiet --val-iterations 1 3 10)
OLD=(--pairs 300 --size 128 256 --crop 96 96 --grain-size 8 80
     --data-cache out/default_pairs_300.npz --val-limit 10 --crops-per-pair 3)
NEW=(--pairs 400 --size 256 256 --crop 128 128 --grain-size 8 150
     --data-cache out/gap_pairs_400.npz --val-limit 12 --crops-per-pair 2)
GAPMIX=(--net2-mix net1=0.2 --net2-mix net1_gaps=0.35 --net2-mix gaps=0.2
        --net2-mix clean=0.1 --net2-mix corrupt=0.15)
"${T[@]}" --out out/gap_a --init models/refiner "${OLD[@]}" --net2-epochs 3 --batch-size 16 \
  --lr 5e-4 --decay-every 2 --unroll 8 --unroll-prob 0.7 "${GAPMIX[@]}" --pos-weight 5 --seed 2
"${T[@]}" --out out/gap_b --init models/refiner "${OLD[@]}" --net2-epochs 8 --batch-size 16 \
  --lr 5e-4 --decay-every 3 --unroll 8 --unroll-prob 0.7 "${GAPMIX[@]}" --gap-weight 10 --seed 3
"${T[@]}" --out out/gap_c --init models/refiner "${NEW[@]}" --net2-epochs 4 --batch-size 16 \
  --lr 3e-4 --decay-every 2 --unroll 8 --unroll-prob 0.8 \
  --net2-mix net1=0.3 --net2-mix net1_gaps=0.25 --net2-mix gaps=0.15 --net2-mix clean=0.2 \
  --net2-mix corrupt=0.1 --gap-weight 3 --seed 4
"${T[@]}" --out out/gap_d --init models/refiner "${NEW[@]}" --net2-epochs 4 --batch-size 16 \
  --lr 3e-4 --decay-every 2 --unroll 10 --unroll-prob 0.9 \
  --net2-mix net1=0.3 --net2-mix net1_gaps=0.25 --net2-mix gaps=0.1 --net2-mix clean=0.25 \
  --net2-mix corrupt=0.1 --gap-weight 6 --seed 5
"${T[@]}" --out out/gap_f --init out/gap_c "${OLD[@]}" --net2-epochs 2 --batch-size 16 \
  --lr 2e-4 --decay-every 2 --unroll 10 --unroll-prob 0.9 \
  --net2-mix net1=0.3 --net2-mix net1_gaps=0.25 --net2-mix gaps=0.15 --net2-mix clean=0.2 \
  --net2-mix corrupt=0.1 --gap-weight 3 --seed 7
# gap_g_e1: Net2 weights copied from out/gap_g2/checkpoint/last_net2.safetensors once epoch 1
# had been validated (history of 4 entries), then the run was stopped
"${T[@]}" --out out/gap_g2 --init out/gap_c --pairs 300 --size 128 256 --crop 96 96 \
  --grain-size 8 30 --data-cache out/gap_small_300.npz --val-limit 10 --crops-per-pair 2 \
  --net2-epochs 3 --batch-size 16 --lr 2e-4 --decay-every 2 --unroll 8 --unroll-prob 0.8 \
  --net2-mix net1=0.3 --net2-mix net1_gaps=0.25 --net2-mix gaps=0.15 --net2-mix clean=0.2 \
  --net2-mix corrupt=0.1 --gap-weight 3 --seed 8
for m in gap_a gap_c gap_d gap_f; do
  "$PY" -m napari_grains evaluate --model out/$m --data bench_data --limit 4 --out out/eval_$m
done
"$PY" -m napari_grains evaluate --model paper --data bench_data --limit 4 --out out/eval_paper4b
