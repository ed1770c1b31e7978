"""The ``napari-grains`` command line.

Each subcommand lives in its own module ``napari_grains/cli/_<name>.py`` that defines

* ``HELP``: one line shown in ``napari-grains --help``;
* ``add_arguments(parser)``: adds its options to an ``argparse.ArgumentParser``;
* ``run(args) -> int``: does the work and returns the exit status.

Errors a user can cause are raised as :class:`napari_grains.GrainsError`; ``main`` prints their
message (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_grains import __version__
from napari_grains.errors import GrainsError

#: Subcommands in the order ``--help`` lists them.
SUBCOMMANDS = ["run", "extract", "measure", "synth", "train", "evaluate", "gui"]

DESCRIPTION = """\
Find crystal grain boundaries in TEM, SEM and optical micrographs and measure the grains.

Typical use:
  napari-grains run micrograph.tif --out results/      boundaries + grain statistics
  napari-grains extract micrograph.tif --out results/  boundaries only
  napari-grains gui micrograph.tif                     open it in napari
Run 'napari-grains COMMAND --help' for the options of one command.
"""


def _load(name: str):
    try:
        return importlib.import_module(f"napari_grains.cli._{name}")
    except ModuleNotFoundError as exc:  # a subcommand not built yet in this checkout
        if exc.name == f"napari_grains.cli._{name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-grains",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"napari-grains {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except GrainsError as exc:
        print(f"napari-grains {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-grains {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
