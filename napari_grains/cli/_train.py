"""``napari-grains train``: train Net1 and Net2 on synthetic pairs and write a model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_grains.errors import GrainsError

HELP = "train Net1 + Net2 on synthetic data and write a model folder"

DESCRIPTION = """\
Train the two networks on concept-oriented synthetic pairs (the paper's Methods D): Net1 maps the
edge stack to a boundary map; Net2 is trained to be a stable refiner (Net1's outputs, its own
earlier outputs, corrupted and clean targets). The best checkpoint by validation error is kept.

The --out folder becomes a model folder (net1.safetensors, net2.safetensors, card.json) usable as
  napari-grains extract image.tif --model DIR
Ctrl-C stops cleanly: the best model so far stays in DIR and DIR/checkpoint/ lets you continue:
  napari-grains train --resume DIR [--net2-epochs 20]

Examples:
  napari-grains train --out my_model --pairs 1000 --epochs 10
  napari-grains train --out my_model --init paper --net1-epochs 5 --net2-epochs 20
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to ``parser``."""
    parser.add_argument("--out", metavar="DIR", help="model folder to write (default with "
                        "--resume: the resumed folder); a folder holding another run's "
                        "checkpoint is refused")
    parser.add_argument("--resume", metavar="DIR", help="continue the training saved in DIR")
    g = parser.add_argument_group("data")
    g.add_argument("--pairs", type=int, help="number of synthetic pairs (default 1000)")
    g.add_argument("--size", type=int, nargs=2, metavar=("ROWS", "COLS"),
                   help="synthetic image size, multiples of 16 (default 96 496)")
    g.add_argument("--crop", type=int, nargs=2, metavar=("ROWS", "COLS"),
                   help="training crop size, multiples of 16 (default 96 96)")
    g.add_argument("--preset", choices=["realistic", "paper"],
                   help="synthetic-data preset (default realistic)")
    g.add_argument("--grain-size", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="draw each pair's mean grain diameter (pixels) from MIN..MAX")
    g.add_argument("--synth", action="append", default=[], metavar="NAME=VALUE",
                   help="override a SynthParams field (JSON value), repeatable")
    g.add_argument("--data-cache", metavar="FILE.npz",
                   help="keep the generated pairs in this file and reuse them")
    g = parser.add_argument_group("model")
    g.add_argument("--init", metavar="MODEL",
                   help="start from this model's weights (paper, default or a folder)")
    g.add_argument("--net2-arch", choices=["unet", "paper"],
                   help="Net2 architecture (default unet: skip connections)")
    g.add_argument("--card", metavar="CARD.json", help="architecture card (overrides --net2-arch)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="epochs of each stage")
    g.add_argument("--net1-epochs", type=int, help="epochs of Net1 (0 keeps its start weights)")
    g.add_argument("--net2-epochs", type=int, help="epochs of Net2")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="initial Adam learning rate (default 1e-3)")
    g.add_argument("--net2-lr", type=float, help="initial learning rate of Net2")
    g.add_argument("--decay-every", type=int, help="epochs between learning-rate halvings")
    g.add_argument("--decay-factor", type=float, help="learning-rate factor (default 0.5)")
    g.add_argument("--loss", choices=["mse_dice", "mse", "bce_dice", "bce", "mse_dice_cldice"])
    g.add_argument("--crops-per-pair", type=int, help="random crops per pair and epoch")
    g.add_argument("--unroll", type=int, metavar="K",
                   help="Net2: up to K no-grad applications before the trained one (default 4)")
    g.add_argument("--unroll-prob", type=float, metavar="P",
                   help="Net2: share of batches that are unrolled (default 0.5)")
    g.add_argument("--net2-mix", action="append", default=[], metavar="SOURCE=SHARE",
                   help="Net2 input source share, repeatable; sources: net1, clean, corrupt, "
                   "noise, gaps, net1_gaps (given ones replace the default mix "
                   "net1=0.4 clean=0.15 corrupt=0.4 noise=0.05)")
    g.add_argument("--pos-weight", type=float,
                   help="weight of boundary pixels in the MSE/BCE term (default 3)")
    g.add_argument("--gap-weight", type=float,
                   help="Net2: loss weight of true boundary pixels its input misses "
                   "(default 1 = off; e.g. 10 teaches it to close gaps)")
    g.add_argument("--seed", type=int)
    g = parser.add_argument_group("validation")
    g.add_argument("--val-limit", type=int, help="validation images used (default 64)")
    g.add_argument("--val-iterations", type=int, nargs="+", metavar="K",
                   help="Net2 iteration counts scored in validation (default 1 4 16)")
    g.add_argument("--val-ari-weight", type=float, metavar="W",
                   help="weight of grain closure (1 - ARI after those iterations from "
                        "Net1's output) in Net2's validation error (default 1; 0 = F1 only)")
    g = parser.add_argument_group("hardware")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


_MAP = {
    "pairs": "n_pairs", "size": "size", "crop": "crop", "grain_size": "grain_size_range",
    "data_cache": "data_cache", "init": "init", "net1_epochs": "net1_epochs",
    "net2_epochs": "net2_epochs", "batch_size": "batch_size", "lr": "lr", "net2_lr": "net2_lr",
    "decay_every": "lr_decay_every", "decay_factor": "lr_decay_factor", "loss": "loss",
    "seed": "seed", "device": "device", "threads": "threads",
    "crops_per_pair": "crops_per_pair", "val_limit": "val_limit",
    "unroll": "net2_unroll", "unroll_prob": "net2_unroll_prob",
    "val_iterations": "net2_val_iterations", "pos_weight": "pos_weight",
    "gap_weight": "net2_gap_weight", "val_ari_weight": "net2_val_ari_weight",
}


def _config_from_args(args: argparse.Namespace):
    from napari_grains.train import TrainConfig, default_card

    given: dict = {}
    for opt, key in _MAP.items():
        v = getattr(args, opt, None)
        if v is not None:
            given[key] = v
    if args.epochs is not None:
        given.setdefault("net1_epochs", args.epochs)
        given.setdefault("net2_epochs", args.epochs)
    if args.preset is not None:
        given["synth_preset"] = None if args.preset == "paper" else args.preset
    if args.synth:
        over = {}
        for item in args.synth:
            name, sep, value = item.partition("=")
            if not sep:
                raise GrainsError(f"--synth {item!r}: write NAME=VALUE, e.g. --synth noise=0.5")
            try:
                over[name.strip()] = json.loads(value)
            except json.JSONDecodeError:
                over[name.strip()] = value
        given["synth"] = over
    if args.net2_mix:
        mix = {}
        for item in args.net2_mix:
            name, sep, value = item.partition("=")
            try:
                mix[name.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep:
                raise GrainsError(f"--net2-mix {item!r}: write SOURCE=SHARE, e.g. "
                                  "--net2-mix net1_gaps=0.3")
        given["net2_mix"] = mix
    if args.card:
        try:
            given["card"] = json.loads(Path(args.card).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise GrainsError(f"cannot read the card {args.card}: {exc}") from exc
    elif args.net2_arch is not None:
        given["card"] = default_card(args.net2_arch)
    return given, TrainConfig


def run(args: argparse.Namespace) -> int:
    """Train, showing progress; return 0 when done, 130 when interrupted."""
    from napari_grains import train as tr

    given, TrainConfig = _config_from_args(args)
    if args.out is None and args.resume is None:
        raise GrainsError("give --out DIR (the model folder to write) or --resume DIR.")
    if args.resume is not None and Path(args.resume).name == "checkpoint" and (
            Path(args.resume) / "state.json").is_file():
        args.resume = str(Path(args.resume).parent)  # the run's folder, not its checkpoint
    out = Path(args.out or args.resume)
    if args.resume is not None:
        saved = tr.load_checkpoint_config(args.resume)
        cfg = TrainConfig.from_dict({**saved.to_dict(), **given})
    else:
        cfg = TrainConfig(**given)
    gen = tr.iter_train(cfg, out, resume=args.resume)
    bar = None
    dbar = None
    try:
        from tqdm import tqdm

        for ev in gen:
            if args.quiet:
                continue
            if isinstance(ev, tr.DataProgress):
                if dbar is None or dbar.desc != ev.what:
                    if dbar is not None:
                        dbar.close()
                    dbar = tqdm(total=ev.total, desc=ev.what, unit="", leave=False)
                dbar.n = ev.done
                dbar.refresh()
            elif isinstance(ev, tr.Step):
                if dbar is not None:
                    dbar.close()
                    dbar = None
                total = ev.n_batches * (cfg.net1_epochs if ev.stage == "net1"
                                        else cfg.net2_epochs)
                if bar is None or bar.desc != ev.stage:
                    if bar is not None:
                        bar.close()
                    bar = tqdm(total=total, desc=ev.stage, unit="step")
                bar.n = ev.epoch * ev.n_batches + ev.batch + 1
                bar.set_postfix(epoch=ev.epoch + 1, loss=f"{ev.loss:.4f}", lr=f"{ev.lr:.2g}",
                                refresh=False)
                bar.refresh()
            elif isinstance(ev, tr.Validation):
                shown = {k: round(v, 4) for k, v in ev.metrics.items()}
                when = "start weights" if ev.epoch < 0 else f"epoch {ev.epoch + 1}"
                tqdm.write(f"{ev.stage} {when}: validation error {ev.error:.4f}"
                           f"{'  (best)' if ev.best else ''}  {shown}")
            elif isinstance(ev, tr.Done):
                if bar is not None:
                    bar.close()
                print(f"model written to {ev.path} ({ev.seconds / 60:.1f} min); "
                      f"test: {json.dumps(ev.test_metrics, default=float)}")
    except KeyboardInterrupt:
        gen.close()
        if bar is not None:
            bar.close()
        print(f"stopped: best model so far in {out}; continue with "
              f"napari-grains train --resume {out}")
        return 130
    finally:
        for b in (bar, dbar):
            if b is not None:
                b.close()
    return 0
