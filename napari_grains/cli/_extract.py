"""``napari-grains extract``: boundary maps of micrographs, with overlays and iteration stacks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "extract grain-boundary maps from micrographs (boundaries, overlay, iteration stack)"

DESCRIPTION = """\
Run the pipeline (preprocess -> edge stack -> Net1 -> Net2 until convergence -> threshold) on
each IMAGE (files or folders) and write, per image, into DIR:

  <stem>_boundaries.png   uint8, 255 = boundary, same size as the input
  <stem>_overlay.png      the gray image with the boundaries in red
  <stem>_iterations.tif   uint8 stack: Net1's initial guess, then every Net2 iteration (x255)

Modes: 'native' (default) runs at the image's own resolution times --scale ('auto' estimates
the factor that gives the grains the size the model was trained on); 'paper' squeezes every
image to 96x496 like the authors' script. Examples:
  napari-grains extract micrograph.tif --out results/
  napari-grains extract images/ --out results/ --scale 2
  napari-grains extract TEM.png --out results/ --mode paper --convergence script
"""


def _scale(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale takes a number or 'auto', not {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="image files (PNG, JPEG, TIFF, microscope formats) or folders")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created)")
    parser.add_argument("--model", default="default", metavar="NAME|PATH",
                        help="model name (e.g. 'paper') or a model folder (default: default)")
    parser.add_argument("--mode", choices=("native", "paper"), default="native",
                        help="native resolution (default) or the authors' 96x496 squeeze")
    parser.add_argument("--scale", type=_scale, default="auto", metavar="FACTOR|auto",
                        help="native mode: resize factor before the nets, or 'auto' (default)")
    parser.add_argument("--threshold", type=float, default=0.2,
                        help="boundary where the final map exceeds this (default 0.2)")
    parser.add_argument("--tolerance", type=float, default=0.003,
                        help="Net2 convergence factor (default 0.003, the paper's)")
    parser.add_argument("--max-iterations", type=int, default=50,
                        help="cap on Net2 iterations (default 50)")
    parser.add_argument("--convergence", choices=("paper", "script"), default="paper",
                        help="stopping rule: the paper's (default) or the authors' script's "
                             "uint8 rule")
    parser.add_argument("--extend-ends", type=float, default=None, metavar="K",
                        help="prolong loose boundary ends to the next boundary, at most K mean "
                             "grain intercepts (default 0.5; 0 with --mode paper --convergence "
                             "script, the authors' script; 0: off)")
    parser.add_argument("--split-concave", type=float, default=None, metavar="D",
                        help="split merged grains with a straight cut between two concave "
                             "corners at least D x the grain's diameter deep (default 0.05; 0 "
                             "with --mode paper --convergence script; 0: off)")
    parser.add_argument("--tile-size", type=int, default=1024,
                        help="native mode: tile size for large images (multiple of 16)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results that exist already")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _outputs(out: Path, stem: str) -> dict[str, Path]:
    return {
        "boundaries": out / f"{stem}_boundaries.png",
        "overlay": out / f"{stem}_overlay.png",
        "iterations": out / f"{stem}_iterations.tif",
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from napari_grains.errors import GrainsError
    from napari_grains.extract import ExtractParams, extract
    from napari_grains.io import atomic_write, color_note, list_images, read_image, write_image
    from napari_grains.measure import unique_stems
    from napari_grains.nets import load_model
    from napari_grains.plots import overlay_rgb

    script = (args.mode, args.convergence) == ("paper", "script")  # the authors' script
    params = ExtractParams(
        mode=args.mode, scale=args.scale, threshold=args.threshold, tolerance=args.tolerance,
        max_iterations=args.max_iterations, convergence=args.convergence,
        tile_size=args.tile_size,
        extend_ends=(args.extend_ends if args.extend_ends is not None
                     else 0.0 if script else ExtractParams.extend_ends),
        split_concave=(args.split_concave if args.split_concave is not None
                       else 0.0 if script else ExtractParams.split_concave),
    ).validated()
    paths = list_images(args.images)
    if not paths:
        raise GrainsError("no images found in " + ", ".join(map(str, args.images)))
    stems = unique_stems(paths)  # a.png and a.tif -> a, a-2, as 'run' and 'measure' name them
    if args.out.exists() and not args.out.is_dir():
        raise GrainsError(f"--out {args.out} is a file; give a folder for the results.")
    model = load_model(args.model, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)

    failed: list[tuple[Path, str]] = []
    bar = tqdm(total=len(paths), unit="image", disable=args.quiet, file=sys.stderr)
    for path, stem in zip(paths, stems):
        bar.set_description(path.name)
        try:
            outs = _outputs(args.out, stem)
            existing = [str(p) for p in outs.values() if p.exists()]
            if existing and not args.overwrite:
                raise GrainsError(
                    f"results exist already ({', '.join(existing)}); use --overwrite to "
                    "replace them"
                )
            mg = read_image(path)
            note = color_note(mg)
            if note:  # shown even with --quiet: it bears on the result
                tqdm.write(f"note: {note}", file=sys.stderr)

            def show(event, _bar=bar):
                _bar.set_postfix_str(event.message[:60], refresh=True)

            res = extract(mg, model, params, callback=show)
            write_image(outs["boundaries"], res.boundaries.astype(np.uint8) * 255)
            write_image(outs["overlay"], overlay_rgb(mg.data, res.boundaries, boundaries=res.boundaries,
                                                     boundary_color=(255, 0, 0)))
            stack = np.concatenate(
                [np.floor(res.initial * 255 + 0.5).astype(np.uint8)[None], res.iterations]
            )

            def _tif(tmp: Path, _stack=stack, _res=res) -> None:
                import tifffile

                tifffile.imwrite(
                    tmp, _stack, compression="zlib", photometric="minisblack",
                    metadata={"axes": "ZYX"},
                    description=(
                        f"napari-grains extract: frame 0 = Net1 initial guess, frames 1.."
                        f"{_res.n_iterations} = Net2 iterations (x255); model {_res.model_name}; "
                        f"mode {_res.params.mode}; scale {_res.params.scale}; "
                        f"converged {_res.converged}"
                    ),
                )

            atomic_write(outs["iterations"], _tif)
            if not args.quiet:
                tqdm.write(
                    f"{path.name}: {res.n_iterations} Net2 iterations "
                    f"({'converged' if res.converged else 'hit the cap'}), scale "
                    f"{res.preprocessed.scale[0]:.3g}, {int(res.boundaries.sum())} boundary "
                    "pixels",
                    file=sys.stderr,
                )
        except GrainsError as exc:
            failed.append((path, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one image's bug must not end the batch
            failed.append((path, f"unexpected {type(exc).__name__}: {exc}"))
        bar.update(1)
    bar.close()
    if len(paths) == 1 and failed:
        raise GrainsError(failed[0][1])
    if failed:
        print(f"napari-grains extract: {len(failed)} of {len(paths)} image(s) failed "
              "(the others' results are written):", file=sys.stderr)
        for p, msg in failed:
            print(f"  {p}: {msg}", file=sys.stderr)
        return 2 if len(failed) == len(paths) else 1
    return 0
