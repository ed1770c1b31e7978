"""How much of the true boundary can an image-reading method see? Recall by boundary contrast.

Run ``.venv/bin/python benchmarks/boundary_contrast.py [--data bench_data] [--sets paper96]
[--limit 20] [--models default paper]``.

For every ground-truth boundary pixel (the thinned target of a benchmark set,
``napari-grains evaluate --make-benchmark bench_data``) the *contrast* is the largest difference
between the median gray levels (of the noisy micrograph, 0..1) of the true grains that meet within
2 px of it. Where two neighbouring grains were given nearly the same random gray level by the
generator (the paper's concept: random gray per grain), the boundary between them is invisible
in the image: no edge detector responds, and a network can only guess it from the geometry of
the boundaries around it.

The script prints the share of true boundary length in contrast bins and, for each model, the
recall (the paper's Eq. 1: true boundary pixels with a predicted boundary within 2 px) in each
bin, from the whole pipeline (``napari_grains.extract.extract`` defaults). The last column,
"ceiling", is the Eq. 1 accuracy a method would reach if it found every boundary of contrast at
least 0.05 and none below: a rough bound for methods that do not guess.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_grains.evaluate import find_pairs, read_boundary_map, thin
from napari_grains.extract import extract
from napari_grains.io import read_image, to_gray_float
from napari_grains.nets import load_model

BINS = (0.0, 0.02, 0.05, 0.1, 0.2, 1.01)
VISIBLE = 0.05


def boundary_contrast(image: np.ndarray, labels: np.ndarray, boundary: np.ndarray,
                      radius: int = 2) -> np.ndarray:
    """Contrast (0..1) at each pixel of ``boundary``: the spread of the median gray levels of
    the grains of ``labels`` found within ``radius`` px of it."""
    n = int(labels.max())
    med = np.zeros(n + 1)
    idx = np.arange(1, n + 1)
    med[1:] = ndi.labeled_comprehension(image, labels, idx, np.median, float, 0.0)
    g = med[labels]
    size = 2 * radius + 1
    hi = ndi.maximum_filter(g, size=size)
    lo = ndi.minimum_filter(g, size=size)
    return (hi - lo)[boundary]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="bench_data")
    ap.add_argument("--sets", nargs="+", default=["paper96"])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--models", nargs="*", default=["default", "paper"])
    ap.add_argument("--tolerance", type=float, default=2.0)
    a = ap.parse_args(argv)
    models = {m: load_model(m) for m in a.models}
    for name in a.sets:
        pairs = find_pairs(Path(a.data) / name)[: a.limit]
        contrast, found = [], {m: [] for m in models}
        for pair in pairs:
            img = to_gray_float(read_image(pair.image).data)
            gt = thin(read_boundary_map(pair.gt))
            lab_path = Path(a.data) / name / "labels" / (pair.name + ".tif")
            labels = tifffile.imread(lab_path)
            contrast.append(boundary_contrast(img, labels, gt))
            for m, model in models.items():
                pred = extract(img, model=model).boundaries  # as given, like eq1_accuracy
                near = ndi.distance_transform_edt(~pred) <= a.tolerance
                found[m].append(near[gt])
        c = np.concatenate(contrast)
        print(f"\n{name}: {len(pairs)} images, {c.size} true boundary pixels")
        head = ["contrast", "share of length"] + [f"Eq.1 % {m}" for m in models]
        print("  ".join(f"{h:>16}" for h in head))
        for lo, hi in itertools.pairwise(BINS):
            sel = (c >= lo) & (c < hi)
            row = [f"{lo:.2f}-{min(hi, 1):.2f}", f"{100 * sel.mean():.1f} %"]
            for m in models:
                f = np.concatenate(found[m])
                row.append(f"{100 * f[sel].mean():.1f}" if sel.any() else "-")
            print("  ".join(f"{v:>16}" for v in row))
        row = ["all", "100 %"] + [f"{100 * np.concatenate(found[m]).mean():.1f}" for m in models]
        print("  ".join(f"{v:>16}" for v in row))
        print(f"ceiling (every boundary of contrast >= {VISIBLE} found, none below): "
              f"{100 * (c >= VISIBLE).mean():.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
