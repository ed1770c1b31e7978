"""Calibrate the two geometric clean-ups of a map on synthetic images that are not the benchmark's.

Run ``.venv/bin/python benchmarks/calibrate_postprocess.py [--model default]
[--grid EXT:SPLIT ...] [--cache DIR]``, e.g. ``--grid 1:0 0.5:0.05 1:0.05`` (the default grid is wider).

After thresholding, extraction prolongs loose boundary ends to the next boundary
(``ExtractParams.extend_ends``, in mean intercepts) and then splits merged grains at pairs of deep
concave corners (``ExtractParams.split_concave``, corner depth as a fraction of the region's
equivalent diameter). Both guess boundaries the image does not show, so both trade boundary
precision for recall and grain-labelling quality. This script extracts each tuning image once
with both off, then applies every ``extend_ends:split_concave`` pair of the grid to the map (what
``extract.finalize`` does) and prints, per set, the mean tolerance precision, recall and F1
(2 px), Eq. 1 accuracy, adjusted Rand index and absolute grain-count error, as
``napari-grains evaluate`` scores them (gaps up to 3 px closed before labelling).

The tuning images are drawn with the parameters of the benchmark's five sets
(``napari_grains.benchdata.SETS``) but from seeds 700_000_001..5, not the benchmark's
900_000_001..5: 20 paper96 images, 6 of each 512² set and 12 realistic ones. So the defaults are
not chosen on the figures they are judged by.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_grains.benchdata import SETS
from napari_grains.evaluate import score_boundaries
from napari_grains.extract import ExtractParams, clean_up, extract
from napari_grains.nets import load_model
from napari_grains.synth import generate_pair

COUNTS = {"paper96": 20, "large-large": 6, "large-medium": 6, "large-small": 6, "realistic": 12}
#: tuning seeds: each benchmark set's own seed minus this
SEED_SHIFT = 200_000_000
DEFAULT_GRID = ["0:0", "1:0", "0.5:0", "0:0.05", "0.5:0.03", "0.5:0.05", "0.5:0.07", "0.5:0.1",
                "1:0.05"]


def postprocess(b: np.ndarray, extend_ends: float, split_concave: float) -> np.ndarray:
    """The clean-ups of ``extract.finalize`` applied to a thresholded map."""
    return clean_up(b, ExtractParams(extend_ends=extend_ends, split_concave=split_concave))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--grid", nargs="+", default=DEFAULT_GRID, metavar="EXT:SPLIT")
    ap.add_argument("--cache", type=Path, default=None, metavar="DIR",
                    help="keep the extracted maps here and reuse them on the next run")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    grid = [tuple(float(x) for x in g.split(":")) for g in a.grid]
    model = load_model(a.model)
    for name, count in COUNTS.items():
        params = SETS[name].make_params()
        maps = []
        t0 = time.perf_counter()
        for i in range(count):
            cached = a.cache / f"{a.model}-{name}-{i}.npz" if a.cache else None
            if cached is not None and cached.exists():
                z = np.load(cached)
                maps.append((z["pred"], z["gt"]))
                continue
            pair = generate_pair(params, seed=SETS[name].seed - SEED_SHIFT, index=i)
            res = extract(pair.image, model, keep_iterations=False, extend_ends=0.0,
                          split_concave=0.0)
            maps.append((res.boundaries, pair.target))
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(cached, pred=res.boundaries, gt=pair.target)
        print(f"\n{name}: {count} images, extracted in {time.perf_counter() - t0:.0f} s")
        print(f"{'ext:split':>10} {'P':>6} {'R':>6} {'F1':>6} {'Eq1 %':>6} {'ARI':>6} "
              f"{'|count err| %':>14}")
        for ext, split in grid:
            rows = []
            for pred, gt in maps:
                s = score_boundaries(postprocess(pred, ext, split), gt)
                rows.append((s.boundary.precision, s.boundary.recall, s.boundary.f1,
                             s.eq1_accuracy, s.ari, 100 * abs(s.grain_count_error)))
            m = np.mean(rows, axis=0)
            print(f"{ext:g}:{split:g}".rjust(10)
                  + "".join(f" {v:6.3f}" for v in m[:3]) + f" {m[3]:6.1f} {m[4]:6.3f}"
                  + f" {m[5]:14.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
