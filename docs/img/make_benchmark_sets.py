"""Draw docs/img/benchmark_sets.png: image 0 of each benchmark set with its ground truth.

Run: .venv/bin/python docs/img/make_benchmark_sets.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from napari_grains import benchdata, synth


def main() -> None:
    """Generate image 0 of every set (same seeds as the benchmark) and draw them."""
    names = list(benchdata.SETS)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6.2), dpi=100)
    for j, name in enumerate(names):
        s = benchdata.SETS[name]
        pair = synth.generate_pair(s.make_params(), s.seed, index=0)
        axes[0, j].imshow(pair.image, cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(pair.target, cmap="gray")
        axes[0, j].set_title(f"{name}\n{s.description}", fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("ground truth")
    fig.tight_layout()
    out = Path(__file__).with_name("benchmark_sets.png")
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
