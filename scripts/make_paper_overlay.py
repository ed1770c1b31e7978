"""Make ``docs/img/paper_tem_overlay.png``: the converted ``paper`` model on the authors' TEM image.

Reproduces the authors' inference script (paper mode: the image squeezed to 96×496, MATLAB
``edge()`` stack, Net1, Net2 iterated under the script's convergence rule, threshold 0.2, closing
with a disk of radius 2, back to the original size) and draws, from top to bottom like Fig. 2a of
the paper: the TEM image, the edge stack, Net1's initial guess, four equidistant Net2
iterations, and the final boundaries in red over the image. It prints the number of Net2
iterations and the convergence curve under both rules (the script's and the paper's).

Run from the repository root::

    .venv/bin/python scripts/make_paper_overlay.py [--image ../shared/paper/TEM.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from napari_grains.extract import ExtractParams, extract
from napari_grains.io import atomic_write, read_image
from napari_grains.nets import load_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=str(ROOT.parent / "shared" / "paper" / "TEM.png"))
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "paper_tem_overlay.png"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    img = read_image(args.image).data
    model = load_model("paper")
    results = {}
    for rule in ("script", "paper"):
        params = ExtractParams(mode="paper", convergence=rule)
        res = extract(img, model, params)
        results[rule] = res
        curve = ", ".join(f"{c:.4f}" for c in res.changes)
        print(f"{rule:6s} rule: {res.n_iterations} Net2 iterations, converged={res.converged}; "
              f"changes: {curve}")
    res = results["script"]

    k = res.n_iterations
    picks = sorted({int(v) for v in np.rint(np.linspace(1, k, 4))})
    panels = [("TEM image (authors' TEM.png)", img, "gray"),
              ("edge stack: Sobel (R), LoG (G), Canny (B)", res.edges_original(), None),
              ("Net1: initial guess", res.initial, "gray")]
    panels += [(f"Net2 iteration {i} of {k}", res.iterations[i - 1], "gray") for i in picks]
    over = np.dstack([img] * 3)
    over[res.boundaries] = (1.0, 0.0, 0.0)
    panels.append(("final boundaries (red) over the image", over, None))

    h, w = img.shape
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, len(panels) * (10 * h / w + 0.35)))
    for ax, (title, a, cmap) in zip(axes, panels):
        ax.imshow(a, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.axis("off")
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100)

    atomic_write(args.out, write)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
