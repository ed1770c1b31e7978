"""Speed and fidelity of the synthetic-data generator.

    .venv/bin/python benchmarks/bench_synth.py              speed: pairs/s at 96x496 and 1024x1024
    .venv/bin/python benchmarks/bench_synth.py --count 300  a quicker pool run than the paper's 3000
    .venv/bin/python benchmarks/bench_synth.py --sizes      cell ECD vs the requested lognormal
    .venv/bin/python benchmarks/bench_synth.py --calibrate  the table behind ``match_cells``

Speed is reported three ways: wall-clock pairs/s in one process, pairs/s per CPU-second of that
process (the per-core throughput, less sensitive to other load), and the wall time of a whole
data set written by the command line's code path (``save_pairs`` on all cores). The machine's
load average is printed first: figures taken while others use the cores are inflated.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_grains.synth import (
    CELL_SIGMA_TABLE,
    SynthParams,
    generate_pair,
    interior_ecd,
    save_pairs,
)

CLEAN = {"overlay": False, "salt_pepper": False, "gaussian": False, "poisson": False, "median": False}


def _in_process(params: SynthParams, n: int, seed: int = 1) -> tuple[float, float]:
    generate_pair(params, seed, index=10**6)  # warm-up (imports, caches)
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        generate_pair(params, seed, index=i)
    return n / (time.perf_counter() - w0), n / (time.process_time() - c0)


def speed(args: argparse.Namespace) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores available: {cores}; load average (1, 5, 15 min): "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("(a load average above the core count means other work shares the cores: "
          "figures below are then pessimistic)\n")
    for label, params, n in (("96x496 (paper defaults)", SynthParams(), args.n_small),
                             ("1024x1024 (paper stages, grains 20-80 px)",
                              SynthParams(height=1024, width=1024), args.n_large),
                             ("256x256 realistic preset", SynthParams.realistic(), args.n_small // 2)):
        wall, cpu = _in_process(params, n)
        print(f"{label:44s} one process: {wall:7.2f} pairs/s wall, "
              f"{cpu:7.2f} pairs per CPU-second ({n} pairs)")
    if args.count:
        n1 = min(300, args.count)
        with tempfile.TemporaryDirectory() as tmp:
            c0 = time.process_time()
            save_pairs(Path(tmp) / "one", n1, SynthParams(), seed=0, workers=1)
            per_core = n1 / (time.process_time() - c0)
        print(f"\nwriting pairs in one process (generate + PNG/TIFF + manifest): {per_core:.1f} "
              f"pairs per CPU-second -> on an idle machine, {args.count} pairs on {cores} cores "
              f"would take about {args.count / (per_core * cores):.0f} s (estimate)")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            save_pairs(Path(tmp) / "set", args.count, SynthParams(), seed=0, workers=0)
            dt = time.perf_counter() - t0
        print(f"{args.count} pairs at 96x496 written as PNG/TIFF + manifest on all {cores} "
              f"cores (the 'napari-grains synth' path): {dt:.1f} s = {args.count / dt:.1f} pairs/s"
              f"  [goal: 3000 pairs in < 60 s]")


def _measure(params: SynthParams, n_images: int, seed: int) -> dict:
    ecds, wts, gaps = [], [], []
    for i in range(n_images):
        pair = generate_pair(params, seed, index=i)
        e, w = interior_ecd(pair.labels)
        ecds.append(e)
        wts.append(w)
        gaps.append(pair.params["drawn"]["packing"]["gap_fraction"])
    e, w = np.concatenate(ecds), np.concatenate(wts)
    w = w / w.sum()
    lm = float(np.sum(w * np.log(e)))
    return {"n": e.size, "mean": float(np.sum(w * e)),
            "sigma": math.sqrt(float(np.sum(w * (np.log(e) - lm) ** 2))),
            "gap": float(np.mean(gaps))}


def sizes(args: argparse.Namespace) -> None:
    print("Cell ECD of generated label images vs the requested lognormal "
          "(interior grains, Miles-Lantuejoul weights; 384x384 images)\n")
    print(f"{'mean_d':>7} {'sigma':>6} | {'grains':>6} {'mean ECD':>9} {'err':>6} | "
          f"{'sigma ln':>8} {'err':>6} | {'gaps':>5}")
    for md in (8.0, 16.0, 40.0):
        for s in (0.15, 0.3, 0.5):
            n_img = {8.0: 2, 16.0: 5, 40.0: 16}[md]
            p = SynthParams(height=384, width=384, mean_diameter=(md, md), sigma=(s, s), **CLEAN)
            m = _measure(p, n_img, seed=101)
            print(f"{md:7.1f} {s:6.2f} | {m['n']:6d} {m['mean']:9.2f} "
                  f"{100 * (m['mean'] / md - 1):+5.1f}% | {m['sigma']:8.3f} "
                  f"{m['sigma'] - s:+6.3f} | {100 * m['gap']:4.1f}%")


def calibrate(args: argparse.Namespace) -> None:
    print("sigma of ln(cell ECD) for circles of a given sigma (match_cells=False); "
          f"current table: {CELL_SIGMA_TABLE}\n")
    for s in CELL_SIGMA_TABLE[0]:
        row = []
        for md, n_img in ((16.0, 8), (40.0, 16)):
            p = SynthParams(height=384, width=384, mean_diameter=(md, md), sigma=(s, s),
                            match_cells=False, **CLEAN)
            m = _measure(p, n_img, seed=11)
            row.append(f"d={md:4.0f}: cell sigma {m['sigma']:.3f} mean ratio "
                       f"{m['mean'] / md:.3f} ({m['n']} grains)")
        print(f"circle sigma {s:.2f}  " + "   ".join(row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", action="store_true", help="grain-size fidelity table")
    ap.add_argument("--calibrate", action="store_true", help="cell vs circle sigma table")
    ap.add_argument("--count", type=int, default=3000,
                    help="pairs in the all-cores data-set run (0: skip; default 3000)")
    ap.add_argument("--n-small", type=int, default=200, help="pairs timed in one process")
    ap.add_argument("--n-large", type=int, default=5, help="1024x1024 pairs timed")
    args = ap.parse_args()
    if args.sizes:
        sizes(args)
    elif args.calibrate:
        calibrate(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
