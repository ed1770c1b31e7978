#!/usr/bin/env bash
# Net2 trained for stability under iteration, and Net1 trained longer: the runs made on a lent
# GPU (an H100) in one call of at most 10 minutes, several variants side by side.
# Usage: scripts/train_v3.sh WORKDIR [smoke|round1|round2|round3]
#   WORKDIR (a new folder for each mode: training refuses a folder holding another run's
#   checkpoint) gets the data cache, one folder per run and one log per run.
# Each run is stopped by SIGINT after $BUDGET seconds at the latest: training then keeps the
# best checkpoint so far (the card says "stopped"), so pick epochs that fit.
#
# The runs all start from models/default (Net1 of out/v2/s1, Net2 of gap_c) on the same 1,500
# realistic pairs (256x256, grains 8..120 px) as scripts/train_default.sh:
#   a: Net2 fine-tuned, unrolled up to 48 iterations, mse_dice            (stability alone)
#   b: as a, loss mse_dice_cldice                                          (+ centre-line Dice)
#   c: a wider Net2 (8-16-32-64) from scratch, mse_dice_cldice
#   d: Net1 trained on (lower learning rate) and then Net2 as b
# Round 2 (after round 1: no epoch of a or b beat the start weights on validation, and epoch 2
# collapsed in every run at learning rate 3e-4), Net2 fine-tunes at 1e-4 for 10 epochs:
#   e: mse_dice_cldice, unrolled up to 16 iterations
#   f: mse_dice, unrolled up to 16 iterations                              (control for e)
#   g: mse_dice_cldice, unrolled up to 48 iterations
# Round 3 (after round 2: every fine-tune traded closure for F1; Net2 sees only the map, so it
# cannot tell a true gap from a spur), a *conditioned* Net2 that also sees Net1's map at every
# iteration (in_channels 2), from scratch, lr 1e-3, unrolled up to 16 iterations:
#   h: mse_dice        i: mse_dice_cldice        j: wider (8-16-32-64), mse_dice
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:?work dir}
MODE=${2:-round1}
PY=${PY:-python3}
BUDGET=${BUDGET:-420}
mkdir -p "$W"
"$PY" - "$W" <<'PYCARD'
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
c = json.loads(Path("napari_grains/models/default/card.json").read_text())
base = {k: c[k] for k in ("format", "name", "net1", "net2", "preprocessing", "inference")
        if k in c}
json.dump(base, open(w / "card_default.json", "w"), indent=1)
wide = json.loads(json.dumps(base))
wide["net2"]["params"].update(encoder_widths=[8, 16, 32, 64], bridge_width=64,
                              decoder_widths=[64, 32, 16, 16])
json.dump(wide, open(w / "card_wide2.json", "w"), indent=1)
for name, c in (("card_cond.json", base), ("card_cond_wide.json", wide)):
    c = json.loads(json.dumps(c))
    c["net2"]["params"]["in_channels"] = 2
    json.dump(c, open(w / name, "w"), indent=1)
PYCARD
if [ "$MODE" = smoke ]; then
  DATA=(--pairs 160 --size 256 256 --crop 128 128 --grain-size 8 120
        --data-cache "$W/pairs_smoke.npz" --val-limit 12 --threads 3 --device "${DEVICE:-cuda}")
  EP=1
else
  DATA=(--pairs 1500 --size 256 256 --crop 128 128 --grain-size 8 120
        --data-cache "$W/pairs_1500.npz" --val-limit 32 --threads 3 --device "${DEVICE:-cuda}")
  EP=${EP:-12}
fi
MIX=(--net2-mix net1=0.35 --net2-mix net1_gaps=0.2 --net2-mix gaps=0.1 --net2-mix clean=0.15
     --net2-mix corrupt=0.15 --net2-mix noise=0.05)
N2=(--unroll 48 --unroll-prob 0.7 --val-iterations 1 4 16 50 --val-ari-weight 1
    --gap-weight 2 --batch-size 16 --crops-per-pair 2 "${MIX[@]}")
t0=$(date +%s)
# the data once (both stages 0 epochs: writes the cache and a throw-away model)
"$PY" -m napari_grains train --out "$W/gen" --init default --card "$W/card_default.json" \
  "${DATA[@]}" --net1-epochs 0 --net2-epochs 0 > "$W/gen.log" 2>&1
echo "data: $(( $(date +%s) - t0 )) s"
run() {  # name, then train options (each run's card is named after it)
  local n=$1; shift
  local args=() a c
  for a in "$@"; do args+=("$a"); done
  for ((c = 0; c < ${#args[@]}; c++)); do
    if [ "${args[c]}" = --card ]; then
      "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); d['name']=sys.argv[3]; json.dump(d, open(sys.argv[2], 'w'), indent=1)" \
        "${args[c+1]}" "$W/card_$n.json" "v3_$n"
      args[c+1]="$W/card_$n.json"
    fi
  done
  set -- "${args[@]}"
  ( rc=0; timeout -s INT "$BUDGET" "$PY" -m napari_grains train --out "$W/$n" --init default \
      "${DATA[@]}" "$@" > "$W/$n.log" 2>&1 || rc=$?
    echo "$n exit $rc after $(( $(date +%s) - t0 )) s" ) &
}
if [ "$MODE" = round3 ]; then
  R3=(--net1-epochs 0 --net2-epochs 10 --net2-lr 1e-3 --decay-every 4 --seed 11
      --val-iterations 1 4 16 50 --val-ari-weight 1 --gap-weight 2 --batch-size 16
      --crops-per-pair 2 --unroll 16 --unroll-prob 0.7 "${MIX[@]}")
  run h --card "$W/card_cond.json" "${R3[@]}" --loss mse_dice
  run i --card "$W/card_cond.json" "${R3[@]}" --loss mse_dice_cldice
  run j --card "$W/card_cond_wide.json" "${R3[@]}" --loss mse_dice
elif [ "$MODE" = round2 ]; then
  R2=(--card "$W/card_default.json" --net1-epochs 0 --net2-epochs 10 --net2-lr 1e-4
      --decay-every 4 --seed 11 --val-iterations 1 4 16 50 --val-ari-weight 1 --gap-weight 2
      --batch-size 16 --crops-per-pair 2 --unroll-prob 0.7 "${MIX[@]}")
  run e "${R2[@]}" --loss mse_dice_cldice --unroll 16
  run f "${R2[@]}" --loss mse_dice --unroll 16
  run g "${R2[@]}" --loss mse_dice_cldice --unroll 48
else
  run a --card "$W/card_default.json" --net1-epochs 0 --net2-epochs "$EP" --net2-lr 3e-4 \
    --decay-every $(( EP / 3 + 1 )) --loss mse_dice --seed 11 "${N2[@]}"
  run b --card "$W/card_default.json" --net1-epochs 0 --net2-epochs "$EP" --net2-lr 3e-4 \
    --decay-every $(( EP / 3 + 1 )) --loss mse_dice_cldice --seed 11 "${N2[@]}"
  run c --card "$W/card_wide2.json" --net1-epochs 0 --net2-epochs "$EP" --net2-lr 1e-3 \
    --decay-every $(( EP / 3 + 1 )) --loss mse_dice_cldice --seed 11 "${N2[@]}"
  run d --card "$W/card_default.json" --net1-epochs $(( EP * 2 / 3 )) --net2-epochs $(( EP / 2 )) \
    --lr 3e-4 --net2-lr 3e-4 --decay-every $(( EP / 3 + 1 )) --loss mse_dice_cldice --seed 11 \
    "${N2[@]}"
fi
wait
echo "all done: $(( $(date +%s) - t0 )) s"
