"""How much of Net1's boundary does Net2 keep, iteration by iteration, on the authors' TEM image?

Run ``.venv/bin/python benchmarks/tem_kept.py [--models default paper DIR ...] [--iterations 12]``.
For each model it runs the pipeline (``napari_grains.extract.extract`` defaults, forced to run
all iterations) on ``napari_grains/data/TEM.png`` and prints, after each Net2 iteration, the
share of Net1's boundary pixels (threshold 0.2) still above 0.2 ("kept") and the boundary pixels
that are new (not in Net1's map), as a share of Net1's. A refiner that erases true boundaries
shows a falling "kept"; one that invents boundaries a growing "new". There is no ground truth
for this image: read it next to docs/img/tem_models.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from napari_grains.extract import ExtractParams, extract
from napari_grains.io import read_image
from napari_grains.nets import load_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["default", "paper"])
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    img = read_image(ROOT / "napari_grains" / "data" / "TEM.png").data
    for name in a.models:
        res = extract(img, load_model(name),
                      ExtractParams(max_iterations=a.iterations, tolerance=0.0))
        b0 = res.initial > 0.2
        n0 = max(int(b0.sum()), 1)
        print(f"{name}: scale {res.params.scale:.3f}, Net1 boundary pixels {n0}")
        for k, frame in enumerate(res.iterations, start=1):
            b = frame.astype(np.float32) / 255.0 > 0.2
            print(f"  iteration {k:2d}: kept {np.count_nonzero(b & b0) / n0:5.2f}  "
                  f"new {np.count_nonzero(b & ~b0) / n0:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
