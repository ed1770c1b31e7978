"""Condition dropout for a conditioned Net2: a short experiment (docs/training.md, "GPU runs").

    .venv/bin/python scripts/try_cond_dropout.py INIT_MODEL OUT_DIR [--dropout 0.5] [--epochs 5]

Fine-tunes the conditioned Net2 of INIT_MODEL (``in_channels`` 2, e.g. run h of
``scripts/train_v3.sh WORKDIR round3``) with the Net1 channel of its input zeroed for a share
``--dropout`` of each batch, so that it must also use its state channel. Same data, split and
validation as round 3 (1,500 realistic 256² pairs, ``out/v2/pairs_1500.npz`` as cache). It
prints the Net2 validation after each epoch (F1 and ARI after 1, 4, 16 and 50 iterations from
Net1, and F1 from the truth: "id"). Not a training option of the package: it patches
``train._net2_batch`` here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from napari_grains import train as tr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("init")
    ap.add_argument("out")
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=5)
    a = ap.parse_args(argv)
    orig = tr._net2_batch

    def batch(run, idx, rng):
        x, t = orig(run, idx, rng)
        if x.shape[1] == 2 and a.dropout > 0:
            drop = torch.from_numpy(rng.random(x.shape[0]) < a.dropout).to(x.device)
            x = x.clone()
            x[drop, 1] = 0.0
        return x, t

    tr._net2_batch = batch
    card = json.loads((Path(a.init) / "card.json").read_text())
    cfg = tr.TrainConfig(
        n_pairs=1500, size=(256, 256), crop=(128, 128), grain_size_range=(8.0, 120.0),
        data_cache="out/v2/pairs_1500.npz", val_limit=32, threads=2, device="auto",
        card={k: card[k] for k in ("format", "name", "net1", "net2", "preprocessing",
                                   "inference") if k in card},
        init=a.init, net1_epochs=0, net2_epochs=a.epochs, net2_lr=3e-4, lr_decay_every=2,
        seed=11, net2_val_iterations=(1, 4, 16, 50), net2_val_ari_weight=1.0,
        net2_gap_weight=2.0, batch_size=16, crops_per_pair=2, net2_unroll=16,
        net2_unroll_prob=0.7,
        net2_mix={"net1": 0.35, "net1_gaps": 0.2, "gaps": 0.1, "clean": 0.15, "corrupt": 0.15,
                  "noise": 0.05})
    for ev in tr.iter_train(cfg, a.out):
        if isinstance(ev, tr.Validation) and ev.stage == "net2":
            m = ev.metrics
            print(ev.epoch, round(ev.error, 4), "best" if ev.best else "",
                  "F1", [round(m[f"f1_it{k}"], 3) for k in (1, 4, 16, 50)],
                  "id", [round(m[f"identity_f1_it{k}"], 3) for k in (1, 4, 16, 50)],
                  "ARI", [round(m[f"ari_it{k}"], 3) for k in (1, 4, 16, 50)], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
