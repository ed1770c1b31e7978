"""Microscope file formats, read through RosettaSciIO.

:func:`napari_grains.io.read_image` asks :func:`handles` first and hands the file to
:func:`read` when it says yes, so every face of the project (command line, batch, napari)
reads the same formats the same way.

Formats (by extension)
----------------------
======================  =====================================  =========================
extension               format                                 RosettaSciIO plugin
======================  =====================================  =========================
``.dm3``, ``.dm4``      Gatan DigitalMicrograph                ``rsciio.digitalmicrograph``
``.mrc``                MRC (EPU, SerialEM, IMOD, DE, ...)     ``rsciio.mrc``
``.ser``, ``.emi``      FEI / Thermo Fisher TIA                ``rsciio.tia``
``.emd``                EMD (Berkeley NCEM, Thermo Velox)      ``rsciio.emd``
``.elid``               Thermo Fisher Phenom SEM               ``rsciio.phenom``
``.bcf``                Bruker Esprit (its SEM/BSE image)      ``rsciio.bruker``
======================  =====================================  =========================

Why RosettaSciIO rather than ncempy: see ``docs/plugin.md`` (it reads every format ncempy
reads that holds images, plus Phenom, Bruker and the TIA/EMD variants, and pulls in no HDF5
compression plugin or matplotlib; both are GPL-3.0-or-later).

The pixel size is taken from the file's calibrated x axis and converted to nm, µm or mm
(whichever gives a number between 0.1 and 100 000); a file calibrated in reciprocal units
(a diffraction pattern) or not calibrated at all gives ``pixel_size=None``.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_grains.errors import GrainsError
from napari_grains.io import Micrograph, to_gray_float

#: extension -> (RosettaSciIO module, format name users know, extra reader arguments)
FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    ".dm3": ("rsciio.digitalmicrograph", "Gatan DigitalMicrograph (DM3)", {}),
    ".dm4": ("rsciio.digitalmicrograph", "Gatan DigitalMicrograph (DM4)", {}),
    ".mrc": ("rsciio.mrc", "MRC", {}),
    ".ser": ("rsciio.tia", "FEI TIA (SER)", {}),
    ".emi": ("rsciio.tia", "FEI TIA (EMI)", {}),
    ".emd": ("rsciio.emd", "EMD (NCEM / Velox)", {}),
    ".elid": ("rsciio.phenom", "Phenom ELID", {}),
    ".bcf": ("rsciio.bruker", "Bruker BCF", {"select_type": "image"}),
}

#: Extensions :func:`handles` accepts, for file dialogs and the napari manifest.
EXTENSIONS: tuple[str, ...] = tuple(FORMATS)

# length units in nanometres
_TO_NM = {
    "pm": 1e-3,
    "å": 0.1, "a": 0.1, "angstrom": 0.1, "ångström": 0.1, "ang": 0.1,
    "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0,
    "µm": 1e3, "μm": 1e3, "um": 1e3, "micron": 1e3, "microns": 1e3, "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6, "cm": 1e7, "m": 1e9,
}


def handles(path: str | os.PathLike) -> bool:
    """Whether :func:`read` is the reader for ``path`` (decided by its extension alone).

    Parameters
    ----------
    path : str or Path
        A file name; the file need not exist.

    Returns
    -------
    bool
        True for the extensions in :data:`EXTENSIONS` (any letter case).
    """
    return Path(path).suffix.lower() in FORMATS


def normalize_length(value: float | None, unit: Any) -> tuple[float | None, str | None]:
    """Express a calibrated length in nm, µm or mm.

    Parameters
    ----------
    value : float or None
        The length (e.g. a pixel size) in ``unit``.
    unit : str or None
        Its unit as a file writes it (``"nm"``, ``"µm"``, ``"um"``, ``"Å"``, ``"m"``, ...).

    Returns
    -------
    (float, str) or (None, None)
        The same length in ``"nm"`` below 100 000 nm, ``"µm"`` below 100 000 µm, else
        ``"mm"``; ``(None, None)`` when the unit is not a length (pixels, ``1/nm``, unknown)
        or the value is not a positive finite number.

    Examples
    --------
    >>> normalize_length(2.5, "Å")
    (0.25, 'nm')
    >>> normalize_length(1.5e-7, "m")
    (150.0, 'nm')
    """
    if value is None or not isinstance(unit, str):
        return None, None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None, None
    factor = _TO_NM.get(unit.strip().replace("\u00b5", "µ").lower())
    if factor is None or not np.isfinite(v) or v <= 0:
        return None, None
    nm = v * factor
    if nm < 1e5:
        return nm, "nm"
    if nm < 1e11:
        return nm / 1e3, "µm"
    return nm / 1e6, "mm"


def read(path: str | os.PathLike) -> Micrograph:
    """Read a microscope file into a :class:`~napari_grains.io.Micrograph`.

    The first 2-D image in the file is read (a DM file's thumbnail is skipped by the
    library; a Bruker file's EDS map is not read); its intensities are scaled to [0, 1]
    as :func:`napari_grains.io.to_gray_float` does, and its calibration becomes
    ``pixel_size`` / ``unit``.

    Parameters
    ----------
    path : str or Path
        A file with one of the extensions in :data:`EXTENSIONS`.

    Returns
    -------
    Micrograph
        ``metadata`` holds ``format``, ``title``, ``dtype``, ``shape``, ``pixel_size_yx``
        (the calibration of both axes, in ``unit``) and ``instrument`` (what the file says
        of the microscope, may be empty).

    Raises
    ------
    GrainsError
        When the extension is not a microscope format, the file is missing or corrupt, or
        it holds no single 2-D image (a spectrum, a stack, a 4-D scan).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise GrainsError(
            f"{p.name}: '{ext or '(none)'}' is not a microscope format napari-grains knows "
            f"({', '.join(EXTENSIONS)})."
        )
    if not p.is_file():
        raise GrainsError(f"no such file: {p}")
    module_name, fmt, kwargs = FORMATS[ext]
    reader = _reader_for(module_name, fmt)
    try:
        signals = reader(str(p), **kwargs)
    except GrainsError:
        raise
    except Exception as exc:  # the library's own error: say which file and what to do
        raise GrainsError(
            f"could not read {p.name} as {fmt}: the file looks corrupt, truncated or is not a "
            f"{fmt} file ({type(exc).__name__}: {exc}). Re-export it from the microscope "
            "software, or save the image as TIFF."
        ) from exc
    signal = _pick_image(signals, p.name)
    arr, (pixel_y, pixel_x), unit = _image_and_calibration(signal)
    if ext == ".mrc" and not _mrc_is_calibrated(signal):
        pixel_x = pixel_y = None  # RosettaSciIO reports 1 nm for an uncalibrated MRC
    pixel_size, norm_unit = normalize_length(pixel_x, unit)
    pixel_y_norm, _ = normalize_length(pixel_y, unit)
    meta_in = signal.get("metadata") or {}
    general = meta_in.get("General", {}) if isinstance(meta_in, dict) else {}
    metadata = {
        "format": fmt,
        "title": general.get("title", "") if isinstance(general, dict) else "",
        "dtype": str(arr.dtype),
        "shape": tuple(int(s) for s in arr.shape),
        "pixel_size_yx": (pixel_y_norm, pixel_size) if pixel_size is not None else None,
        "instrument": dict(meta_in.get("Acquisition_instrument", {}) or {}),
    }
    data = to_gray_float(arr, name=p.name)
    return Micrograph(data=data, pixel_size=pixel_size, unit=norm_unit, path=p, metadata=metadata)


def _reader_for(module_name: str, fmt: str):
    """Import a RosettaSciIO plugin, quietening its notice that numba is absent."""
    logger = logging.getLogger("RosettaSciIO")
    quiet = _NoNumbaNotice()
    logger.addFilter(quiet)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GrainsError(
            f"reading {fmt} files needs RosettaSciIO's '{module_name}' plugin, which failed to "
            f"import ({exc}); install the microscope-format extra with: "
            f"pip install \"napari-grains[formats]\""
        ) from exc
    finally:
        logger.removeFilter(quiet)
    return module.file_reader


class _NoNumbaNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "numba" not in record.getMessage()


def _mrc_is_calibrated(signal: dict) -> bool:
    """An MRC file is calibrated when its cell size and sampling (or an FEI header) say so."""
    original = signal.get("original_metadata") or {}
    if original.get("fei_header") is not None:
        return True
    header = original.get("std_header") or {}
    try:
        return float(header.get("Xlen", 0)) > 0 and int(header.get("MX", 0)) > 0
    except (TypeError, ValueError):
        return False


def _squeezed_shape(signal: dict) -> tuple[int, ...]:
    return tuple(int(s) for s in np.shape(signal["data"]) if s > 1)


def _pick_image(signals: list[dict], name: str) -> dict:
    """The first signal that is one 2-D image (gray or RGB)."""
    if not signals:
        raise GrainsError(f"{name} holds no data; is it an empty or truncated file?")
    for sig in signals:
        data = sig["data"]
        if np.asarray(data).dtype.names and len(_squeezed_shape(sig)) == 2:  # RGB(A) struct
            return sig
        if len(_squeezed_shape(sig)) == 2:
            return sig
    shapes = ", ".join(str(tuple(np.shape(s["data"]))) for s in signals)
    raise GrainsError(
        f"{name} holds no single 2-D image (its data have shapes {shapes}): napari-grains "
        "works on one image at a time. For a stack or a series, open it in napari or "
        "HyperSpy, pick one frame and save it as TIFF."
    )


def _image_and_calibration(signal: dict) -> tuple[np.ndarray, tuple[float | None, float | None],
                                                  str | None]:
    data = np.asarray(signal["data"])
    axes = [ax for ax in signal.get("axes", []) if int(ax.get("size", 2)) > 1]
    if data.dtype.names:  # DigitalMicrograph RGB images come as a structured dtype
        fields = [f for f in ("R", "G", "B") if f in data.dtype.names] or list(data.dtype.names)[:3]
        data = np.stack([data[f] for f in fields], axis=-1)
    data = np.squeeze(data)
    scales: list[float | None] = [None, None]
    units = set()
    if len(axes) == 2:
        for i, ax in enumerate(axes):
            scale = ax.get("scale")
            scales[i] = float(scale) if isinstance(scale, (int, float, np.number)) else None
            unit = ax.get("units")
            units.add(unit if isinstance(unit, str) else None)
    unit = units.pop() if len(units) == 1 else None
    return data, (scales[0], scales[1]), unit
