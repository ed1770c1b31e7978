"""Benchmark the grain measurement and the batch ``run``.

    .venv/bin/python benchmarks/bench_measure.py                 # both parts
    .venv/bin/python benchmarks/bench_measure.py --part measure  # 2048² map, ~5,000 grains
    .venv/bin/python benchmarks/bench_measure.py --part run --n-images 50 --workers 1 2

Part ``measure``: a seeded Voronoi tessellation of a 2048×2048 image with 5,000 seeds, its
one-pixel boundaries as the boundary map; times :func:`label_grains`, :func:`grain_table`,
:func:`summarize` and the whole :func:`measure`, best of ``--repeat`` runs, and prints grains
measured per second. Part ``run``: ``--n-images`` tiles of the bundled synthetic sample
(flipped and shifted so they differ) through :func:`napari_grains.batch.run_batch` (extract with
the default model and settings, measure, all exports) with each ``--workers`` count; prints
images per second. Times depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def voronoi_boundaries(size: int = 2048, n_seeds: int = 5000, seed: int = 0) -> np.ndarray:
    """One-pixel boundaries of a seeded Voronoi tessellation."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.int32)
    pts = rng.integers(0, size, (n_seeds, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, n_seeds + 1)
    _, (ri, ci) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    lab = seeds[ri, ci]
    b = np.zeros(lab.shape, bool)
    b[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    b[1:, :] |= lab[1:, :] != lab[:-1, :]
    return b


def _best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench_measure(repeat: int, size: int, n_seeds: int) -> None:
    from napari_grains.grains import grain_table, label_grains
    from napari_grains.measure import measure
    from napari_grains.stats import summarize

    b = voronoi_boundaries(size, n_seeds)
    t_label, labels = _best(lambda: label_grains(b), repeat)
    t_table, table = _best(lambda: grain_table(labels, pixel_size=2.0, unit="nm"), repeat)
    t_sum, _ = _best(lambda: summarize(table, labels, pixel_size=2.0, unit="nm"), repeat)
    t_all, m = _best(lambda: measure(b, pixel_size=2.0, unit="nm"), repeat)
    n = len(table)
    print(f"measure: {size}x{size} boundary map, {n} grains (best of {repeat})")
    print(f"  label_grains  {t_label:7.3f} s")
    print(f"  grain_table   {t_table:7.3f} s   {n / t_table:9.0f} grains/s")
    print(f"  summarize     {t_sum:7.3f} s")
    print(f"  measure()     {t_all:7.3f} s   {m.n_grains / t_all:9.0f} grains/s (all of it)")


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` different tiles of the bundled synthetic sample, with its pixel size."""
    import tifffile

    img = tifffile.imread(ROOT / "napari_grains" / "data" / "synthetic_image.tif")
    h, w = size
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        r = int(rng.integers(0, img.shape[0] - h + 1))
        c = int(rng.integers(0, img.shape[1] - w + 1))
        tile = img[r:r + h, c:c + w]
        if i % 2:
            tile = tile[:, ::-1]
        if (i // 2) % 2:
            tile = tile[::-1]
        p = folder / f"tile_{i:03d}.tif"
        tifffile.imwrite(p, np.ascontiguousarray(tile), imagej=True,
                         resolution=(1 / 1.5, 1 / 1.5), metadata={"unit": "nm"})
        paths.append(p)
    return paths


def bench_run(n_images: int, workers: list[int], size: tuple[int, int]) -> None:
    from napari_grains.batch import run_batch

    tmp = Path(tempfile.mkdtemp(prefix="bench_run_"))
    try:
        (tmp / "in").mkdir()
        make_images(tmp / "in", n_images, size)
        print(f"run: {n_images} images of {size[0]}x{size[1]} px (default model and settings)")
        for k in workers:
            out = tmp / f"out{k}"
            t0 = time.perf_counter()
            res = run_batch([tmp / "in"], out, workers=k, progress=False)
            dt = time.perf_counter() - t0
            ok = sum(r["status"] == "done" for r in res.rows)
            print(f"  workers={k}: {dt:7.1f} s  {ok / dt:6.2f} images/s  ({ok} measured, "
                  f"{len(res.failed)} failed)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["measure", "run", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=2048, help="measure: map side (px)")
    ap.add_argument("--grains", type=int, default=5000, help="measure: Voronoi seeds")
    ap.add_argument("--n-images", type=int, default=50)
    ap.add_argument("--image-size", type=int, nargs=2, default=(128, 192), metavar=("H", "W"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPU cores available, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    if args.part in ("measure", "all"):
        bench_measure(args.repeat, args.size, args.grains)
    if args.part in ("run", "all"):
        bench_run(args.n_images, args.workers, tuple(args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
