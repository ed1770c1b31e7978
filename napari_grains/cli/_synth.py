"""``napari-grains synth``: write synthetic training pairs to a folder."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HELP = "generate synthetic training pairs (image, boundary target, labels) into a folder"

DESCRIPTION = """\
Generate concept-oriented synthetic training pairs (the paper's Methods A/B) and write them as

  DIR/images/NNNNN.png    input micrograph, 8-bit gray (--format tiff: float32 .tif)
  DIR/targets/NNNNN.png   boundary target, 0 = bulk, 255 = boundary
  DIR/labels/NNNNN.tif    grain labels, int32, 1..n tiling the image
  DIR/manifest.jsonl      one JSON line per pair: seed, index, all parameters, drawn values

The defaults reproduce the paper (96x496 images, 3000 pairs). Examples:
  napari-grains synth --count 8 --out pairs/ --contact-sheet
  napari-grains synth --out paper_set/                       the paper's 3000 pairs
  napari-grains synth --preset realistic --count 20000 --out general/
  napari-grains synth --count 100 --out d/ --realism blur=0.5 twins=1 --mean-diameter 8 40
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from napari_grains.synth import Realism

    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="number of pairs (default: the preset's, 3000 for the paper)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data set; pair i uses SeedSequence(seed, spawn_key=(i,)) "
                             "(default 0)")
    parser.add_argument("--preset", choices=("paper", "realistic"), default="paper",
                        help="starting parameters: the paper's generator, or all realism "
                             "concepts on for a general model (default paper)")
    parser.add_argument("--params", type=Path, metavar="JSON",
                        help="a JSON file of SynthParams fields (as in a manifest's 'config'); "
                             "applied over the preset, before the options below")
    g = parser.add_argument_group("geometry")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size in px")
    g.add_argument("--mean-diameter", type=float, nargs=2, metavar=("LO", "HI"),
                   help="range of the per-image mean grain diameter (ECD) in px")
    g.add_argument("--sigma", type=float, nargs=2, metavar=("LO", "HI"),
                   help="range of the per-image sigma of ln(diameter)")
    g.add_argument("--thickness", type=int, metavar="PX", help="boundary thickness of the target")
    n = parser.add_argument_group("concepts and noise (paper stages)")
    n.add_argument("--no-overlay", action="store_true", help="no flipped, weakened overlay")
    n.add_argument("--overlay-weight", type=float, metavar="W", help="weakening factor (paper 0.1)")
    n.add_argument("--no-salt-pepper", action="store_true", help="no salt & pepper noise")
    n.add_argument("--salt-pepper-density", type=float, metavar="D", help="paper 0.05")
    n.add_argument("--no-gaussian", action="store_true", help="no Gaussian noise")
    n.add_argument("--gaussian-variance", type=float, metavar="V", help="paper 0.01 (0..1 scale)")
    n.add_argument("--no-poisson", action="store_true", help="no Poisson noise")
    n.add_argument("--no-median", action="store_true", help="no median filter")
    n.add_argument("--median-size", type=int, metavar="PX", help="paper 5")
    r = parser.add_argument_group("realism (off in the paper preset)")
    r.add_argument("--realism", nargs="+", default=[], metavar="NAME[=P]",
                   help="apply these concepts to a fraction P of the images (default P=1): "
                        + ", ".join(Realism.CONCEPTS))
    r.add_argument("--twins-not-in-target", action="store_true",
                   help="twin boundaries appear in the image only, not in target and labels")
    o = parser.add_argument_group("output")
    o.add_argument("--format", choices=("png", "tiff"), default="png",
                   help="file type of the input images (default png)")
    o.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes (default 0: all cores)")
    o.add_argument("--overwrite", action="store_true",
                   help="write into a folder that already holds a data set")
    o.add_argument("--contact-sheet", type=int, nargs="?", const=8, default=None, metavar="K",
                   help="also save DIR/contact_sheet.png showing the first K pairs (default 8)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def build_params(args: argparse.Namespace):
    """The :class:`SynthParams` the options describe (raises GrainsError when invalid)."""
    import dataclasses

    from napari_grains.errors import GrainsError
    from napari_grains.synth import Realism, SynthParams

    p = SynthParams.realistic() if args.preset == "realistic" else SynthParams.paper()
    if args.params is not None:
        try:
            extra = json.loads(Path(args.params).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GrainsError(f"no such parameter file: {args.params}") from None
        except json.JSONDecodeError as exc:
            raise GrainsError(f"{args.params} is not valid JSON ({exc}).") from None
        if not isinstance(extra, dict):
            raise GrainsError(f"{args.params} must hold a JSON object of SynthParams fields.")
        extra = extra.get("config", extra)  # a manifest line works too
        if not isinstance(extra, dict) or not isinstance(extra.get("realism", {}) or {}, dict):
            raise GrainsError(f"{args.params}: 'config' and 'realism' must be JSON objects of "
                              "SynthParams / Realism fields.")
        extra = dict(extra)
        merged = p.to_dict()
        realism = merged["realism"]
        realism.update(extra.pop("realism", {}) or {})
        merged.update(extra)
        merged["realism"] = realism
        try:
            p = SynthParams.from_dict(merged)
        except (TypeError, ValueError, AttributeError) as exc:
            raise GrainsError(f"{args.params}: a parameter has the wrong type or value ({exc}); "
                              "see 'napari-grains synth --help' and docs/synthetic-data.md.") from None
    changes = {}
    if args.size:
        changes.update(height=args.size[0], width=args.size[1])
    if args.mean_diameter:
        changes["mean_diameter"] = tuple(args.mean_diameter)
    if args.sigma:
        changes["sigma"] = tuple(args.sigma)
    if args.thickness is not None:
        changes["boundary_thickness"] = args.thickness
    for flag, name in (("no_overlay", "overlay"), ("no_salt_pepper", "salt_pepper"),
                       ("no_gaussian", "gaussian"), ("no_poisson", "poisson"),
                       ("no_median", "median")):
        if getattr(args, flag):
            changes[name] = False
    for opt in ("overlay_weight", "salt_pepper_density", "gaussian_variance", "median_size"):
        if getattr(args, opt) is not None:
            changes[opt] = getattr(args, opt)
    realism = dataclasses.replace(p.realism)
    for item in args.realism:
        name, _, prob = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in Realism.CONCEPTS:
            raise GrainsError(f"unknown realism concept {name!r}; choose from "
                              f"{', '.join(Realism.CONCEPTS)}.")
        try:
            value = float(prob) if prob else 1.0
        except ValueError:
            raise GrainsError(f"--realism {item}: the part after '=' must be a probability "
                              "from 0 to 1.") from None
        setattr(realism, name, value)
    if args.twins_not_in_target:
        realism.twins_in_target = False
    p = dataclasses.replace(p, realism=realism, **changes)
    return p.validate()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_grains.errors import GrainsError
    from napari_grains.synth import contact_sheet, iter_save_pairs, load_pair

    params = build_params(args)
    count = params.count if args.count is None else args.count
    if count < 1:
        raise GrainsError("--count must be at least 1.")
    t0 = time.perf_counter()
    records = []
    written = iter_save_pairs(args.out, count, params, args.seed, workers=args.workers,
                              fmt=args.format, overwrite=args.overwrite)
    with tqdm(total=count, unit="pair", desc="synth", disable=args.quiet,
              file=sys.stderr) as bar:
        for rec in written:
            if len(records) < (args.contact_sheet or 0):
                records.append(rec)
            bar.update(1)
    dt = time.perf_counter() - t0
    print(f"wrote {count} pairs to {args.out} ({count / dt:.1f} pairs/s); "
          f"manifest: {Path(args.out) / 'manifest.jsonl'}")
    if args.contact_sheet:
        pairs = [load_pair(args.out, rec) for rec in records]
        sheet = contact_sheet(pairs, Path(args.out) / "contact_sheet.png",
                              title=f"napari-grains synth ({args.preset} preset, seed "
                                    f"{args.seed})")
        print(f"contact sheet: {sheet}")
    return 0
