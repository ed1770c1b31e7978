"""napari reader: micrographs as gray image layers that know their pixel size.

The reader claims PNG, JPEG, TIFF, BMP and the microscope formats of
:mod:`napari_grains.formats` (DM3/DM4, MRC, SER/EMI, EMD, ELID, BCF) and reads them with
:func:`napari_grains.io.read_image`, the same function the command line uses, so what napari
shows is what ``napari-grains run`` computes on.

The pixel size goes on the layer's ``scale`` (both axes) and its unit on the layer's
``units``; ``metadata`` keeps ``pixel_size``, ``unit`` and ``path`` for the docks.

A file the reader claims but cannot parse (truncated, corrupt, a spectrum instead of an
image) is reported as one napari error notification that says what is wrong and what to
do, and nothing is added. Raising instead would, in napari 0.9, wrap our message in a
``ReaderPluginError`` ("Tried to read ... Scroll up to see the full stack trace ...") and
print a traceback, or open the reader-choice dialog when another plugin also claims the
extension: a worse message for the same problem.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_grains import formats
from napari_grains.errors import GrainsError
from napari_grains.io import PLAIN_EXTENSIONS, Micrograph, color_note, read_image

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]
LayerData = tuple[Any, ...]

#: Every extension the reader claims (also listed in ``napari.yaml``).
READER_EXTENSIONS: tuple[str, ...] = tuple(PLAIN_EXTENSIONS) + formats.EXTENSIONS

# napari's "this file holds no layers" value: nothing is added and no error is raised
_NOTHING: list[LayerData] = [(None,)]


def _claims(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix.lower() in READER_EXTENSIONS and not p.is_dir()


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_micrographs` when every path is a micrograph file we read, else None.

    Parameters
    ----------
    path : str, Path or list of them
        What napari was asked to open.

    Returns
    -------
    callable or None
        None for folders, unknown extensions and lists with any such path, so napari can
        offer them to other readers.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(isinstance(p, (str, os.PathLike)) and _claims(p) for p in paths):
        return None
    return read_micrographs


def micrograph_layer_data(m: Micrograph, name: str | None = None) -> LayerData:
    """Turn a :class:`~napari_grains.io.Micrograph` into napari image layer data.

    Parameters
    ----------
    m : Micrograph
        The image and its calibration.
    name : str, optional
        Layer name; defaults to the file's stem.

    Returns
    -------
    tuple
        ``(data, kwargs, "image")`` with ``kwargs`` holding ``name``, ``scale`` (the pixel
        size on both axes, or 1 when unknown), ``units`` (when known) and ``metadata`` with
        ``pixel_size``, ``unit``, ``path`` and ``source`` (what the file said).
    """
    stem = m.path.stem if m.path is not None else "micrograph"
    size = float(m.pixel_size) if m.pixel_size else 1.0
    kwargs: dict[str, Any] = {
        "name": name or stem,
        "scale": (size, size),
        "metadata": {
            "pixel_size": m.pixel_size,
            "unit": m.unit,
            "path": str(m.path) if m.path is not None else None,
            "source": dict(m.metadata),
        },
    }
    if m.pixel_size and m.unit:
        kwargs["units"] = (m.unit, m.unit)
    return (m.data, kwargs, "image")


def read_micrographs(path: PathOrPaths) -> list[LayerData]:
    """Read one or more micrograph files into image layer data.

    Files that fail to read are reported with :func:`napari.utils.notifications.show_error`
    (the :class:`~napari_grains.errors.GrainsError` message) and skipped. A colour image is
    read as gray; :func:`napari.utils.notifications.show_info` says so
    (:func:`napari_grains.io.color_note`).

    Parameters
    ----------
    path : str, Path or list of them

    Returns
    -------
    list of tuple
        One ``(data, kwargs, "image")`` per readable file (see :func:`micrograph_layer_data`),
        or napari's empty sentinel ``[(None,)]`` when none could be read.
    """
    from napari.utils.notifications import show_error, show_info

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            mg = read_image(p)
        except GrainsError as exc:
            show_error(f"napari-grains could not open {Path(p).name}: {exc}")
            continue
        layers.append(micrograph_layer_data(mg))
        note = color_note(mg)
        if note:
            show_info(note)
    return layers or list(_NOTHING)
