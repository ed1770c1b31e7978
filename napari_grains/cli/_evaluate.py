"""``napari-grains evaluate``: score a model or boundary maps against ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_grains.errors import GrainsError

HELP = "score a model (or boundary maps) against ground truth; make the benchmark sets"

DESCRIPTION = """\
Score boundary maps against ground truth: boundary precision / recall / F1 within a pixel
tolerance, the paper's Eq. 1 accuracy (% of true boundary length found), variation of
information and adjusted Rand index of the grain labelings, grain count and mean grain-size
errors, seconds per image. Prints a table; writes OUT/metrics.csv (per image) and
OUT/metrics.json (means). Definitions: docs/evaluation.md.

Data layout: a folder with images/ and targets/ (synthetic data) or ground_truth/ or
boundaries/ (traced maps, boundaries bright or dark, matched to images by file name), or a
folder of such sets (a benchmark).

Examples:
  napari-grains evaluate --make-benchmark bench/              regenerate the benchmark sets
  napari-grains evaluate --model paper --data bench/          score the paper model on all sets
  napari-grains evaluate --model paper --data bench/ --sets paper96 --limit 10
  napari-grains evaluate --model paper --data bench/ --max-iterations 0   Net1 alone
  napari-grains evaluate --boundaries my_maps/ --data traced/ score maps made by anything
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``napari-grains evaluate``."""
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--model", metavar="NAME|PATH",
                      help="model to run on each image: 'paper', 'default' or a model folder")
    what.add_argument("--boundaries", metavar="DIR", type=Path,
                      help="folder of predicted boundary maps (named like the ground truth)")
    what.add_argument("--make-benchmark", metavar="DIR", type=Path,
                      help="write the fixed synthetic benchmark sets into DIR and stop")
    parser.add_argument("--data", metavar="DIR", type=Path,
                        help="a set (images/ + targets/|ground_truth/|boundaries/) or a folder "
                             "of sets")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="where metrics.csv and metrics.json go "
                             "(default: ./evaluation-<model or boundaries folder name>)")
    parser.add_argument("--tolerance", type=float, default=2.0, metavar="PX",
                        help="boundary matching distance in pixels (default: 2)")
    parser.add_argument("--min-grain-area", type=int, default=4, metavar="PX",
                        help="ignore grains smaller than this many pixels (default: 4)")
    parser.add_argument("--close-gaps", type=int, default=3, metavar="PX",
                        help="close gaps of up to PX pixels in each prediction before its "
                             "grains are labelled, as 'measure' does (default: 3; 0: as is)")
    parser.add_argument("--mode", choices=["native", "paper"],
                        help="extraction mode passed to the pipeline (default: its own)")
    parser.add_argument("--scale", type=_scale, metavar="auto|FACTOR",
                        help="native-mode image scale passed to the pipeline: a factor or "
                             "'auto' (default: the pipeline's)")
    parser.add_argument("--max-iterations", type=int, metavar="N",
                        help="cap on Net2 iterations passed to the pipeline (0: Net1 only)")
    parser.add_argument("--extend-ends", type=float, metavar="K",
                        help="passed to the pipeline: prolong loose boundary ends to the next boundary, at most this many mean grain intercepts (default 0.5; 0: off)")
    parser.add_argument("--split-concave", type=float, metavar="D",
                        help="passed to the pipeline: split merged grains with a straight cut "
                             "between two concave corners at least D x the grain's diameter "
                             "deep (default 0.05; 0: off)")
    parser.add_argument("--sets", metavar="NAME[,NAME]",
                        help="only these sets (of a benchmark folder, or to make)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="score only the first N images of each set (quick check)")
    parser.add_argument("--n", type=int, metavar="N", dest="n_images",
                        help="with --make-benchmark: images per set instead of the fixed sizes "
                             "(not the official benchmark then)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace earlier metrics in --out (with --make-benchmark: "
                             "replace existing sets)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _scale(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


def run(args: argparse.Namespace) -> int:
    """Run ``napari-grains evaluate``; return the exit status."""
    if args.make_benchmark is not None:
        return _make_benchmark(args)
    if args.data is None:
        raise GrainsError("give --data DIR (images with ground truth) to evaluate on, or "
                          "--make-benchmark DIR to create the benchmark sets first.")
    if args.model is None and args.boundaries is None:
        raise GrainsError("give --model NAME|PATH to run a model, or --boundaries DIR to score "
                          "boundary maps you already have.")
    from napari_grains.evaluate import check_output_folder, iter_evaluate

    label = args.model if args.model is not None else args.boundaries.name
    out = args.out or Path(f"evaluation-{Path(str(label)).name}")
    check_output_folder(out, overwrite=args.overwrite)  # before minutes of work, not after
    gen = iter_evaluate(
        args.data,
        model=args.model,
        boundaries=args.boundaries,
        tolerance=args.tolerance,
        min_grain_area=args.min_grain_area,
        close_gaps=args.close_gaps,
        limit=args.limit,
        sets=_split(args.sets),
        mode=args.mode,
        scale=args.scale,
        max_iterations=args.max_iterations,
        extend_ends=args.extend_ends,
        split_concave=args.split_concave,
    )
    result = _drive(gen, quiet=args.quiet, describe=lambda e: (
        f"{e.pair.set}/{e.pair.name} " + (f"F1={e.score.boundary.f1:.3f}" if e.score is not None
                                          else "FAILED")))
    csv_path, json_path = result.write(out, overwrite=args.overwrite)
    print(result.format_table())
    for item in result.summary["failed"]:
        print(f"FAILED {item['set']}/{item['name']}: {item['error']}", file=sys.stderr)
    print(f"wrote {csv_path} and {json_path}")
    return 1 if result.summary["failed"] else 0


def _drive(gen, *, quiet: bool, describe=None):
    """Run a progress generator to its end behind a tqdm bar; return its value."""
    bar = None
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if quiet:
                continue
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=event.total, unit="img", file=sys.stderr)
            bar.set_postfix_str(describe(event) if describe else "")
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _make_benchmark(args: argparse.Namespace) -> int:
    from napari_grains import benchdata

    gen = benchdata.iter_make_benchmark(args.make_benchmark, sets=_split(args.sets),
                                        n_images=args.n_images, overwrite=args.overwrite)
    folders = _drive(gen, quiet=args.quiet, describe=lambda e: e.set)
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    return 0
