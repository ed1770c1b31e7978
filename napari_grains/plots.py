"""Grain-size histograms and boundary overlays (matplotlib, no screen needed).

Figures are built with :class:`matplotlib.figure.Figure` directly (never ``pyplot``), so they
work in worker processes and never touch a global figure manager.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_grains.errors import GrainsError

__all__ = [
    "check_histogram_options",
    "histogram_edges",
    "histogram_figure",
    "overlay_figure",
    "overlay_rgb",
]

#: Keyword arguments of :func:`histogram_figure` that batch and CLI histogram options may set.
HISTOGRAM_OPTIONS = ("bins", "log", "weights")


def check_histogram_options(options: dict | None) -> dict:
    """Check histogram options before any work, so a batch does not fail image by image.

    Parameters
    ----------
    options : dict or None
        ``bins`` (int or increasing edges), ``log`` (bool), ``weights`` (``"count"`` or
        ``"area"``), as given to :func:`histogram_figure`.

    Returns
    -------
    dict
        The same options (an empty dict for None).

    Raises
    ------
    GrainsError
        For an unknown option, a bin count below 1, edges that do not increase (or are not
        positive on a log axis), or unknown weights.
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(HISTOGRAM_OPTIONS))
    if unknown:
        raise GrainsError(f"unknown histogram option(s) {', '.join(unknown)}; use "
                          f"{', '.join(HISTOGRAM_OPTIONS)}.")
    histogram_edges([1.0], bins=opts.get("bins", 20), log=bool(opts.get("log", False)))
    weights = opts.get("weights", "count")
    if weights not in ("count", "area"):
        raise GrainsError(f"histogram weights must be 'count' or 'area', not {weights!r}.")
    return opts


