"""F1 against Net2 iteration number on the benchmark sets: is Net2 a stable refiner?

For each benchmark set and the first ``--limit`` images of it, two curves of the mean boundary
F1 (tolerance ``--tolerance`` px) against the iteration number, with no early stop:

* **pipeline**: the whole extraction (edges, Net1, then Net2 ``--max-iterations`` times); the
  map after each iteration is thresholded and closed like the pipeline's final step and scored
  against the ground truth. Iteration 0 is Net1's initial guess.
* **fixed point**: Net2 applied again and again to the ground-truth map itself. A stable
  refiner keeps a correct map correct (F1 stays near 1).

Usage::

    .venv/bin/python benchmarks/bench_iterations.py --model paper --max-iterations 50
    .venv/bin/python benchmarks/bench_iterations.py --model models/mine --data bench/ --limit 10

Without ``--data`` the first ``--limit`` images of each set are generated into a temporary
folder (the same images as in the full benchmark: pair ``i`` depends only on its seed and ``i``).
``--csv FILE`` writes every iteration's means.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Iterations shown in the printed table (all of them go to the CSV).
SHOWN = (0, 1, 2, 3, 5, 10, 15, 20, 30, 40, 50)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="paper", help="model name or folder (default: paper)")
    ap.add_argument("--max-iterations", type=int, default=50)
    ap.add_argument("--data", type=Path, help="benchmark folder (default: generate a temporary one)")
    ap.add_argument("--sets", default=None, help="comma-separated set names (default: all)")
    ap.add_argument("--limit", type=int, default=4, help="images per set (default: 4)")
    ap.add_argument("--tolerance", type=float, default=2.0, help="px (default: 2)")
    ap.add_argument("--mode", default=None, choices=["native", "paper"],
                    help="extraction mode (default: the pipeline's)")
    ap.add_argument("--scale", default=None,
                    help="native-mode scale: a number or 'auto' (default: the pipeline's)")
    ap.add_argument("--no-fixed-point", action="store_true", help="skip the fixed-point curve")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--csv", type=Path, help="write per-iteration means here")
    ap.add_argument("--plot", type=Path, help="draw the curves into this PNG")
    ap.add_argument("--from-csv", type=Path,
                    help="only redraw --plot from a CSV an earlier run wrote (no model run)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    args = parse_args(argv)
    if args.from_csv:
        return replot(args)
    import torch

    from napari_grains import benchdata
    from napari_grains.evaluate import (
        find_pairs,
        net2_fixed_point,
        read_boundary_map,
        score_iterations,
        threshold_and_close,
    )
    from napari_grains.extract import ExtractParams, extract
    from napari_grains.io import read_image
    from napari_grains.nets import load_model

    torch.set_num_threads(args.threads)
    n_it = int(args.max_iterations)
    sets = [s.strip() for s in args.sets.split(",")] if args.sets else list(benchdata.SETS)
    model = load_model(args.model)
    overrides = {"tolerance": 0.0, "max_iterations": n_it}  # no early stop
    if args.mode:
        overrides["mode"] = args.mode
    if args.scale:
        overrides["scale"] = args.scale if args.scale == "auto" else float(args.scale)
    defaults = ExtractParams()
    binarize = threshold_and_close(defaults.threshold, defaults.closing_radius)

    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory(prefix="napari-grains-bench-")
        data = Path(tmp.name)
        print(f"generating the first {args.limit} images of {', '.join(sets)} ...",
              file=sys.stderr)
        benchdata.make_benchmark(data, sets=sets, n_images=args.limit)

    curves: dict[tuple[str, str], np.ndarray] = {}
    t_start = time.perf_counter()
    try:
        pairs = find_pairs(data)
        for name in sets:
            chosen = [p for p in pairs if p.set == name][: args.limit]
            if not chosen:
                print(f"{name}: no images in {data}, skipped", file=sys.stderr)
                continue
            pipe, fixed = [], []
            for pair in chosen:
                gt = read_boundary_map(pair.gt, pair.gt_polarity)
                res = extract(read_image(pair.image).data, model, **overrides)
                stack = [res.initial, *res.iterations]
                pipe.append(score_iterations(stack, gt, tolerance=args.tolerance,
                                             binarize=binarize).f1)
                if not args.no_fixed_point:
                    fp = net2_fixed_point(model, gt, n_iterations=n_it,
                                          tolerance=args.tolerance, binarize=binarize,
                                          initial=res.initial).f1
                    fixed.append(np.concatenate([[1.0], fp]))  # iteration 0: the map itself
                print(f"  {name}/{pair.name}: F1 net1 {pipe[-1][0]:.3f} -> it{n_it} "
                      f"{pipe[-1][-1]:.3f} (scale {res.params.scale})", file=sys.stderr)
            curves[(name, "pipeline")] = np.mean(pipe, axis=0)
            if fixed:
                curves[(name, "fixed point")] = np.mean(fixed, axis=0)
    finally:
        if tmp is not None:
            tmp.cleanup()

    print(f"mean boundary F1 (tolerance {args.tolerance:g} px) vs Net2 iteration; model "
          f"{model.name}, {args.limit} images per set, mode {overrides.get('mode', defaults.mode)}"
          f", scale {overrides.get('scale', defaults.scale)}; iteration 0 = Net1 (pipeline) or "
          f"the ground truth (fixed point)")
    shown = [k for k in SHOWN if k <= n_it]
    head = f"{'set':<14}{'curve':<13}" + "".join(f"{k:>7d}" for k in shown)
    print(head)
    print("-" * len(head))
    for (name, kind), f1 in curves.items():
        print(f"{name:<14}{kind:<13}" + "".join(f"{f1[k]:7.3f}" for k in shown))
    print(f"({time.perf_counter() - t_start:.0f} s)")
    if args.csv:
        import pandas as pd

        from napari_grains.io import atomic_write

        table = pd.DataFrame({f"{name}:{kind}": f1 for (name, kind), f1 in curves.items()})
        table.index.name = "iteration"
        atomic_write(args.csv, lambda p: table.to_csv(p, float_format="%.4f"))
        print(f"wrote {args.csv}")
    if args.plot:
        mode = overrides.get("mode", defaults.mode)
        plot_curves(curves, args.plot, title=f"{model.name} ({mode} mode): boundary F1 "
                    f"(tolerance {args.tolerance:g} px) vs Net2 iteration, {args.limit} images "
                    "per set")
        print(f"wrote {args.plot}")
    return 0


def replot(args: argparse.Namespace) -> int:
    """Redraw the plot from a CSV written by ``--csv``."""
    import pandas as pd

    if not args.plot:
        print("--from-csv needs --plot FILE", file=sys.stderr)
        return 2
    table = pd.read_csv(args.from_csv, index_col="iteration")
    curves = {tuple(col.split(":", 1)): table[col].to_numpy() for col in table.columns}
    mode = args.mode or "native"
    plot_curves(curves, args.plot, title=f"{args.model} ({mode} mode): boundary F1 (tolerance "
                f"{args.tolerance:g} px) vs Net2 iteration, {args.limit} images per set")
    print(f"wrote {args.plot}")
    return 0


def plot_curves(curves: dict[tuple[str, str], np.ndarray], path: Path, *, title: str) -> None:
    """Draw F1 against iteration, one colour per set, solid = pipeline, dashed = fixed point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_grains.io import atomic_write

    names = list(dict.fromkeys(name for name, _ in curves))
    colours = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    for (name, kind), f1 in curves.items():
        ax.plot(np.arange(len(f1)), f1, color=colours[name],
                linestyle="-" if kind == "pipeline" else "--",
                label=f"{name} ({kind})")
    ax.set_xlabel("Net2 iteration (0 = Net1 / the ground truth itself)")
    ax.set_ylabel("mean boundary F1")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
