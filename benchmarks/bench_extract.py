"""Benchmark of the extraction pipeline: speed, memory, and which mode/scale finds the grains.

Run from the repository root::

    .venv/bin/python benchmarks/bench_extract.py              # speed + peak memory
    .venv/bin/python benchmarks/bench_extract.py --accuracy   # modes and scales vs ground truth
    .venv/bin/python benchmarks/bench_extract.py --sweep      # F1 at fixed scales
    .venv/bin/python benchmarks/bench_extract.py --estimates  # auto scale vs ground truth
    .venv/bin/python benchmarks/bench_extract.py --profile-net2 --threads 1  # where Net2 spends
    .venv/bin/python benchmarks/bench_extract.py --changes    # Net2 convergence curve, 96×496
    .venv/bin/python benchmarks/bench_extract.py --calibrate  # the auto-scale target

Speed: milliseconds per stage and end to end at 96×496 (the paper's size) and 2048×2048
(native mode, scale 1), the Net2 iteration count, and the peak resident memory of a fresh
process per size (so one size's peak does not hide another's). Torch runs on ``--threads``
CPU threads (default 2, the goal's budget).

Accuracy: synthetic micrographs with known boundaries (``napari_grains.synth``) of several grain
sizes, scored by tolerance F1 (2 px, ``napari_grains.evaluate.boundary_prf``) for paper mode,
native ×1 and native auto scale.

Calibrate: the mean intercept of Net1's thresholded map on training-like 96×496 pairs (the
``PAPER_MEAN_INTERCEPT_PX`` that the automatic scale aims for) and of the targets themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _image(size: str) -> np.ndarray:
    from napari_grains.synth import SynthParams, generate_pair

    if size == "96x496":
        return generate_pair(seed=0).image
    rows, cols = (int(v) for v in size.split("x"))
    # 512² synthetic tile with training-sized grains, mirrored out to the requested size
    tile = generate_pair(SynthParams(height=512, width=512, mean_diameter=(55.0, 55.0)),
                         seed=1).image
    reps = (-(-rows // 512), -(-cols // 512))
    big = np.block([[tile if (i + j) % 2 == 0 else tile[::-1, ::-1] for j in range(reps[1])]
                    for i in range(reps[0])])
    return np.ascontiguousarray(big[:rows, :cols])


def _one(size: str, threads: int, repeats: int, model_name: str, convergence: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from napari_grains.extract import ExtractParams, extract
    from napari_grains.nets import load_model

    model = load_model(model_name)
    img = _image(size)
    params = (ExtractParams(mode="paper", convergence=convergence) if size == "96x496"
              else ExtractParams(mode="native", scale=1.0, convergence=convergence))
    extract(img[:96, :496], model, ExtractParams(mode="paper", max_iterations=2))  # warm-up
    runs = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = extract(img, model, params)
        runs.append(((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, res))
    total, total_cpu, res = sorted(runs, key=lambda r: r[1])[len(runs) // 2]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = res.timings
    return {
        "size": size, "mode": res.params.mode, "scale": res.params.scale,
        "threads": threads, "repeats": repeats,
        "total_ms": total, "total_ms_cpu": total_cpu,
        **{f"{k.removesuffix('_cpu')}_ms{'_cpu' if k.endswith('_cpu') else ''}": v
           for k, v in t.items()},
        "net2_per_iteration_ms": t["net2"] / max(1, res.n_iterations),
        "iterations": res.n_iterations, "converged": res.converged,
        "peak_rss_mb": peak_kb / 1024,
    }


def speed(args: argparse.Namespace) -> None:
    print(f"extract speed, {args.threads} torch thread(s), model {args.model!r}, "
          f"convergence rule {args.convergence!r}, "
          f"{os.cpu_count()} CPUs visible, load average now {os.getloadavg()[0]:.1f}")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # idle threads sleep, not spin
    results = []
    for size, repeats in (("96x496", args.repeats), ("2048x2048", 1)):
        out = subprocess.run(
            [sys.executable, __file__, "--one", size, "--threads", str(args.threads),
             "--repeats", str(repeats), "--model", args.model,
             "--convergence", args.convergence],
            capture_output=True, text=True, check=True, env=env,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    stages = ("preprocess", "edges", "net1", "net2", "finalize")
    for label, suffix in (("wall-clock ms", ""), ("process CPU ms", "_cpu")):
        print(f"\n{label}:")
        print(f"{'size':>10} {'mode':>6} " + " ".join(f"{s:>10}" for s in stages)
              + f" {'net2/iter':>9} {'total':>9} {'iters':>5} {'peak MB':>8}")
        for r in results:
            per_iter = r["net2_ms" + suffix] / max(1, r["iterations"])
            print(f"{r['size']:>10} {r['mode']:>6} "
                  + " ".join(f"{r[s + '_ms' + suffix]:10.1f}" for s in stages)
                  + f" {per_iter:9.1f} {r['total_ms' + suffix]:9.1f} {r['iterations']:>5} "
                  f"{r['peak_rss_mb']:8.0f}")
    print("\nmedian of the repeats at 96x496, one run at 2048x2048; peak MB = peak resident "
          "memory of a fresh process (Python and torch included). CPU ms sums all threads: on "
          "an idle machine the wall time lies between CPU/threads and CPU.")


def accuracy(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from napari_grains.evaluate import boundary_prf
    from napari_grains.extract import ExtractParams, extract, mean_intercept
    from napari_grains.nets import load_model
    from napari_grains.synth import SynthParams, generate_pair

    model = load_model(args.model)
    methods = {
        "paper": ExtractParams(mode="paper"),
        "native x1": ExtractParams(mode="native", scale=1.0),
        "native auto": ExtractParams(mode="native", scale="auto"),
    }
    cases = [("96x496 paper set", SynthParams(), s) for s in range(args.seeds)]
    for d in (20.0, 40.0, 80.0):
        cases += [(f"512x512 d={d:.0f}px", SynthParams(height=512, width=512,
                                                    mean_diameter=(d, d)), 100 + s)
                  for s in range(args.seeds)]
    print(f"tolerance-F1 (2 px) against the synthetic ground truth; {args.seeds} seed(s) per "
          f"row, Net2 capped at {args.max_iterations} iterations; model {args.model!r}")
    print(f"{'images':>18} {'true icpt':>9} " + " ".join(f"{m:>12}" for m in methods)
          + f" {'auto scale':>10}")
    rows: dict[str, dict[str, list[float]]] = {}
    scales: dict[str, list[float]] = {}
    icpt: dict[str, list[float]] = {}
    for name, sp, seed in cases:
        pair = generate_pair(sp, seed=seed)
        icpt.setdefault(name, []).append(mean_intercept(pair.target))
        for m, p in methods.items():
            from dataclasses import replace

            res = extract(pair.image, model, replace(p, max_iterations=args.max_iterations))
            f1 = boundary_prf(res.boundaries, pair.target, 2.0).f1
            rows.setdefault(name, {}).setdefault(m, []).append(f1)
            if m == "native auto":
                scales.setdefault(name, []).append(float(res.params.scale))
    for name, r in rows.items():
        print(f"{name:>18} {np.mean(icpt[name]):9.1f} "
              + " ".join(f"{np.mean(r[m]):12.3f}" for m in methods)
              + f" {np.mean(scales[name]):10.2f}")


def sweep(args: argparse.Namespace) -> None:
    """F1 at fixed scales, to see where the best scale lies for each grain size."""
    import torch

    torch.set_num_threads(args.threads)
    from dataclasses import replace

    from napari_grains.evaluate import boundary_prf
    from napari_grains.extract import ExtractParams, extract, mean_intercept
    from napari_grains.nets import load_model
    from napari_grains.synth import SynthParams, generate_pair

    model = load_model(args.model)
    scales = (0.5, 0.71, 1.0, 1.41, 2.0, 2.83)
    p = ExtractParams(mode="native", max_iterations=args.max_iterations)
    print(f"tolerance-F1 (2 px) of native mode at fixed scales; Net2 capped at "
          f"{args.max_iterations}; {args.seeds} seed(s); model {args.model!r}")
    print(f"{'images':>16} {'true icpt':>9} " + " ".join(f"{'x' + str(s):>6}" for s in scales)
          + f" {'best':>6} {'50/icpt':>7}")
    for side, d in ((256, 20.0), (256, 40.0), (384, 80.0)):
        f1 = np.zeros(len(scales))
        icpt = []
        for seed in range(args.seeds):
            pair = generate_pair(SynthParams(height=side, width=side, mean_diameter=(d, d)),
                                 seed=200 + seed)
            icpt.append(mean_intercept(pair.target))
            for i, s in enumerate(scales):
                res = extract(pair.image, model, replace(p, scale=s))
                f1[i] += boundary_prf(res.boundaries, pair.target, 2.0).f1 / args.seeds
        best = scales[int(np.argmax(f1))]
        print(f"{f'{side}x{side} d={d:.0f}px':>16} {np.mean(icpt):9.1f} "
              + " ".join(f"{v:6.3f}" for v in f1) + f" {best:6.2f} {50 / np.mean(icpt):7.2f}")


def estimates(args: argparse.Namespace) -> None:
    """Grain intercept found by the automatic scale vs the ground truth's."""
    import torch

    torch.set_num_threads(args.threads)
    from napari_grains.extract import _target_intercept, estimate_scale, mean_intercept
    from napari_grains.nets import load_model
    from napari_grains.synth import SynthParams, generate_pair

    model = load_model(args.model)
    target = _target_intercept(model)
    print(f"automatic scale on synthetic images (model {args.model!r}, target {target:.1f} px): "
          "grain intercept it implies (target / scale) vs the ground truth's")
    print(f"{'images':>22} {'true icpt':>9} {'found':>7} {'ratio':>6} {'scale':>6} {'CPU s':>6}")
    cases = [(f"96x496 paper set #{s}", SynthParams(), s) for s in range(args.seeds)]
    for side, d in ((256, 20.0), (256, 40.0), (384, 80.0), (512, 40.0)):
        cases += [(f"{side}x{side} d={d:.0f}px #{s}",
                   SynthParams(height=side, width=side, mean_diameter=(d, d)), 200 + s)
                  for s in range(args.seeds)]
    ratios = []
    for name, sp, seed in cases:
        pair = generate_pair(sp, seed=seed)
        true = mean_intercept(pair.target)
        c0 = time.process_time()
        scale = estimate_scale(pair.image, model)
        cpu = time.process_time() - c0
        found = target / scale
        ratios.append(found / true)
        print(f"{name:>22} {true:9.1f} {found:7.1f} {found / true:6.2f} {scale:6.2f} {cpu:6.2f}")
    print(f"found / true: median {np.median(ratios):.2f}, range {min(ratios):.2f}-"
          f"{max(ratios):.2f} (scales at the 0.25/4 caps make 'found' meaningless)")


