"""Measure the grains of a boundary map, and export the results.

:func:`measure` is the one-call entry: boundary map in, :class:`Measurement` out. The
:class:`Measurement` carries the labels, the per-grain table, the summary statistics, the
pixel size and the provenance, and writes each export format through
:func:`napari_grains.io.atomic_write`: a failed write never leaves a half-written file, and an
existing file is only replaced when ``overwrite=True``.

Examples
--------
>>> import numpy as np
>>> b = np.zeros((101, 101), bool); b[::10, :] = True; b[:, ::10] = True
>>> m = measure(b, pixel_size=0.5, unit="µm", close_gaps=0)
>>> m.summary["n_grains"], m.summary["n_cut_by_border"], float(m.table["area"].median())
(100, 36, 81.0)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_grains import __version__
from napari_grains.errors import GrainsError
from napari_grains.grains import (
    _check_pixel_size,
    border_labels,
    grain_table,
    label_grains,
)
from napari_grains.io import atomic_write, sha256_file
from napari_grains.stats import interconnect_statistics, lognormal_fit, summarize

__all__ = [
    "EXPORT_NAMES",
    "MeasureParams",
    "Measurement",
    "measure",
    "measure_labels",
    "provenance",
    "sha256_file",
]

#: File names :meth:`Measurement.save_all` writes, by export kind (``{stem}`` is replaced).
EXPORT_NAMES = {
    "csv": "{stem}_grains.csv",
    "json": "{stem}_summary.json",
    "labels": "{stem}_labels.tif",
    "histogram_png": "{stem}_histogram.png",
    "histogram_svg": "{stem}_histogram.svg",
    "overlay": "{stem}_overlay.png",
}

_PACKAGES = ("numpy", "scipy", "scikit-image", "pandas", "matplotlib", "tifffile",
             "opencv-python-headless", "torch")


@dataclass
class MeasureParams:
    """Every parameter of a measurement (recorded in the provenance).

    Attributes
    ----------
    close_gaps, thin, min_area, fill_boundaries
        See :func:`napari_grains.grains.label_grains`.
    include_border : bool
        Include grains cut by the border in the size statistics.
    line_axis : {None, "x", "y"}
        The image shows a metal line along this axis whose sidewalls are the image edges:
        grains are then cut only by the line's ends, and interconnect statistics (bamboo
        fraction, grain length along the line) are added to the summary.
    intercept_angles : tuple of float
        Test-line directions of the lineal-intercept procedure, degrees.
    intercept_spacing : float or None
        Test-line spacing in px (None: 1/20 of the shorter side, at least 4).
    """

    close_gaps: int = 3
    thin: bool = True
    min_area: int = 10
    fill_boundaries: bool = False
    include_border: bool = False
    line_axis: str | None = None
    intercept_angles: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0)
    intercept_spacing: float | None = None

    def validate(self) -> MeasureParams:
        """Check the values; raise :class:`GrainsError` saying what to change."""
        if self.close_gaps < 0:
            raise GrainsError("close_gaps must be 0 (off) or a gap width in pixels.")
        if self.min_area < 0:
            raise GrainsError("min_area must be 0 or more pixels.")
        if self.line_axis not in (None, "x", "y"):
            raise GrainsError("line_axis must be None, 'x' (horizontal line) or 'y' (vertical).")
        if not tuple(self.intercept_angles):
            raise GrainsError("give at least one intercept test-line angle.")
        if self.intercept_spacing is not None and not self.intercept_spacing > 0:
            raise GrainsError("intercept_spacing must be a positive number of pixels.")
        self.intercept_angles = tuple(float(a) for a in self.intercept_angles)
        return self

    def to_dict(self) -> dict:
        """Plain dictionary of the parameters."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "napari-grains": __version__}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(
    *,
    input_path: str | os.PathLike | None = None,
    model=None,
    parameters: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Where a result came from: input file and checksum, model, parameters, versions.

    Parameters
    ----------
    input_path : path, optional
        The micrograph or boundary map measured; its sha256 and size are recorded.
    model : GrainModel or dict, optional
        The model used for extraction (its name and the sha256 of its weights files, from
        its card), or a dict already describing it.
    parameters : dict, optional
        Every parameter of the run (extraction and measurement).
    extra : dict, optional
        Anything else to keep (e.g. the pixel size's source).

    Returns
    -------
    dict
        JSON-ready.
    """
    prov: dict = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": "napari-grains",
        "versions": _versions(),
        "input": None,
        "model": None,
        "parameters": parameters or {},
    }
    if input_path is not None:
        p = Path(input_path)
        prov["input"] = {"path": str(p.resolve()), "name": p.name,
                         "sha256": sha256_file(p), "size_bytes": p.stat().st_size}
    if model is not None:
        if isinstance(model, dict):
            prov["model"] = model
        else:
            card = getattr(model, "card", {}) or {}
            files = card.get("files", {}) or {}
            prov["model"] = {
                "name": getattr(model, "name", card.get("name")),
                "path": str(getattr(model, "path", "") or "") or None,
                "sha256": {k: (v.get("sha256") if isinstance(v, dict) else v)
                           for k, v in files.items()},
            }
    if extra:
        prov.update(extra)
    return prov


@dataclass
class Measurement:
    """Grains measured on one image.

    Attributes
    ----------
    labels : ndarray of int32, shape (rows, cols)
        Grain labels, 0 = boundary (unless boundaries were given back to the grains).
    table : pandas.DataFrame
        One row per grain (see :func:`napari_grains.grains.grain_table`), plus
        ``cut_by_border``.
    summary : dict
        Summary statistics (see :func:`napari_grains.stats.summarize`), JSON-ready.
    pixel_size : float or None
    unit : str or None
    image : ndarray of float32 or None
        The micrograph, for overlays.
    boundaries : ndarray of bool or None
        The boundary map measured.
    params : MeasureParams
    provenance : dict
    """

    labels: np.ndarray
    table: pd.DataFrame
    summary: dict
    pixel_size: float | None = None
    unit: str | None = None
    image: np.ndarray | None = None
    boundaries: np.ndarray | None = None
    params: MeasureParams = field(default_factory=MeasureParams)
    provenance: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- values
    @property
    def n_grains(self) -> int:
        """Number of grains."""
        return len(self.table)

    def diameters(self, *, physical: bool = True, include_border: bool | None = None
                  ) -> tuple[np.ndarray, str]:
        """Equivalent circle diameters and their unit.

        Parameters
        ----------
        physical : bool
            In the physical unit when the pixel size is known (else pixels).
        include_border : bool, optional
            Include grains cut by the border; default: as the summary was computed.
        """
        inc = self.params.include_border if include_border is None else include_border
        use = np.ones(len(self.table), bool) if inc else ~self.table["cut_by_border"].to_numpy(
            bool)
        d = self.table["equivalent_diameter"].to_numpy(float)[use]
        if physical and self.pixel_size is not None:
            return d * self.pixel_size, self.unit
        return d, "px"

    def headline(self) -> dict:
        """Grain count, mean ECD (with unit) and G from both E112 procedures."""
        s = self.summary
        unit = self.unit or "px"
        ecd = s["equivalent_diameter"].get(unit, s["equivalent_diameter"]["px"])
        e = s["astm_e112"]
        return {
            "n_grains": s["n_grains"],
            "mean_ecd": ecd["mean"],
            "unit": unit,
            "G_planimetric": (e["planimetric"] or {}).get("G"),
            "G_intercept": e["intercept"].get("G"),
        }

    # ---------------------------------------------------------------- figures
    def histogram(self, *, bins: int | Sequence[float] = 20, log: bool = False,
                  weights: str = "count", fit: bool = True, title: str | None = None):
        """Grain-size histogram figure (see :func:`napari_grains.plots.histogram_figure`)."""
        from napari_grains.plots import histogram_figure

        d, unit = self.diameters()
        lf = lognormal_fit(d, unit=unit) if fit else None
        return histogram_figure(d, bins=bins, log=log, weights=weights, fit=lf, unit=unit,
                                title=title)

    def overlay(self, *, show_labels: bool = True, title: str | None = None):
        """Boundaries and grain labels over the image (see :func:`plots.overlay_figure`)."""
        from napari_grains.plots import overlay_figure

        cut = self.table.loc[self.table["cut_by_border"], "label"].to_numpy()
        return overlay_figure(self.image, self.labels, show_labels=show_labels, title=title,
                              highlight=cut)

    # ---------------------------------------------------------------- exports
    def to_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Per-grain table as CSV (one row per grain; units in the column names)."""
        return atomic_write(path, lambda tmp: self.table.to_csv(tmp, index=False),
                            overwrite=overwrite)

    def to_dict(self) -> dict:
        """Summary, parameters, pixel size and provenance, JSON-ready."""
        from napari_grains.stats import _jsonable

        return _jsonable({
            "summary": self.summary,
            "pixel_size": self.pixel_size,
            "unit": self.unit,
            "parameters": self.params.to_dict(),
            "provenance": self.provenance,
        })

    def to_json(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Summary JSON with provenance."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                            overwrite=overwrite)

    def to_label_tiff(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Labels as an int32 TIFF, with the pixel size in the resolution tags when known
        (pixels per centimetre, which napari-grains, ImageJ/Fiji and most tools read back)."""
        import tifffile

        from napari_grains.grains import unit_to_mm

        labels = np.ascontiguousarray(self.labels, dtype=np.int32)
        kwargs: dict = {}
        if self.pixel_size is not None:
            per_cm = 10.0 / (self.pixel_size * unit_to_mm(self.unit))
            kwargs = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}

        def _w(tmp: Path) -> None:
            tifffile.imwrite(tmp, labels, compression="zlib", **kwargs)

        return atomic_write(path, _w, overwrite=overwrite)

    def to_histogram_png(self, path: str | os.PathLike, *, overwrite: bool = False,
                         **kwargs) -> Path:
        """Histogram as PNG (keyword arguments as :meth:`histogram`)."""
        return _save_figure(self.histogram(**kwargs), path, "png", overwrite)

    def to_histogram_svg(self, path: str | os.PathLike, *, overwrite: bool = False,
                         **kwargs) -> Path:
        """Histogram as SVG (keyword arguments as :meth:`histogram`)."""
        return _save_figure(self.histogram(**kwargs), path, "svg", overwrite)

    def to_overlay_png(self, path: str | os.PathLike, *, overwrite: bool = False,
                       **kwargs) -> Path:
        """Overlay of boundaries and grain labels on the image, as PNG."""
        return _save_figure(self.overlay(**kwargs), path, "png", overwrite)

    def export_paths(self, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
        """Where :meth:`save_all` writes each file."""
        out = Path(out_dir)
        return {k: out / v.format(stem=stem) for k, v in EXPORT_NAMES.items()}

    def save_all(self, out_dir: str | os.PathLike, stem: str, *, overwrite: bool = False,
                 histogram: dict | None = None) -> dict[str, Path]:
        """Write every export into ``out_dir`` (see :data:`EXPORT_NAMES`).

        All targets are checked before anything is written, so without ``overwrite`` an
        existing result set is refused as a whole rather than half replaced.

        Parameters
        ----------
        histogram : dict, optional
            Keyword arguments for :meth:`histogram` (bins, log, weights).

        Returns
        -------
        dict of str to Path
        """
        paths = self.export_paths(out_dir, stem)
        if not overwrite:
            existing = [str(p) for p in paths.values() if p.exists()]
            if existing:
                raise GrainsError(
                    f"results exist already ({', '.join(existing[:3])}"
                    f"{' ...' if len(existing) > 3 else ''}); use --overwrite to replace "
                    "them or choose another output folder."
                )
        hist = histogram or {}
        self.to_csv(paths["csv"], overwrite=True)
        self.to_label_tiff(paths["labels"], overwrite=True)
        self.to_histogram_png(paths["histogram_png"], overwrite=True, **hist)
        self.to_histogram_svg(paths["histogram_svg"], overwrite=True, **hist)
        self.to_overlay_png(paths["overlay"], overwrite=True)
        self.to_json(paths["json"], overwrite=True)  # last: its presence marks a full set
        return paths


def _save_figure(fig, path, fmt: str, overwrite: bool) -> Path:
    def _w(tmp: Path) -> None:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)

    return atomic_write(path, _w, overwrite=overwrite)


def measure_labels(
    labels: np.ndarray,
    *,
    pixel_size: float | None = None,
    unit: str | None = None,
    image: np.ndarray | None = None,
    boundaries: np.ndarray | None = None,
    params: MeasureParams | None = None,
    provenance: dict | None = None,
) -> Measurement:
    """Measure an existing label image (e.g. ground-truth labels of a synthetic sample).

    Parameters are as for :func:`measure`; ``params`` only uses the statistics options
    (``include_border``, ``line_axis``, intercept lines).
    """
    p = (params or MeasureParams()).validate()
    ps, u = _check_pixel_size(pixel_size, unit)
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise GrainsError(f"labels must be a 2-D integer image, got {lab.dtype} {lab.shape}.")
    lab = lab.astype(np.int32, copy=False)
    if image is not None:
        image = np.asarray(image, np.float32)
        if image.shape != lab.shape:
            raise GrainsError(
                f"the image ({image.shape}) and the boundary map ({lab.shape}) must have the "
                "same shape."
            )
    table = grain_table(lab, pixel_size=ps, unit=u)
    if p.line_axis is None:
        table["cut_by_border"] = table["touches_border"].to_numpy(bool)
    else:
        # only the line's ends cut grains; its sidewalls are the other two image edges
        ends = lab if p.line_axis == "x" else lab.T
        ends = np.concatenate([ends[:, :4], ends[:, -4:]], axis=1)
        table["cut_by_border"] = np.isin(table["label"].to_numpy(), border_labels(ends))
    summary = summarize(
        table, lab, pixel_size=ps, unit=u, include_border=p.include_border,
        intercept_angles=p.intercept_angles, intercept_spacing=p.intercept_spacing,
    )
    if p.line_axis is not None:
        summary["interconnect"] = interconnect_statistics(lab, axis=p.line_axis,
                                                          pixel_size=ps, unit=u)
    summary["warnings"] = _warnings(lab, p)
    return Measurement(
        labels=lab, table=table, summary=summary, pixel_size=ps, unit=u, image=image,
        boundaries=boundaries, params=p, provenance=provenance or {},
    )


#: Above this share of label-0 pixels (boundaries plus grains dropped as too small), the
#: grains measured no longer describe the image: a warning goes into the summary.
MAX_UNMEASURED_FRACTION = 0.5


def _warnings(labels: np.ndarray, p: MeasureParams) -> list[str]:
    """Plain-language warnings about a measurement that may not describe the image."""
    out = []
    unmeasured = float(np.mean(labels == 0)) if labels.size else 0.0
    if unmeasured > MAX_UNMEASURED_FRACTION:
        out.append(
            f"{100 * unmeasured:.0f} % of the image is boundary or grains dropped as smaller "
            f"than min_area ({p.min_area} px), so the sizes and ASTM numbers describe only "
            "part of it; if the grains are tiny, lower min_area (--min-area), otherwise check "
            "the boundary map."
        )
    return out


def measure(
    boundaries: np.ndarray,
    *,
    pixel_size: float | None = None,
    unit: str | None = None,
    image: np.ndarray | None = None,
    params: MeasureParams | None = None,
    provenance: dict | None = None,
    **overrides,
) -> Measurement:
    """Grains from a boundary map, measured.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        True on grain boundaries (0/1 or 0/255 arrays are accepted).
    pixel_size : float, optional
        Edge length of one pixel in ``unit``. Without it sizes stay in pixels and the ASTM
        E112 grain size numbers are None.
    unit : str, optional
        ``"nm"``, ``"µm"`` (``"um"``) or ``"mm"``.
    image : ndarray, optional
        The micrograph, same shape, for overlays.
    params : MeasureParams, optional
        All options; keyword ``overrides`` (e.g. ``min_area=20``) replace single fields.
    provenance : dict, optional
        From :func:`provenance`; recorded in the JSON export.

    Returns
    -------
    Measurement

    Raises
    ------
    GrainsError
        For a boundary map that is not 2-D and binary, an unknown unit, or bad parameters.
    """
    p = MeasureParams(**{**(params or MeasureParams()).__dict__, **_checked(overrides)})
    p.validate()
    b = np.asarray(boundaries)
    labels = label_grains(b, close_gaps=p.close_gaps, thin=p.thin, min_area=p.min_area,
                          fill_boundaries=p.fill_boundaries)
    return measure_labels(labels, pixel_size=pixel_size, unit=unit, image=image,
                          boundaries=b.astype(bool) if b.dtype != bool else b, params=p,
                          provenance=provenance)


def _checked(overrides: dict) -> dict:
    known = set(MeasureParams().__dict__)
    bad = sorted(set(overrides) - known)
    if bad:
        raise GrainsError(f"unknown measurement option(s) {', '.join(bad)}; known: "
                          f"{', '.join(sorted(known))}.")
    return overrides


def read_boundaries(path: str | os.PathLike, *, invert: bool = False) -> tuple[np.ndarray, dict]:
    """Read a boundary-map image file as a bool array (bright = boundary unless ``invert``).

    Returns
    -------
    boundaries : ndarray of bool
    info : dict
        ``pixel_size`` and ``unit`` from the file when it records them, and ``path``.
    """
    from napari_grains.io import read_image

    mg = read_image(path)
    b = mg.data > 0.5
    if invert:
        b = ~b
    if b.all() or not b.any():
        raise GrainsError(
            f"{Path(path).name} has no boundary pixels (or nothing but boundary): is it a "
            "boundary map? Boundaries should be bright on a dark background (use --invert for "
            "dark boundaries)."
        )
    return b, {"pixel_size": mg.pixel_size, "unit": mg.unit, "path": str(path)}


def unique_stems(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Unique output stems for input files (``a.png``, ``a.tif`` -> ``a``, ``a-2``)."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = Path(p).stem
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        out.append(stem if k == 0 else f"{stem}-{k + 1}")
    return out
