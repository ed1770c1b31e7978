"""Write the measured figures into a trained model's card.json (scripts/train_default.sh, train_refiner.sh).

Usage::

    .venv/bin/python scripts/finalize_model_card.py EVAL_MODEL_DIR EVAL_PAPER_DIR \
        [--stability out/net2_iterations.json] [--command "..."]

``EVAL_*_DIR`` are ``--out`` folders of ``napari-grains evaluate`` (their ``metrics.json``) for the
default model and for the ``paper`` model on the same benchmark images. The card keeps its
weights' sha256s (only card.json is rewritten, atomically); its name becomes the folder's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_grains.extract import ExtractParams
from napari_grains.io import atomic_write

KEYS = ("precision", "recall", "f1", "eq1_accuracy", "vi", "ari", "abs_grain_count_error",
        "abs_mean_size_error", "n_iterations", "seconds", "n_images")


def _sets(folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    return {name: {k: v.get(k) for k in KEYS} for name, v in m["sets"].items()}


def _extraction(*folders: Path) -> dict:
    """The extraction settings the evaluations ran with: what each metrics.json records
    (``settings.extraction``; for older evaluations, the library's defaults overridden by
    the recorded options). The two evaluations must agree, or the card would compare unlike
    figures."""
    keys = ("extend_ends", "split_concave", "threshold", "closing_radius", "max_iterations",
            "convergence", "mode", "scale")
    found = []
    for folder in folders:
        settings = json.loads((folder / "metrics.json").read_text()).get("settings", {})
        # newer evaluations store every setting; older ones only what was overridden
        ran = settings.get("extraction") or {k: settings.get(k, getattr(ExtractParams(), k))
                                             for k in keys}
        found.append({k: ran.get(k) for k in keys})
    if any(f != found[0] for f in found[1:]):
        raise SystemExit(f"the evaluations ran with different extraction settings: {found}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("eval_default", type=Path)
    ap.add_argument("eval_paper", type=Path)
    ap.add_argument("--model", type=Path, default=Path("models/refiner"))
    ap.add_argument("--stability", type=Path)
    ap.add_argument("--command", default="")
    ap.add_argument("--stage1", type=Path,
                    help="card.json of the first training stage, recorded in this card")
    ap.add_argument("--description", help="the card's description (default: the refiner's)")
    a = ap.parse_args(argv)
    card_path = a.model / "card.json"
    card = json.loads(card_path.read_text())
    card["name"] = a.model.name
    card["description"] = a.description or (
        "The authors' Net1 (unchanged, from models/paper) and a "
        "Net2 trained by napari_grains.train as a stable refiner (U-Net skips, trained on Net1 "
        "outputs, its own unrolled outputs, clean and corrupted targets). "
        "Trained by scripts/train_refiner.sh.")
    if a.stage1 and a.stage1.exists():
        first = json.loads(a.stage1.read_text())["training"]
        card["training"]["stages"] = [
            {"stage": 1, "config": first["config"], "wall_seconds": first["wall_seconds"],
             "hardware": first["hardware"], "test": first.get("test"),
             "history": first.get("history")},
            {"stage": 2, "note": "this card's training section (init = stage 1's model)"},
        ]
        card["training"]["wall_seconds_total"] = round(
            first["wall_seconds"] + card["training"]["wall_seconds"], 1)
        card["init"] = {"model": "paper (stage 1) -> stage 1 model (stage 2)", "nets": ["net1"],
                        "mean_intercept_px": None}
    ours, paper = _sets(a.eval_default), _sets(a.eval_paper)
    card["metrics"] = {
        "benchmark": {
            "command": a.command,
            "data": "napari-grains evaluate --make-benchmark bench_data (benchmark version 1)",
            "tolerance_px": 2.0,
            # the map's finishing steps change every figure; record the ones used
            "extraction": _extraction(a.eval_default, a.eval_paper),
            "this_model": ours,
            "paper_model": paper,
            "wins": {s: {k: (ours[s][k] > paper[s][k]) for k in ("f1", "eq1_accuracy")}
                     | {k: (ours[s][k] < paper[s][k]) for k in ("vi", "abs_grain_count_error")}
                     | {"ari": ours[s]["ari"] > paper[s]["ari"]}
                     for s in ours if s in paper},
        }
    }
    if a.stability and a.stability.exists():
        st = json.loads(a.stability.read_text())
        card["metrics"]["net2_iterations"] = {
            "command": "benchmarks/net2_iterations.py",
            "f1_from_net1": {k: v["from_net1_f1"] for k, v in st.items()},
            "f1_from_truth": {k: v["from_truth_f1"] for k, v in st.items()},
        }
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(card_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(json.dumps(card["metrics"]["benchmark"]["wins"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
