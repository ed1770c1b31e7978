"""Make docs/img/extract_tem_modes.png and docs/img/extract_tem_stages.png.

Run from the repository root::

    .venv/bin/python docs/img/make_extract_images.py

Uses the authors' sample TEM image (napari_grains/data/TEM.png) and the converted paper model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent


def _overlay(gray: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=-1).copy()
    rgb[boundaries] = (1.0, 0.0, 0.0)
    return rgb


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from napari_grains.extract import ExtractParams, extract, mean_intercept
    from napari_grains.io import read_image
    from napari_grains.nets import load_model

    torch.set_num_threads(2)
    model = load_model("paper")
    gray = read_image(ROOT / "napari_grains" / "data" / "TEM.png").data
    runs = [
        ("paper mode (squeezed to 96×496 and back)", ExtractParams(mode="paper")),
        ("native, scale 1", ExtractParams(mode="native", scale=1.0)),
        ("native, scale 2", ExtractParams(mode="native", scale=2.0)),
        ("native, scale auto", ExtractParams(mode="native", scale="auto")),
    ]
    results = []
    for title, p in runs:
        res = extract(gray, model, p)
        results.append(res)
        print(f"{title}: scale {res.preprocessed.scale[0]:.3f}, {res.n_iterations} iterations "
              f"(converged {res.converged}), mean intercept {mean_intercept(res.boundaries):.1f} px")

    script = extract(gray, model, ExtractParams.authors_script())
    print(f"paper mode, the script's uint8 convergence rule: {script.n_iterations} iterations "
          f"(converged {script.converged})")

    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 1.9 * len(runs)))
    for ax, (title, _), res in zip(axes, runs, results):
        ax.imshow(_overlay(gray, res.boundaries), interpolation="nearest")
        ax.set_title(f"{title} — scale {res.preprocessed.scale[0]:.2f}, "
                     f"{res.n_iterations} Net2 iterations", fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(OUT / "extract_tem_modes.png", dpi=100)
    plt.close(fig)

    res = results[-1]
    k = res.n_iterations
    panels = [
        ("edge stack (R Sobel, G LoG, B Canny)", res.edges_original()),
        ("Net1 initial guess", res.initial),
        (f"Net2 iteration {max(1, k // 2)}", res.iterations[max(0, k // 2 - 1)] / 255.0),
        (f"Net2 iteration {k} (final)", res.iterations[-1] / 255.0),
        ("boundaries (> 0.2, closed) over the image", _overlay(gray, res.boundaries)),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 1.9 * len(panels)))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title} — native mode, scale {res.preprocessed.scale[0]:.2f}", fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(OUT / "extract_tem_stages.png", dpi=100)
    plt.close(fig)
    print("wrote", OUT / "extract_tem_modes.png", "and", OUT / "extract_tem_stages.png")


if __name__ == "__main__":
    main()
