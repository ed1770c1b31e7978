"""Make the synthetic-data pictures in docs/img/ (all from fixed seeds).

    .venv/bin/python scripts/make_contact_sheets.py

writes

* ``docs/img/synth_stages.png``    one pair through the paper's stages (cf. the paper's Fig. 1a)
* ``docs/img/synth_paper.png``     eight pairs with the paper's defaults
* ``docs/img/synth_realistic.png`` six pairs of the ``SynthParams.realistic()`` preset
* ``docs/img/synth_concepts.png``  one grain structure with each realism concept alone
* ``docs/img/synth_sizes.png``     cell ECD histograms against the requested lognormal
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from napari_grains.synth import (
    Realism,
    SynthParams,
    contact_sheet,
    generate_pair,
)

OUT = ROOT / "docs" / "img"
NOISE_OFF = {"salt_pepper": False, "gaussian": False, "poisson": False, "median": False}


def _overlay(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    rgb = np.repeat(image[..., None], 3, axis=2)
    rgb[target] = (1.0, 0.1, 0.1)
    return rgb


def stages(seed: int = 4) -> Path:
    base = SynthParams(mean_diameter=(45, 45), sigma=(0.35, 0.35))
    clean = generate_pair(dataclasses.replace(base, overlay=False, **NOISE_OFF), seed)
    over = generate_pair(dataclasses.replace(base, **NOISE_OFF), seed)
    noisy = generate_pair(dataclasses.replace(base, median=False), seed)
    final = generate_pair(base, seed)
    H, W = clean.labels.shape
    panels = [
        ("1-2  lognormal circles after dynamic packing (image frame dashed; domain padded)",
         None),
        ("3  power diagram: grain labels (convex cells)", "labels"),
        (f"4  target: boundaries, {base.boundary_thickness} px", clean.target),
        ("5  concept (ii): a random gray level per grain", clean.image),
        ("6  concept (iii): + 0.1 x image flipped both ways (not in the target)", over.image),
        ("7  salt & pepper 0.05, Gaussian var 0.01, Poisson", noisy.image),
        ("7  5x5 median filter: the training input", final.image),
    ]
    fig = Figure(figsize=(7.2, 1.55 * len(panels)), dpi=120)
    rng = np.random.default_rng(0)
    for k, (title, data) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, k + 1)
        ax.set_title(title, fontsize=7.5, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
        if data is None:
            from matplotlib.patches import Circle, Rectangle

            pad = 40
            for x, y, r in clean.circles:
                if -pad - r < x < W + pad + r and -pad - r < y < H + pad + r:
                    ax.add_patch(Circle((x, y), r, fill=True, alpha=0.35, lw=0.4,
                                        ec="k", fc=rng.random(3)))
            ax.add_patch(Rectangle((-0.5, -0.5), W, H, fill=False, ls="--", lw=0.8))
            ax.set_xlim(-pad, W + pad)
            ax.set_ylim(H + pad, -pad)
            ax.set_aspect("equal")
        elif isinstance(data, str):
            cmap = matplotlib.colormaps["tab20"]
            ax.imshow(cmap((clean.labels * 7) % 20), interpolation="nearest")
        elif data.dtype == bool:
            ax.imshow(data, cmap="gray_r", interpolation="nearest")
        else:
            ax.imshow(data, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    fig.tight_layout()
    path = OUT / "synth_stages.png"
    fig.savefig(path)
    return path


def concepts(seed: int = 8) -> Path:
    base = SynthParams(height=160, width=160, mean_diameter=(45, 45), sigma=(0.3, 0.3))
    strong = {
        "blur": {"blur_sigma": (1.8, 1.8)},
        "illumination": {"illumination_strength": (0.35, 0.35)},
        "low_contrast": {"contrast": (0.2, 0.2)},
        "texture": {"texture_amplitude": (0.06, 0.06), "grain_gradient": (0.25, 0.25)},
        "bend_contours": {"bend_fraction": (0.6, 0.6), "bend_depth": (0.45, 0.45)},
        "twins": {"twin_fraction": (0.5, 0.5)},
        "grooves": {"groove_depth": (0.5, 0.5), "groove_width": (1.5, 1.5)},
    }
    cases = [("paper stages only", base.realism)]
    for name in Realism.CONCEPTS:
        cases.append((name.replace("_", " "),
                      dataclasses.replace(base.realism, **{name: 1.0}, **strong[name])))
    fig = Figure(figsize=(8.0, 4.9), dpi=120)
    for k, (title, realism) in enumerate(cases):
        pair = generate_pair(dataclasses.replace(base, realism=realism), seed)
        ax = fig.add_subplot(2, 4, k + 1)
        if title == "twins":
            ax.imshow(_overlay(pair.image, pair.target), interpolation="nearest")
            title += " (+ target, red)"
        else:
            ax.imshow(pair.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle("Realism concepts, each alone, on the same grains and noise (seed "
                 f"{seed})", fontsize=9)
    fig.tight_layout()
    path = OUT / "synth_concepts.png"
    fig.savefig(path)
    return path


def sizes(seed: int = 101) -> Path:
    """Histograms of the cells' ECD against the requested lognormal."""
    import math

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_synth import weighted_ecd

    cases = ((12.0, 0.25, 4), (16.0, 0.5, 6), (40.0, 0.3, 16))
    fig = Figure(figsize=(8.0, 2.6), dpi=120)
    for k, (md, s, n_img) in enumerate(cases):
        p = SynthParams(height=384, width=384, mean_diameter=(md, md), sigma=(s, s),
                        overlay=False, **NOISE_OFF)
        parts = [weighted_ecd(generate_pair(p, seed, index=i).labels) for i in range(n_img)]
        ecd = np.concatenate([e for e, _ in parts])
        w = np.concatenate([w for _, w in parts])
        ax = fig.add_subplot(1, 3, k + 1)
        bins = np.geomspace(ecd.min() * 0.9, ecd.max() * 1.1, 30)
        ax.hist(ecd, bins=bins, weights=w / w.sum() / np.diff(bins)[np.digitize(ecd, bins) - 1],
                color="0.7", label=f"cells ({ecd.size} grains)")
        x = np.geomspace(bins[0], bins[-1], 200)
        mu = math.log(md) - s * s / 2
        pdf = np.exp(-((np.log(x) - mu) ** 2) / (2 * s * s)) / (x * s * math.sqrt(2 * math.pi))
        ax.plot(x, pdf, "r-", lw=1.2, label="requested lognormal")
        ax.set_xscale("log")
        ticks = [t for t in (2, 5, 10, 20, 50, 100, 200) if bins[0] <= t <= bins[-1]]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"mean {md:.0f} px, sigma {s}", fontsize=8)
        ax.set_xlabel("equivalent circle diameter (px)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, frameon=False)
    fig.suptitle("Cell ECD of generated labels vs the requested distribution (interior grains, "
                 "Miles-Lantuejoul weights)", fontsize=8)
    fig.tight_layout()
    path = OUT / "synth_sizes.png"
    fig.savefig(path)
    return path


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    print(stages())
    print(concepts())
    print(sizes())
    paper = [generate_pair(SynthParams(), 0, index=i) for i in range(8)]
    print(contact_sheet(paper, OUT / "synth_paper.png",
                        title="Paper defaults: 96x496, seed 0, pairs 0-7 "
                              "(napari-grains synth --count 8 --seed 0 ...)"))
    real = [generate_pair(SynthParams.realistic(), 0, index=i) for i in range(6)]
    print(contact_sheet(real, OUT / "synth_realistic.png",
                        title="SynthParams.realistic(): 256x256, seed 0, pairs 0-5 "
                              "(napari-grains synth --preset realistic ...)"))


if __name__ == "__main__":
    main()
