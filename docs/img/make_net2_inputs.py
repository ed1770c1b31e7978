"""Draw docs/img/net2_inputs.png: the corrupted boundary maps Net2 learns to repair.

Run from the repository root: ``.venv/bin/python docs/img/make_net2_inputs.py``.
One synthetic target (``napari_grains.synth``, paper generator, seed 7) and
``napari_grains.train.corrupt_boundaries`` of it at graded severities, down to pure noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_grains.synth import SynthParams, generate_pair  # noqa: E402
from napari_grains.train import corrupt_boundaries  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    target = generate_pair(SynthParams(height=96, width=240, mean_diameter=(30.0, 30.0)),
                           seed=7).target
    sev = [0.0, 0.15, 0.35, 0.55, 0.75, 0.9, 1.0]
    fig, axes = plt.subplots(len(sev), 1, figsize=(6, 1.55 * len(sev)))
    for ax, s in zip(axes, sev):
        x = corrupt_boundaries(target, s, np.random.default_rng(11))
        ax.imshow(x, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("clean target (a fixed point for Net2)" if s == 0 else
                     f"severity {s:.2f}" + ("  (pure noise)" if s == 1 else ""),
                     fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "net2_inputs.png"
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
