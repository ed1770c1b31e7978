"""Is Net2 a stable refiner? Boundary F1 against the number of Net2 iterations (1..50).

Run ``.venv/bin/python benchmarks/net2_iterations.py [--data bench_data] [--limit 3]
[--models paper default] [--finish] [--plot docs/img/net2_iterations.png] [--json FILE]``; ``--load FILE...``
reports and plots curves saved earlier with ``--json`` (e.g. one run per model).

For each benchmark set (``napari-grains evaluate --make-benchmark bench_data``) and each model it
scores, on the first ``--limit`` images of the set:

- **from Net1**: the whole pipeline (``napari_grains.extract.extract`` with its defaults, native
  mode, automatic scale) forced to run all ``--iterations`` Net2 iterations (convergence
  tolerance 0); iteration 0 is Net1's initial guess. Every iteration is finished like the
  pipeline finishes its last one (threshold 0.2, closing with a disk of radius 2; with
  ``--finish`` also the loose ends prolonged and concave grains split) and scored against
  the ground truth (tolerance 2 px);
- **from truth**: Net2 applied again and again to the ground-truth boundary map itself. A stable
  refiner keeps a correct map (F1 stays near 1); a drifting one erases and invents boundaries.

It prints the mean F1 (and Eq. 1 accuracy) at selected iterations and the largest drop of the
mean F1 below its running maximum ("max drop"), and optionally draws the curves.
Timings are not measured here. The curves depend only on the models and the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_grains.evaluate import (
    find_pairs,
    read_boundary_map,
    score_iterations,
    threshold_and_close,
)
from napari_grains.extract import ExtractParams, extract
from napari_grains.io import read_image
from napari_grains.nets import load_model

SHOW = (0, 1, 3, 10, 30, 50)


def refine_from(model, start: np.ndarray, iterations: int,
                initial: np.ndarray | None = None) -> np.ndarray:
    """Apply Net2 ``iterations`` times to a map (reflect-padded to the nets' multiple);
    ``initial`` is the image's Net1 map, which a conditioned Net2 sees at every iteration."""
    m = model.multiple
    h, w = start.shape
    ph, pw = (-h) % m, (-w) % m

    def pad(a):
        return torch.from_numpy(np.pad(a.astype(np.float32), ((0, ph), (0, pw)),
                                       mode="reflect"))[None, None]

    cur = pad(start)
    cond = pad(initial if initial is not None else start)
    out = np.zeros((iterations, h, w), np.float32)
    with torch.no_grad():
        for k in range(iterations):
            cur = model.refine(model.net2_input(cur, cond))
            out[k] = cur[0, 0, :h, :w].cpu().numpy()
    return out


def finished(binarize):
    """``binarize`` followed by the pipeline's two clean-ups at today's defaults
    (``extract.clean_up``: loose ends prolonged, concave grains split)."""
    from napari_grains.extract import clean_up

    return lambda prob: clean_up(binarize(prob))


def run(data: Path, models: list[str], limit: int, iterations: int,
        sets: list[str] | None, finish: bool = False) -> dict:
    pairs = find_pairs(data)
    names = sorted({p.set for p in pairs}) if sets is None else sets
    binarize = threshold_and_close(0.2, 2)
    if finish:
        binarize = finished(binarize)
    params = ExtractParams(max_iterations=iterations, tolerance=0.0)
    results: dict = {}
    for model_name in models:
        model = load_model(model_name)
        for set_name in names:
            chosen = [p for p in pairs if p.set == set_name][:limit]
            f1_n1, acc_n1, f1_gt = [], [], []
            for pair in chosen:
                gt = read_boundary_map(pair.gt)
                img = read_image(pair.image).data
                res = extract(img, model, params)
                stack = np.concatenate([res.initial[None].astype(np.float32),
                                        res.iterations.astype(np.float32) / 255.0])
                s = score_iterations(stack, gt, binarize=binarize)
                f1_n1.append(s.f1)
                acc_n1.append(s.eq1_accuracy)
                g = score_iterations(np.concatenate(
                    [gt[None].astype(np.float32),
                     refine_from(model, gt, iterations, res.initial)]), gt,
                    binarize=binarize)
                f1_gt.append(g.f1)
            results[(model_name, set_name)] = {
                "from_net1_f1": np.mean(f1_n1, axis=0).tolist(),
                "from_net1_eq1": np.mean(acc_n1, axis=0).tolist(),
                "from_truth_f1": np.mean(f1_gt, axis=0).tolist(),
                "n_images": len(chosen),
            }
            print(f"  done {model_name} / {set_name}", file=sys.stderr, flush=True)
    return results


def max_drop(curve: list[float]) -> float:
    """Largest fall of the curve below its running maximum (0 for a curve that never falls)."""
    c = np.asarray(curve)
    return float(np.max(np.maximum.accumulate(c) - c))


def report(results: dict) -> str:
    lines = []
    head = "  ".join(f"it{k:<3d}" for k in SHOW)
    for start in ("from_net1_f1", "from_net1_eq1", "from_truth_f1"):
        lines.append(f"\n{start} (iteration 0 = {'Net1' if 'net1' in start else 'the truth'}),"
                     " mean over images")
        lines.append(f"{'model':<10s} {'set':<14s} {'n':>3s}  {head}  max drop")
        for (model, set_name), r in results.items():
            c = r[start]
            vals = "  ".join(f"{c[k]:5.3f}" if "eq1" not in start else f"{c[k]:5.1f}"
                             for k in SHOW if k < len(c))
            lines.append(f"{model:<10s} {set_name:<14s} {r['n_images']:>3d}  {vals}  "
                         f"{max_drop(c):.3f}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({s for _, s in results})
    models = sorted({m for m, _ in results}, key=lambda m: (m != "paper", m))
    fig, axes = plt.subplots(2, len(sets), figsize=(3.2 * len(sets), 5.6), sharey="row",
                             squeeze=False)
    colors = {"paper": "tab:red"}
    for j, s in enumerate(sets):
        for i, (key, title) in enumerate((("from_net1_f1", "from Net1"),
                                          ("from_truth_f1", "from the true map"))):
            ax = axes[i, j]
            for m in models:
                r = results.get((m, s))
                if r is None:
                    continue
                c = r[key]
                ax.plot(range(len(c)), c, label=m, color=colors.get(m, "tab:blue"), lw=1.6)
            ax.set_title(f"{s}: {title}", fontsize=9)
            ax.set_xlabel("Net2 iterations")
            ax.grid(alpha=0.3)
            ax.set_ylim(0, 1.02)
        axes[0, j].set_ylabel("boundary F1 (2 px)" if j == 0 else "")
    axes[1, 0].set_ylabel("boundary F1 (2 px)")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Net2 applied again and again (benchmarks/net2_iterations.py)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("bench_data"))
    ap.add_argument("--models", nargs="+", default=["paper", "default"])
    ap.add_argument("--limit", type=int, default=3, help="images per set")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--sets", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--finish", action="store_true",
                    help="also prolong loose ends and split concave grains at every iteration, "
                         "as the pipeline finishes its last one")
    ap.add_argument("--plot", type=Path, help="write the curves to this PNG")
    ap.add_argument("--json", type=Path, help="write the curves to this JSON file")
    ap.add_argument("--load", type=Path, nargs="+",
                    help="report / plot curves saved earlier with --json instead of computing")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.load:
        results = {}
        for f in a.load:
            for key, r in json.loads(f.read_text()).items():
                m, s = key.split("/", 1)
                results[(m, s)] = r
    else:
        results = run(a.data, a.models, a.limit, a.iterations, a.sets, finish=a.finish)
    print(report(results))
    if a.plot:
        plot(results, a.plot)
    if a.json:
        a.json.write_text(json.dumps({f"{m}/{s}": r for (m, s), r in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