def histogram_edges(
    values: Sequence[float], *, bins: int | Sequence[float] = 20, log: bool = False
) -> np.ndarray:
    """Bin edges for a size histogram.

    Parameters
    ----------
    values : array_like
        Positive sizes.
    bins : int or sequence of float
        Number of bins, or the edges themselves (returned as given, so several samples can
        share one set of edges and be compared).
    log : bool
        With a number of bins: equal widths in log(size) instead of in size.

    Returns
    -------
    ndarray of float
        Increasing edges.
    """
    if not isinstance(bins, (int, np.integer)):
        edges = np.asarray(bins, float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise GrainsError("histogram bin edges must be an increasing list of 2 or more numbers.")
        if log and edges[0] <= 0:
            raise GrainsError("log-scaled histogram bin edges must be positive.")
        return edges
    if int(bins) < 1:
        raise GrainsError("the number of histogram bins must be at least 1.")
    x = np.asarray(values, float)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return np.linspace(0.0, 1.0, int(bins) + 1)
    lo, hi = float(x.min()), float(x.max())
    if log:
        if hi == lo:
            lo, hi = lo / 1.1, hi * 1.1
        return np.geomspace(lo, hi, int(bins) + 1)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(max(0.0, lo - 0.02 * (hi - lo)), hi + 0.02 * (hi - lo), int(bins) + 1)


def histogram_figure(
    values: Sequence[float],
    *,
    bins: int | Sequence[float] = 20,
    log: bool = False,
    weights: str = "count",
    fit=None,
    unit: str = "px",
    title: str | None = None,
    label: str = "equivalent circle diameter",
):
    """Grain-size histogram, with the lognormal fit overlaid.

    Parameters
    ----------
    values : array_like
        Grain sizes (equivalent circle diameters).
    bins, log
        See :func:`histogram_edges`. With ``log`` the x axis is logarithmic.
    weights : {"count", "area"}
        ``"count"``: number of grains per bin. ``"area"``: share of the total grain area per
        bin (each grain weighted by π·d²/4).
    fit : LognormalFit, optional
        Drawn as the expected content of a bin as wide as the local bin, in x or, with
        ``log``, in ln(x) (for area weights, the area-weighted lognormal: same σ, μ + 2σ²).
    unit : str
        Unit of the sizes, for the axis label.
    title : str, optional
    label : str
        What the sizes are, for the axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if weights not in ("count", "area"):
        raise GrainsError(f"histogram weights must be 'count' or 'area', not {weights!r}.")
    x = np.asarray(values, float)
    x = x[np.isfinite(x) & (x > 0)]
    edges = histogram_edges(x, bins=bins, log=log)
    w = None if weights == "count" else (np.pi * x * x / 4.0)
    counts, _ = np.histogram(x, bins=edges, weights=w)
    if weights == "area":
        total = float(w.sum()) if w is not None and w.size else 1.0
        counts = 100.0 * counts / (total or 1.0)
    fig = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#7fa7cf",
           edgecolor="#2f4f6f", linewidth=0.6, label=f"measured (n = {x.size})")
    if fit is not None and x.size:
        mu = fit.mu + (2.0 * fit.sigma**2 if weights == "area" else 0.0)
        grid = (np.geomspace(edges[0] if edges[0] > 0 else edges[1] / 10, edges[-1], 400)
                if log else np.linspace(max(edges[0], 1e-12), edges[-1], 400))
        # expected content of a bin of the local width: pdf·Δx, or pdf·x·Δln(x) for log bins
        widths = np.diff(np.log(edges)) if log else np.diff(edges)
        idx = np.clip(np.searchsorted(edges, grid, side="right") - 1, 0, widths.size - 1)
        z = (np.log(grid) - mu) / fit.sigma
        pdf = np.exp(-0.5 * z * z) / (grid * fit.sigma * math.sqrt(2 * math.pi))
        if log:
            pdf = pdf * grid
        scale = x.size if weights == "count" else 100.0
        ax.plot(grid, scale * pdf * widths[idx], color="#c0392b", lw=1.8,
                label=(f"lognormal fit: μ = {fit.mu:.3g} (ln {unit}), σ = {fit.sigma:.3g}\n"
                       f"KS D = {fit.ks_statistic:.3f}, p = {fit.ks_pvalue:.2g}"))
    if log:
        from matplotlib.ticker import LogFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.set_xlabel(f"{label} ({unit})")
    ax.set_ylabel("number of grains" if weights == "count" else "share of grain area (%)")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def overlay_rgb(
    image: np.ndarray | None,
    labels: np.ndarray,
    *,
    boundary_color: tuple[int, int, int] = (255, 40, 40),
    boundaries: np.ndarray | None = None,
) -> np.ndarray:
    """The image in gray with the grain boundaries painted on it.

    Parameters
    ----------
    image : ndarray of float in [0, 1], shape (rows, cols), optional
        The micrograph; a mid-gray background when None.
    labels : ndarray of int, shape (rows, cols)
        Grain labels; pixels where the label changes (or is 0) are painted.
    boundary_color : tuple of int
        RGB colour of the boundaries.
    boundaries : ndarray of bool, optional
        Paint these pixels instead of the label edges.

    Returns
    -------
    ndarray of uint8, shape (rows, cols, 3)
    """
    lab = np.asarray(labels)
    if image is None:
        gray = np.full(lab.shape, 0.5, np.float32)
    else:
        gray = np.asarray(image, np.float32)
        if gray.shape != lab.shape:
            raise GrainsError(
                f"image shape {gray.shape} and label shape {lab.shape} differ; "
                "overlay needs the image the labels were measured on."
            )
    rgb = np.repeat((np.clip(gray, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    if boundaries is None:
        edge = lab == 0
        edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
        edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    else:
        edge = np.asarray(boundaries, bool)
    rgb[edge] = boundary_color
    return rgb


def overlay_figure(
    image: np.ndarray | None,
    labels: np.ndarray,
    *,
    show_labels: bool = True,
    max_labels: int = 400,
    title: str | None = None,
    highlight: np.ndarray | None = None,
):
    """Boundaries and grain numbers over the image, at about the image's own resolution.

    Parameters
    ----------
    image, labels
        See :func:`overlay_rgb`.
    show_labels : bool
        Write each grain's label at its most interior point (skipped for grains too small
        for the text, and entirely when there are more than ``max_labels`` grains).
    highlight : ndarray of int, optional
        Labels to write in yellow rather than white (e.g. grains cut by the border).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from scipy import ndimage as ndi

    lab = np.asarray(labels)
    rgb = overlay_rgb(image, lab)
    h, w = lab.shape
    scale = float(np.clip(1400.0 / max(h, w), 1.0, 4.0))
    dpi = 100
    fig = Figure(figsize=(w * scale / dpi, h * scale / dpi + (0.3 if title else 0.0)), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h * scale / dpi / fig.get_figheight()))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=0.995)
    n = int(lab.max()) if lab.size else 0
    if show_labels and 0 < n <= max_labels:
        ids = np.unique(lab)
        ids = ids[ids > 0]
        # distance to boundaries and to the image edge, so numbers sit well inside the picture
        dist = ndi.distance_transform_edt(np.pad(lab > 0, 1))[1:-1, 1:-1]
        pos = ndi.maximum_position(dist, lab, ids)
        depth = ndi.maximum(dist, lab, ids)
        hl = set(np.asarray(highlight, int).tolist()) if highlight is not None else set()
        fontsize = 7
        need = (fontsize * 0.6 * dpi / 72.0) / scale  # half text height in image pixels
        for i, (r, c), dd in zip(ids, pos, depth, strict=True):
            if dd < need:
                continue
            ax.text(c, r, str(int(i)), ha="center", va="center", fontsize=fontsize,
                    color="yellow" if int(i) in hl else "white",
                    bbox={"boxstyle": "round,pad=0.1", "fc": (0, 0, 0, 0.45), "ec": "none"})
    return fig
