"""Make the bundled synthetic sample with known ground truth (napari_grains/data/synthetic_*).

Run from the repository root:

    .venv/bin/python scripts/make_sample_data.py

It draws one pair from :mod:`napari_grains.synth` (fixed seed, so the files are reproducible)
and writes:

* ``synthetic_image.tif``: the micrograph, 8-bit, with its pixel size (ImageJ calibration);
* ``synthetic_labels.tif``: the ground-truth grain labels (uint16, they tile the image);
* ``synthetic_boundaries.png``: the ground-truth boundary map (white = boundary);
* ``synthetic_params.json``: the generator's record (seed, parameters, values drawn) and the
  pixel size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_grains.io import atomic_write, write_image
from napari_grains.synth import SynthParams, generate_pair

SEED = 2026
PIXEL_SIZE_NM = 1.5
OUT = ROOT / "napari_grains" / "data"


def main() -> int:
    import tifffile

    params = SynthParams(height=288, width=496, mean_diameter=(40.0, 40.0), sigma=(0.3, 0.3))
    pair = generate_pair(params, SEED)
    image8 = np.clip(np.rint(pair.image * 255), 0, 255).astype(np.uint8)

    def _tif(arr, path):
        def _w(tmp):
            tifffile.imwrite(tmp, arr, imagej=True, resolution=(1 / PIXEL_SIZE_NM,) * 2,
                             metadata={"unit": "nm"}, compression="zlib")

        atomic_write(path, _w, overwrite=True)

    _tif(image8, OUT / "synthetic_image.tif")
    _tif(pair.labels.astype(np.uint16), OUT / "synthetic_labels.tif")  # ImageJ: no int32
    write_image(OUT / "synthetic_boundaries.png", pair.target.astype(np.uint8) * 255)
    record = {"pixel_size": PIXEL_SIZE_NM, "unit": "nm", "made_by": "scripts/make_sample_data.py",
              "synth": pair.params}
    text = json.dumps(record, indent=2, default=float)
    atomic_write(OUT / "synthetic_params.json", lambda t: t.write_text(text), overwrite=True)
    for p in sorted(OUT.glob("synthetic_*")):
        print(f"{p.relative_to(ROOT)}  {p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
