"""Two inference-side variants of Net2's iteration, measured like ``net2_iterations.py``.

Run ``.venv/bin/python benchmarks/net2_variants.py binarize [--threshold 0.2]`` or
``.venv/bin/python benchmarks/net2_variants.py mask [--threshold 0.2] [--radius 4]``
(first ``--limit`` images of each benchmark set, 50 iterations, ``--model`` default).

- ``binarize``: Net2's input is thresholded to 0/1 before every iteration.
- ``mask``: every iterate is multiplied by Net1's map ``> threshold`` dilated by ``radius`` px,
  so Net2 may draw only near what Net1 saw.

Neither is in the pipeline: docs/training.md ("GPU runs") reports what they gave and why they
were not adopted. The variants are monkeypatched onto ``load_model`` / ``extract.iter_net2``
here; nothing in the package changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import net2_iterations as ni

from napari_grains import extract as ex
from napari_grains import nets


def binarized_loader(threshold: float):
    def load(name, *a, **k):
        m = nets.load_model(name, *a, **k)
        orig = m.refine

        def refine(t, *aa, **kk):
            return orig((t > threshold).to(t.dtype), *aa, **kk)

        m.refine = refine
        return m

    return load


def masked_iter_net2(threshold: float, radius: int):
    def anchored(initial, model, params=None, **_):
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate((np.asarray(initial) > threshold).astype(np.uint8), k)
        mask = mask.astype(np.float32)
        p = (params or ex.ExtractParams()).validated()
        prev = np.asarray(initial, np.float32) * mask
        h, w = prev.shape
        for i in range(1, int(p.max_iterations) + 1):
            x, _ = ex._pad_to(prev[None], model.multiple)
            y = ex._run_tiled(model.refine, x, p, model.multiple)[:h, :w] * mask
            change = float(np.abs(y - prev).sum()) / (h * w)
            yield i, np.ascontiguousarray(y), change, change < p.tolerance
            prev = y
            if change < p.tolerance:
                return

    return anchored


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variant", choices=["binarize", "mask"])
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--radius", type=int, default=4)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", type=Path, default=Path("bench_data"))
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.variant == "binarize":
        ni.load_model = binarized_loader(a.threshold)
    else:
        ex.iter_net2 = masked_iter_net2(a.threshold, a.radius)
    res = ni.run(a.data, [a.model], a.limit, 50, None)
    print(ni.report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
