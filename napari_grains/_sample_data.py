"""Sample data for napari's File › Open Sample › napari-grains menu.

* **TEM image (Saleh et al.)**: the authors' plan-view TEM micrograph of a metal line, the
  example input of the paper (Saleh, Croes, Ceric, De Wolf, Zahedmanesh, arXiv 2504.14782),
  shipped as ``napari_grains/data/TEM.png`` under CC0 1.0. Its pixel size is not published, so
  the layer is in pixels.
* **Synthetic TEM image + ground truth**: the bundled image of the paper's concept-oriented
  generator (``napari_grains/data/synthetic_*``, made by ``scripts/make_sample_data.py``: 288 ×
  496, nominal pixel size 1.5 nm) with its true boundaries (a Labels layer, 1 = boundary, the
  same convention as the extraction dock's output) and its true grains (hidden).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from napari_grains._napari_reader import micrograph_layer_data
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


def _data_path(name: str) -> Path:
    return Path(str(resources.files("napari_grains") / "data" / name))


def synthetic_sample(seed: int | None = None) -> list[LayerData]:
    """A synthetic TEM-like image with its ground-truth boundaries and grains.

    Parameters
    ----------
    seed : int, optional
        None (the menu's choice): the bundled sample ``napari_grains/data/synthetic_*`` made by
        ``scripts/make_sample_data.py`` (288 × 496, nominal pixel size 1.5 nm), or, when those
        files are missing, :func:`napari_grains.synth.generate_pair` with seed
        :data:`SYNTHETIC_SEED`. An int: a fresh pair from ``generate_pair`` with that seed
        (96 × 496, in pixels).

    Returns
    -------
    list of tuple
        ``synthetic TEM`` (image, float32 in [0, 1]), ``synthetic TEM ground truth`` (labels,
        uint8, 1 = boundary) and ``synthetic TEM grains`` (labels, int32, hidden).
    """
    image_file = _data_path("synthetic_image.tif")
    files = [image_file, _data_path("synthetic_boundaries.png"),
             _data_path("synthetic_labels.tif")]
    truth_meta: dict[str, Any] = {"ground_truth": True}
    if seed is None and all(f.is_file() for f in files):
        import tifffile

        image, kwargs, _ = micrograph_layer_data(read_image(image_file), name="synthetic TEM")
        target = read_image(files[1]).data > 0.5
        labels = tifffile.imread(files[2]).astype(np.int32)
        params_file = _data_path("synthetic_params.json")
        if params_file.is_file():
            kwargs["metadata"]["source"]["synth"] = json.loads(params_file.read_text())
        truth_meta["files"] = [f.name for f in files]
    else:
        from napari_grains.synth import generate_pair

        seed = SYNTHETIC_SEED if seed is None else int(seed)
        pair = generate_pair(seed=seed)
        image, target, labels = pair.image, pair.target, pair.labels.astype(np.int32)
        kwargs = {"name": "synthetic TEM",
                  "metadata": {"pixel_size": None, "unit": None, "path": None,
                               "source": {"format": "synthetic", "synth": pair.params}}}
        truth_meta["seed"] = seed
    geometry = {k: kwargs[k] for k in ("scale", "units") if k in kwargs}
    return [
        (image, kwargs, "image"),
        (target.astype(np.uint8),
         {"name": "synthetic TEM ground truth", "opacity": 0.6, "metadata": dict(truth_meta),
          **geometry}, "labels"),
        (labels,
         {"name": "synthetic TEM grains", "visible": False, "metadata": dict(truth_meta),
          **geometry}, "labels"),
    ]
