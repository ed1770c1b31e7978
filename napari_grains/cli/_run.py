"""``napari-grains run``: extract + measure + export, for images and folders, in one go."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_grains.cli._measure import (
    _field_text,
    add_measure_options,
    headline_text,
    histogram_options,
    measure_params,
    pixel_size,
)
from napari_grains.errors import GrainsError

HELP = "find grain boundaries and measure the grains of images or folders (one shot)"

DESCRIPTION = """\
For each image: find the grain boundaries (the extract pipeline), measure the grains, and write
OUT/<image name>/ (per-grain CSV, summary JSON with provenance, histogram PNG/SVG, overlay
PNG, label TIFF, boundary PNG), plus OUT/summary.csv (one row per image) and, with several
images, OUT/field_statistics.json (ASTM E112 95 % CI and %RA over the images).

Folders run their images in parallel on local processes (--workers, default: all cores), or on
an existing Dask cluster with --scheduler tcp://HOST:8786. An image that fails is reported and
skipped; the others go on.

Examples:
  napari-grains run --demo --out demo/                   the bundled TEM and synthetic samples
  napari-grains run micrograph.tif --out results/
  napari-grains run folder/ --pixel-size 2 --unit nm --workers 4 --out results/
  napari-grains run folder/ --scheduler tcp://10.0.0.5:8786 --out /shared/results/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``napari-grains run``."""
    parser.add_argument("inputs", nargs="*", type=Path, metavar="IMAGE_OR_FOLDER",
                        help="micrographs and folders of micrographs")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for the results (with --demo: ./napari-grains-demo)")
    parser.add_argument("--demo", action="store_true",
                        help="run on the bundled TEM sample (the paper authors' TEM.png) and "
                             "the bundled synthetic sample with known ground truth")
    g = parser.add_argument_group("extraction")
    g.add_argument("--model", default="default", metavar="NAME|PATH",
                   help="model name ('paper', 'default') or a model folder (default: default)")
    g.add_argument("--mode", choices=["native", "paper"],
                   help="extraction mode (default: the pipeline's own)")
    g.add_argument("--scale", metavar="S|auto", help="resize factor before the nets, or auto")
    g.add_argument("--threshold", type=float, help="boundary threshold of the final map, 0..1")
    g.add_argument("--max-iterations", type=int, metavar="N", help="cap on Net2 iterations")
    g.add_argument("--extend-ends", type=float, metavar="K", help="prolong loose boundary ends to the next boundary, at most this many mean grain intercepts (default 0.5; 0: off)")
    g.add_argument("--split-concave", type=float, metavar="D", help="split merged grains with a straight cut between two concave corners at least D x the grain's diameter deep (default 0.05; 0: off)")
    g = parser.add_argument_group("where it runs")
    g.add_argument("--workers", type=int, metavar="N",
                   help="local processes for folders (default: number of CPU cores)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask distributed scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_measure_options(parser)


def extract_params(args: argparse.Namespace) -> dict:
    """ExtractParams fields given on the command line."""
    d: dict = {}
    if args.mode:
        d["mode"] = args.mode
    if args.scale:
        if args.scale == "auto":
            d["scale"] = "auto"
        else:
            try:
                d["scale"] = float(args.scale)
            except ValueError:
                raise GrainsError(f"--scale must be a number or 'auto', got {args.scale!r}.") \
                    from None
    if args.threshold is not None:
        d["threshold"] = args.threshold
    if args.max_iterations is not None:
        d["max_iterations"] = args.max_iterations
    if getattr(args, "extend_ends", None) is not None:
        d["extend_ends"] = args.extend_ends
    if getattr(args, "split_concave", None) is not None:
        d["split_concave"] = args.split_concave
    return d


def run(args: argparse.Namespace) -> int:
    """Run ``napari-grains run``; return the exit status."""
    if args.demo:
        return run_demo(args)
    if not args.inputs:
        raise GrainsError("give images or folders to run on (or --demo for the bundled samples).")
    if args.out is None:
        raise GrainsError("give --out DIR: the folder for the results.")
    if args.workers is not None and args.workers < 1:
        raise GrainsError("--workers must be 1 or more.")
    if args.out.exists() and not args.out.is_dir():
        raise GrainsError(f"--out {args.out} is a file; give a folder for the results.")
    from napari_grains.batch import run_batch

    ps, unit = pixel_size(args)
    res = run_batch(
        args.inputs, args.out, progress=not args.quiet, model=args.model,
        extract_params=extract_params(args), measure_params=measure_params(args),
        pixel_size=ps, unit=unit, histogram=histogram_options(args), workers=args.workers,
        scheduler=args.scheduler, overwrite=args.overwrite,
    )
    if len(res.rows) == 1 and res.failed:  # a single image: one plain error line
        raise GrainsError(res.failed[0].error.splitlines()[0]
                          + f" (recorded in {res.summary_csv})")
    for row in res.rows:
        if row["status"] == "done":
            print(headline_text(Path(row["image"]).name, row) + f"  -> {row['output_dir']}")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for ev in res.failed:
        print(f"FAILED {ev.error}", file=sys.stderr)
    print(f"summary: {res.summary_csv} ({len(res.rows) - len(res.failed)} measured, "
          f"{len(res.failed)} failed)")
    if res.field_statistics:
        print(_field_text(res.field_statistics))
    if res.failed and len(res.failed) == len(res.rows):
        return 2
    return 1 if res.failed else 0


def demo_inputs() -> dict:
    """The bundled samples: paths and how each is measured."""
    data = Path(__file__).resolve().parents[1] / "data"
    return {
        "TEM": {"image": data / "TEM.png", "measure": {"line_axis": "x"}},
        "synthetic": {"image": data / "synthetic_image.tif", "measure": {},
                      "labels": data / "synthetic_labels.tif"},
    }


def run_demo(args: argparse.Namespace) -> int:
    """Run both bundled samples and print where the results are and the headline numbers."""
    import numpy as np
    import tifffile
    from tqdm import tqdm

    from napari_grains.batch import process_image, summary_row, write_summary_csv
    from napari_grains.io import atomic_write, read_image
    from napari_grains.measure import MeasureParams, measure_labels

    out = Path(args.out) if args.out else Path("napari-grains-demo")
    if out.exists() and not out.is_dir():
        raise GrainsError(f"--out {out} is a file; give a folder for the results.")
    if (out / "summary.csv").exists() and not args.overwrite:
        raise GrainsError(f"{out} holds earlier demo results; add --overwrite or pick "
                          "another --out.")
    samples = demo_inputs()
    base = measure_params(args)
    hist = histogram_options(args)  # bad options fail before any work
    rows, results = [], {}
    bar = tqdm(samples.items(), unit="image", disable=args.quiet, desc="napari-grains demo")
    for stem, s in bar:
        mp = {**base, **s["measure"]}
        res = process_image(s["image"], out, stem, model=args.model,
                            extract_params=extract_params(args), measure_params=mp,
                            histogram=hist, overwrite=args.overwrite)
        rows.append(res["row"])
        results[stem] = res
    bar.close()
    write_summary_csv(out / "summary.csv", rows)
    print(f"napari-grains demo: results in {out.resolve()}")
    status = 0
    for stem, res in results.items():
        if not res["ok"]:
            print(f"  {stem}: FAILED {res['error']}", file=sys.stderr)
            status = 1
            continue
        print("  " + headline_text(samples[stem]["image"].name, res["row"])
              + f"\n    files: {res['row']['output_dir']}")
        if stem == "TEM":
            ic = res["summary"].get("interconnect") or {}
            bf = ic.get("bamboo_fraction")
            gl = (ic.get("grain_length_px") or {}).get("mean")
            print(f"    metal line: bamboo fraction {'n/a' if bf is None else f'{bf:.2f}'}, "
                  f"mean grain length along the line "
                  f"{'n/a' if gl is None else f'{gl:.1f}'} px (no pixel size in TEM.png)")
        if "labels" in samples[stem]:
            mg = read_image(samples[stem]["image"])
            gt = tifffile.imread(samples[stem]["labels"]).astype(np.int32)
            truth = measure_labels(gt, pixel_size=mg.pixel_size, unit=mg.unit,
                                   params=MeasureParams(**{**base, **samples[stem]["measure"]}))
            t = truth.headline()
            print("    " + headline_text("ground truth", t).replace("ground truth:",
                                                                      "ground truth:   "))
            row = summary_row(f"{stem}_ground_truth", str(samples[stem]["labels"]),
                              truth.summary)
            text = json.dumps({"summary": truth.summary, "row": row}, indent=2,
                              ensure_ascii=False)
            atomic_write(out / stem / f"{stem}_ground_truth.json",
                         lambda p, text=text: p.write_text(text, encoding="utf-8"),
                         overwrite=True)
    print(f"  summary table: {out / 'summary.csv'}")
    return status
