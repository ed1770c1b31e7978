"""``napari-grains measure``: grains and statistics from boundary maps (no nets needed)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from napari_grains.errors import GrainsError

HELP = "measure the grains of boundary maps: per-grain table, statistics, ASTM E112 G"

DESCRIPTION = """\
Label the grains enclosed by boundary maps (bright boundaries on a dark background, as
'napari-grains extract' writes them) and measure them: per-grain CSV, summary JSON (size
statistics, lognormal fit, ASTM E112 planimetric and intercept grain size numbers, with
provenance), histogram PNG/SVG, overlay PNG and label TIFF, in OUT/<name>/. With several maps,
also OUT/summary.csv (one row per map) and OUT/field_statistics.json (E112 95 % CI, %RA).

Lengths are in pixels unless the pixel size is known (from the file, or --pixel-size/--unit);
the E112 grain size number G needs it. Definitions: docs/measurement.md.

Examples:
  napari-grains measure boundaries.png --pixel-size 2.5 --unit nm --out results/
  napari-grains measure line_boundaries.png --image line.png --line x --out results/
  napari-grains measure maps/*.png --pixel-size 0.1 --unit um --bin-edges 0,0.2,0.4,0.8,1.6 --out r/
"""


def add_measure_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``measure`` and ``run``: pixel size, labelling, statistics, plots."""
    g = parser.add_argument_group("pixel size")
    g.add_argument("--pixel-size", type=float, metavar="SIZE",
                   help="edge length of one pixel in --unit (default: from the file, if any)")
    g.add_argument("--unit", metavar="UNIT", help="unit of --pixel-size: nm, um (µm) or mm")
    g = parser.add_argument_group("grains")
    g.add_argument("--close-gaps", type=int, default=3, metavar="PX",
                   help="join loose boundary ends across gaps of up to PX missing pixels "
                        "(0: off; default 3)")
    g.add_argument("--no-thin", action="store_true",
                   help="do not thin boundaries to one pixel before labelling")
    g.add_argument("--min-area", type=int, default=10, metavar="PX",
                   help="drop grains smaller than this many pixels (default 10)")
    g.add_argument("--fill-boundaries", action="store_true",
                   help="give boundary pixels to the nearest grain so grains tile the image")
    g.add_argument("--include-border", action="store_true",
                   help="include grains cut by the image border in the size statistics")
    g.add_argument("--line", choices=["x", "y"], metavar="AXIS",
                   help="the image is a metal line along AXIS (x or y) with its sidewalls at "
                        "the image edges: adds bamboo fraction and grain length along the line")
    g.add_argument("--intercept-spacing", type=float, metavar="PX",
                   help="distance between Heyn test lines (default: 1/20 of the shorter side)")
    g = parser.add_argument_group("histogram")
    g.add_argument("--bins", type=int, default=20, metavar="N", help="number of bins (20)")
    g.add_argument("--log-bins", action="store_true", help="logarithmic bins and axis")
    g.add_argument("--bin-edges", metavar="E1,E2,...",
                   help="fixed bin edges in the size unit, so samples can be compared")
    g.add_argument("--area-weighted", action="store_true",
                   help="histogram of the share of grain area rather than grain counts")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results already in --out")


def measure_params(args: argparse.Namespace) -> dict:
    """MeasureParams fields from parsed options."""
    d = {"close_gaps": args.close_gaps, "thin": not args.no_thin, "min_area": args.min_area,
         "fill_boundaries": args.fill_boundaries, "include_border": args.include_border,
         "line_axis": args.line, "intercept_spacing": args.intercept_spacing}
    return d


def histogram_options(args: argparse.Namespace) -> dict:
    """Histogram keyword arguments from parsed options."""
    bins: int | list[float] = args.bins
    if args.bin_edges:
        try:
            bins = [float(x) for x in args.bin_edges.split(",") if x.strip()]
        except ValueError:
            raise GrainsError(f"--bin-edges must be numbers separated by commas, got "
                              f"{args.bin_edges!r}.") from None
    from napari_grains.plots import check_histogram_options

    return check_histogram_options({"bins": bins, "log": args.log_bins,
                                    "weights": "area" if args.area_weighted else "count"})


def pixel_size(args: argparse.Namespace) -> tuple[float | None, str | None]:
    """The pixel size given on the command line, checked."""
    from napari_grains.grains import normalize_unit

    if args.pixel_size is None:
        if args.unit:
            raise GrainsError("--unit needs --pixel-size too.")
        return None, None
    if not (math.isfinite(args.pixel_size) and args.pixel_size > 0):
        raise GrainsError("--pixel-size must be a positive number.")
    if not args.unit:
        raise GrainsError("--pixel-size needs its --unit (nm, um or mm).")
    return args.pixel_size, normalize_unit(args.unit)


def headline_text(name: str, m_or_row: dict) -> str:
    """One line of headline numbers for the terminal."""
    def f(x):
        return "n/a" if x is None else f"{x:.4g}"

    h = m_or_row
    unit = h.get("unit") or "px"
    g_p, g_i = h.get("G_planimetric"), h.get("G_intercept")
    g_text = ("G n/a (no pixel size)" if g_p is None and g_i is None
              else f"G {f(g_p)} (planimetric), {f(g_i)} (intercept)")
    return f"{name}: {h.get('n_grains')} grains, mean ECD {f(h.get('mean_ecd'))} {unit}, {g_text}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``napari-grains measure``."""
    parser.add_argument("boundaries", nargs="+", type=Path, metavar="BOUNDARIES",
                        help="boundary map images (PNG/TIFF, boundaries bright) or folders")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the results")
    parser.add_argument("--image", type=Path, metavar="IMAGE",
                        help="the micrograph, for the overlay (only with one boundary map)")
    parser.add_argument("--invert", action="store_true",
                        help="boundaries are dark on a bright background")
    add_measure_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``napari-grains measure``; return the exit status."""
    from napari_grains.batch import summary_row, write_summary_csv
    from napari_grains.io import atomic_write, list_images, read_image
    from napari_grains.measure import (
        MeasureParams,
        measure,
        provenance,
        read_boundaries,
        unique_stems,
    )
    from napari_grains.stats import combine_fields

    files = list_images(args.boundaries)
    if not files:
        raise GrainsError("no boundary map images found in the paths given.")
    if args.image is not None and len(files) > 1:
        raise GrainsError("--image goes with a single boundary map; measure maps one by one "
                          "to overlay each on its image.")
    ps_given, unit_given = pixel_size(args)
    params = MeasureParams(**measure_params(args)).validate()
    hist = histogram_options(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise GrainsError(f"--out {out} is a file; give a folder for the results.")
    summary_csv = out / "summary.csv"
    if len(files) > 1 and summary_csv.exists() and not args.overwrite:
        raise GrainsError(f"{summary_csv} exists already; use --overwrite or another --out.")
    rows, summaries, failed = [], [], 0
    for path, stem in zip(files, unique_stems(files), strict=True):
        try:
            b, info = read_boundaries(path, invert=args.invert)
            if ps_given is not None:
                ps, unit, source = ps_given, unit_given, "given"
            elif info["pixel_size"] is not None:
                ps, unit, source = info["pixel_size"], info["unit"], "file"
            else:
                ps, unit, source = None, None, None
            image = None
            if args.image is not None:
                mg = read_image(args.image)
                image = mg.data
                if ps is None and mg.pixel_size is not None:
                    ps, unit, source = mg.pixel_size, mg.unit, "image file"
            prov = provenance(input_path=path, parameters={"measure": params.to_dict(),
                                                           "histogram": hist},
                              extra={"pixel_size_source": source,
                                     "image": str(args.image) if args.image else None})
            m = measure(b, pixel_size=ps, unit=unit, image=image, params=params, provenance=prov)
            m.save_all(out / stem, stem, overwrite=args.overwrite, histogram=hist)
        except GrainsError as exc:
            if len(files) == 1:  # nothing else to go on with: one plain error line
                text = str(exc)
                raise GrainsError(text if text.startswith(path.name)
                                  else f"{path.name}: {text}") from exc
            failed += 1
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
            rows.append(summary_row(stem, str(path), None, status="failed", error=str(exc)))
            continue
        print(headline_text(path.name, m.headline()) + f"  -> {out / stem}")
        for w in m.summary.get("warnings", []):
            print(f"warning: {path.name}: {w}", file=sys.stderr)
        rows.append(summary_row(stem, str(path), m.summary,
                                extra={"pixel_size_source": source, "output_dir": str(out / stem)}))
        summaries.append(m.summary)
    if len(files) > 1:
        write_summary_csv(summary_csv, rows)
        print(f"summary: {summary_csv}")
        if len(summaries) >= 2:
            import json

            fs = combine_fields(summaries)
            text = json.dumps(fs, indent=2, ensure_ascii=False)
            atomic_write(out / "field_statistics.json", lambda t: t.write_text(text),
                         overwrite=True)
            print(_field_text(fs))
    if failed == len(files):
        return 2
    return 1 if failed else 0


def _field_text(fs: dict) -> str:
    def f(x):
        return "n/a" if x is None else f"{x:.4g}"

    lines = [f"field statistics over {fs['n_fields']} images (95 % CI, %RA):"]
    d = fs["mean_equivalent_diameter"]
    lines.append(f"  mean ECD {f(d['mean'])} ± {f(d['ci'])} {d['unit']} "
                 f"(%RA {f(d['relative_accuracy_pct'])})")
    if fs.get("grains_per_mm2"):
        na, ll = fs["grains_per_mm2"], fs["mean_intercept_mm"]
        lines.append(f"  N_A {f(na['mean'])} ± {f(na['ci'])} /mm² (%RA "
                     f"{f(na['relative_accuracy_pct'])}) -> G {f(na['G'])}")
        lines.append(f"  mean intercept {f(ll['mean'])} ± {f(ll['ci'])} mm (%RA "
                     f"{f(ll['relative_accuracy_pct'])}) -> G {f(ll['G'])}")
    else:
        lines.append(f"  {fs['note']}")
    return "\n".join(lines)
