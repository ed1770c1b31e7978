"""Sample data for napari's File › Open Sample › napari-grains menu.

* **TEM image (Saleh et al.)**: the authors' plan-view TEM micrograph of a metal line, the
  example input of the paper (Saleh, Croes, Ceric, De Wolf, Zahedmanesh, arXiv 2504.14782),
  shipped as ``napari_grains/data/TEM.png`` under CC0 1.0. Its pixel size is not published, so
  the layer is in pixels.
* **Synthetic TEM image + ground truth**: one image of the paper's concept-oriented generator
  (:func:`napari_grains.synth.generate_pair`, fixed seed, 96 × 496) with its true boundaries
  (a Labels layer, 1 = boundary, the same convention as the extraction dock's output) and its
  true grains (hidden).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from napari_grains._reader import micrograph_layer_data
from napari_grains.io import read_image

#: Seed of the synthetic sample; fixed so the sample is the same for everyone.
SYNTHETIC_SEED = 2504

LayerData = tuple[Any, ...]

TEM_CREDIT = (
    "TEM image: A. S. Saleh, K. Croes, H. Ceric, I. De Wolf, H. Zahedmanesh, "
    "arXiv 2504.14782; CC0 1.0."
)


def tem_path() -> Path:
    """Path of the authors' TEM sample image inside the installed package."""
    return Path(str(resources.files("napari_grains") / "data" / "TEM.png"))


def tem_sample() -> list[LayerData]:
    """The authors' TEM micrograph as a gray image layer (credited in its metadata).

    Returns
    -------
    list of tuple
        One image layer, ``name="TEM (Saleh et al.)"``.
    """
    data, kwargs, kind = micrograph_layer_data(read_image(tem_path()), name="TEM (Saleh et al.)")
    kwargs["metadata"]["credit"] = TEM_CREDIT
    return [(data, kwargs, kind)]


def synthetic_sample(seed: int = SYNTHETIC_SEED) -> list[LayerData]:
    """A synthetic TEM-like image with its ground-truth boundaries and grains.

    Parameters
    ----------
    seed : int
        Seed of :func:`napari_grains.synth.generate_pair`.

    Returns
    -------
    list of tuple
        ``synthetic TEM`` (image, float32 in [0, 1], 96 × 496), ``synthetic TEM ground truth``
        (labels, uint8, 1 = boundary) and ``synthetic TEM grains`` (labels, int32, hidden).
    """
    from napari_grains.synth import generate_pair

    pair = generate_pair(seed=seed)
    meta = {"pixel_size": None, "unit": None, "path": None,
            "source": {"format": "synthetic", "synth": pair.params}}
    return [
        (pair.image, {"name": "synthetic TEM", "metadata": meta}, "image"),
        (pair.target.astype(np.uint8),
         {"name": "synthetic TEM ground truth", "opacity": 0.6,
          "metadata": {"ground_truth": True, "seed": seed}}, "labels"),
        (pair.labels.astype(np.int32),
         {"name": "synthetic TEM grains", "visible": False,
          "metadata": {"ground_truth": True, "seed": seed}}, "labels"),
    ]
