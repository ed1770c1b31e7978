"""Draw docs/img/tem_models.png: the paper model and the default model on the authors' TEM image.

Run from the repository root: ``.venv/bin/python docs/img/make_tem_models.py``.
Top: the input (``napari_grains/data/TEM.png``, the authors' example, CC0). Then, for each model,
Net1's initial guess and the final boundaries (``napari_grains.extract.extract`` with its
defaults) in red over the image, with the number of Net2 iterations it ran.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from napari_grains.extract import extract  # noqa: E402
from napari_grains.io import read_image  # noqa: E402
from napari_grains.nets import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def overlay(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    rgb[mask] = (1.0, 0.1, 0.1)
    return rgb


def main() -> None:
    torch.set_num_threads(2)
    img = read_image(ROOT / "napari_grains" / "data" / "TEM.png").data
    rows = [("input: TEM.png (the authors' example)", np.repeat(img[..., None], 3, axis=2))]
    for name in ("paper", "default"):
        model = load_model(name)
        res = extract(img, model)
        rows.append((f"{name}: Net1 initial guess", np.repeat(res.initial[..., None], 3, axis=2)))
        rows.append((f"{name}: final boundaries ({res.n_iterations} Net2 iterations, "
                     f"{'converged' if res.converged else 'not converged'})",
                     overlay(img, res.boundaries)))
    h, w = img.shape
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, len(rows) * (12 * h / w + 0.35)))
    for ax, (title, im) in zip(axes, rows):
        ax.imshow(np.clip(im, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.axis("off")
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "tem_models.png"
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
