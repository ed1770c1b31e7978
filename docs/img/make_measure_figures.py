"""Make the pictures of docs/measurement.md (docs/img/measure_*.png).

    .venv/bin/python docs/img/make_measure_figures.py

For the bundled TEM sample (the paper authors' TEM.png, a metal line) and the bundled synthetic
sample: extract the boundaries with the default model and settings, measure them exactly as
``napari-grains run --demo`` does, and write the grain-size histogram and the overlay.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from napari_grains.extract import extract
    from napari_grains.io import read_image
    from napari_grains.measure import measure

    torch.set_num_threads(2)
    data = ROOT / "napari_grains" / "data"
    samples = {
        "tem": (data / "TEM.png", {"line_axis": "x"}, "TEM.png (metal line, no pixel size)"),
        "synthetic": (data / "synthetic_image.tif", {}, "synthetic sample (1.5 nm/px)"),
    }
    for key, (path, opts, title) in samples.items():
        mg = read_image(path)
        res = extract(mg)
        m = measure(res.boundaries, pixel_size=mg.pixel_size, unit=mg.unit, image=mg.data,
                    **opts)
        kw = {"overwrite": True}
        m.to_histogram_png(HERE / f"measure_{key}_histogram.png", bins=12,
                           title=f"{title}: {m.n_grains} grains", **kw)
        m.to_overlay_png(HERE / f"measure_{key}_overlay.png",
                         title=f"{title}: boundaries (red), grain numbers "
                               "(yellow: cut by the border)", **kw)
        h = m.headline()
        print(f"{path.name}: {h['n_grains']} grains, mean ECD {h['mean_ecd']:.4g} {h['unit']}, "
              f"G {h['G_planimetric']} / {h['G_intercept']}")
        if key == "synthetic":
            print("  measured grains holding several true ones:", _merged(m.labels))
    return 0


def _merged(labels) -> dict:
    """Measured grain -> number of true grains (of at least 150 px) more than half inside it."""
    import numpy as np
    import tifffile

    truth = tifffile.imread(ROOT / "napari_grains" / "data" / "synthetic_labels.tif")
    areas = np.bincount(truth.ravel())
    out = {}
    for k in range(1, int(labels.max()) + 1):
        ids, counts = np.unique(truth[labels == k], return_counts=True)
        n = sum(1 for i, c in zip(ids, counts) if i > 0 and c > 0.5 * areas[i] and c > 150)
        if n >= 2:
            out[k] = n
    return out


if __name__ == "__main__":
    sys.exit(main())