def profile_net2(args: argparse.Namespace) -> None:
    """CPU time of one Net2 pass and of its encoder convolutions at 1024²."""
    import torch

    torch.set_num_threads(args.threads)
    from napari_grains.nets import load_model

    model = load_model(args.model)
    net = model._inference_net("net2")
    x = torch.rand(1, 1, 1024, 1024)
    reps = 5
    with torch.inference_mode():
        net(x)
        c0 = time.process_time()
        for _ in range(reps):
            net(x)
        whole = (time.process_time() - c0) / reps * 1e3
        print(f"Net2 at 1024x1024, {args.threads} thread(s): {whole:.1f} ms CPU per pass")
        h = x
        for i, block in enumerate(net.enc):
            c0 = time.process_time()
            for _ in range(reps):
                y = block.conv(h)
            ms = (time.process_time() - c0) / reps * 1e3
            conv = block.conv
            w = tuple(getattr(conv, "weight", getattr(conv, "weight_flipped", None)).shape)
            print(f"  encoder conv {i} {w} ({type(conv).__name__}): {ms:.1f} ms "
                  f"({100 * ms / whole:.0f} %)")
            h = net.pool(torch.relu(y))


def calibrate(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from napari_grains.extract import (
        ExtractParams,
        compute_edges,
        mean_intercept,
        preprocess,
        run_net1,
    )
    from napari_grains.nets import load_model
    from napari_grains.synth import generate_pair

    model = load_model(args.model)
    p = ExtractParams(mode="native", scale=1.0)
    target, net1 = [], []
    for seed in range(12):
        pair = generate_pair(seed=seed)
        target.append(mean_intercept(pair.target))
        guess = run_net1(compute_edges(preprocess(pair.image, p, scale=1.0), p), model, p)
        net1.append(mean_intercept(guess > p.threshold))
    print("mean intercept (px) on 96x496 pairs of synth.SynthParams(), seeds 0-11")
    print(f"  targets:              median {np.median(target):.1f}  ({np.round(target, 1)})")
    print(f"  Net1 map > threshold: median {np.median(net1):.1f}  ({np.round(net1, 1)})")


def changes(args: argparse.Namespace) -> None:
    """The Net2 convergence curve at 96×496 (paper mode): does anything waste iterations?"""
    import torch

    torch.set_num_threads(args.threads)
    from napari_grains.extract import ExtractParams, extract
    from napari_grains.nets import load_model

    model = load_model(args.model)
    img = _image("96x496")
    for rule in ("paper", "script"):
        res = extract(img, model, ExtractParams(mode="paper", convergence=rule,
                                                max_iterations=args.max_iterations))
        steps = np.diff(res.iterations.astype(np.int16), axis=0)
        # pixels whose value went up then down (or down then up) on consecutive passes
        reversing = ((steps[1:] * steps[:-1]) < 0).mean(axis=(1, 2))
        print(f"rule {rule!r}: {res.n_iterations} iterations, converged {res.converged}")
        print("  change per iteration:", " ".join(f"{c:.4f}" for c in res.changes))
        print("  fraction of pixels reversing direction (iteration 3 on):",
              " ".join(f"{r:.3f}" for r in reversing))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--estimates", action="store_true")
    ap.add_argument("--profile-net2", action="store_true")
    ap.add_argument("--changes", action="store_true")
    ap.add_argument("--one", metavar="SIZE", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--max-iterations", type=int, default=50)
    ap.add_argument("--model", default="paper")
    ap.add_argument("--convergence", choices=("paper", "script"), default="paper")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.threads, args.repeats, args.model,
                              args.convergence)))
    elif args.accuracy:
        accuracy(args)
    elif args.profile_net2:
        profile_net2(args)
    elif args.changes:
        changes(args)
    elif args.estimates:
        estimates(args)
    elif args.sweep:
        sweep(args)
    elif args.calibrate:
        calibrate(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
