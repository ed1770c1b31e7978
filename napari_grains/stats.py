"""Summary statistics of a grain population: diameters, lognormal fit, ASTM E112.

ASTM E112 relations used here (N_A in grains per mm² and ℓ̄ in mm, both at 1×):

* planimetric (Jeffries) procedure: ``N_A = (N_inside + 0.5 * N_intercepted) / A`` where
  the grains cut by the field's edge count as halves, and ``G = 3.321928·log10(N_A) − 2.954``;
* mean lineal intercept (Heyn) procedure: ``ℓ̄ = L / P`` with ``P`` the number of grain
  boundary intersections along test lines of total length ``L``, and
  ``G = −6.643856·log10(ℓ̄) − 3.288``;
* field statistics over ``n`` fields (images): ``CI95 = t(0.975, n−1)·s/√n`` and
  ``%RA = 100·CI95/mean``.

G needs a physical pixel size. Without one, G is reported as None with a note saying why,
never as a number computed in pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from napari_grains.errors import GrainsError
from napari_grains.grains import ascii_unit, neighbour_pairs, unit_to_mm

__all__ = [
    "NO_PIXEL_SIZE_NOTE",
    "InterceptResult",
    "LognormalFit",
    "combine_fields",
    "describe",
    "field_statistics",
    "g_intercept",
    "g_planimetric",
    "heyn_intercepts",
    "interconnect_statistics",
    "lognormal_fit",
    "planimetric",
    "summarize",
]

NO_PIXEL_SIZE_NOTE = (
    "no pixel size known: ASTM E112 grain size numbers need physical units; give the pixel "
    "size (e.g. --pixel-size 2.5 --unit nm) or use a file that records it."
)

#: Percentiles of the diameter reported in summaries.
PERCENTILES = (5, 10, 25, 50, 75, 90, 95)


def g_planimetric(grains_per_mm2: float) -> float:
    """ASTM E112 grain size number from the number of grains per mm² at 1×."""
    if not grains_per_mm2 > 0:
        return float("nan")
    return 3.321928 * math.log10(grains_per_mm2) - 2.954


def g_intercept(mean_intercept_mm: float) -> float:
    """ASTM E112 grain size number from the mean lineal intercept length in mm."""
    if not mean_intercept_mm > 0 or not math.isfinite(mean_intercept_mm):
        return float("nan")
    return -6.643856 * math.log10(mean_intercept_mm) - 3.288


@dataclass
class LognormalFit:
    """Maximum-likelihood lognormal fit of positive sizes.

    Attributes
    ----------
    mu, sigma : float
        Mean and standard deviation of ln(size) (sigma with the MLE's 1/n).
    mu_ci, sigma_ci : tuple of float
        Confidence intervals (Student t for mu, chi-square for sigma) at ``confidence``.
    confidence : float
    n : int
        Number of sizes fitted.
    median : float
        exp(mu), the median size, in the sizes' unit.
    mean : float
        exp(mu + sigma²/2), the fitted distribution's mean size.
    ks_statistic, ks_pvalue : float
        Kolmogorov-Smirnov goodness of fit against the fitted distribution. Since mu and sigma
        were fitted on the same data, the p-value is optimistic (a Lilliefors-type bias).
    unit : str
        Unit of the sizes (``"px"`` when no pixel size is known).
    """

    mu: float
    sigma: float
    mu_ci: tuple[float, float]
    sigma_ci: tuple[float, float]
    confidence: float
    n: int
    median: float
    mean: float
    ks_statistic: float
    ks_pvalue: float
    unit: str = "px"

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """Probability density of the fitted distribution at sizes ``x``."""
        x = np.asarray(x, float)
        out = np.zeros_like(x)
        pos = x > 0
        z = (np.log(x[pos]) - self.mu) / self.sigma
        out[pos] = np.exp(-0.5 * z * z) / (x[pos] * self.sigma * math.sqrt(2 * math.pi))
        return out

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution of the fitted distribution at sizes ``x``."""
        from scipy.special import ndtr

        x = np.asarray(x, float)
        out = np.zeros_like(x)
        pos = x > 0
        out[pos] = ndtr((np.log(x[pos]) - self.mu) / self.sigma)
        return out

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["mu_ci"] = list(self.mu_ci)
        d["sigma_ci"] = list(self.sigma_ci)
        return _jsonable(d)


def lognormal_fit(sizes: Sequence[float], *, confidence: float = 0.95,
                  unit: str = "px") -> LognormalFit | None:
    """Fit a lognormal distribution to grain sizes by maximum likelihood.

    Parameters
    ----------
    sizes : array_like
        Positive sizes (e.g. equivalent circle diameters); non-positive and non-finite
        values are ignored.
    confidence : float
        Level of the confidence intervals.
    unit : str
        Unit of ``sizes``, recorded in the result.

    Returns
    -------
    LognormalFit or None
        None when fewer than 3 usable sizes or when they are all equal (no spread to fit).
    """
    from scipy import stats as sst

    x = np.asarray(sizes, float)
    x = x[np.isfinite(x) & (x > 0)]
    n = x.size
    if n < 3:
        return None
    y = np.log(x)
    mu = float(y.mean())
    s = float(y.std(ddof=1))
    if s == 0.0:
        return None
    sigma = float(y.std(ddof=0))
    alpha = 1.0 - confidence
    t = float(sst.t.ppf(1 - alpha / 2, n - 1))
    mu_ci = (mu - t * s / math.sqrt(n), mu + t * s / math.sqrt(n))
    chi_hi = float(sst.chi2.ppf(1 - alpha / 2, n - 1))
    chi_lo = float(sst.chi2.ppf(alpha / 2, n - 1))
    sigma_ci = (math.sqrt((n - 1) * s * s / chi_hi), math.sqrt((n - 1) * s * s / chi_lo))
    ks = sst.kstest(x, "lognorm", args=(sigma, 0.0, math.exp(mu)))
    return LognormalFit(
        mu=mu, sigma=sigma, mu_ci=mu_ci, sigma_ci=sigma_ci, confidence=confidence, n=n,
        median=math.exp(mu), mean=math.exp(mu + sigma * sigma / 2),
        ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue), unit=unit,
    )


@dataclass
class InterceptResult:
    """Heyn mean lineal intercept measured on a label image, in pixels.

    Attributes
    ----------
    angles : tuple of float
        Test-line directions in degrees, counter-clockwise from the image's x axis (0° =
        along rows, 90° = along columns).
    line_length : ndarray of float
        Total test-line length per direction (px).
    intersections : ndarray of float
        Boundary intersections per direction (a boundary at a line's end counts ½).
    spacing : float
        Distance between parallel test lines (px).
    """

    angles: tuple[float, ...]
    line_length: np.ndarray
    intersections: np.ndarray
    spacing: float

    @property
    def mean_intercept_by_angle(self) -> np.ndarray:
        """ℓ̄ for each direction (px); NaN where a direction crossed no boundary."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.intersections > 0, self.line_length / self.intersections,
                            np.nan)

    @property
    def mean_intercept(self) -> float:
        """ℓ̄ over all directions together (px): total length / total intersections."""
        p = float(self.intersections.sum())
        return float(self.line_length.sum()) / p if p > 0 else float("nan")

    @property
    def anisotropy_index(self) -> float:
        """ℓ̄ along 0° (rows) divided by ℓ̄ along 90° (columns); NaN if either is missing."""
        by = dict(zip(self.angles, self.mean_intercept_by_angle, strict=True))
        a, b = by.get(0.0), by.get(90.0)
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)) or b == 0:
            return float("nan")
        return float(a / b)


def heyn_intercepts(
    labels: np.ndarray,
    *,
    angles: Iterable[float] = (0.0, 45.0, 90.0, 135.0),
    spacing: float | None = None,
) -> InterceptResult:
    """Count grain-boundary intersections along families of parallel test lines.

    Along each line the pixels are sampled one per step of the line's major axis (so every
    pixel row or column it crosses is visited). An intersection is either a run of boundary
    pixels (label 0) between grains or a direct change from one grain to another; a boundary
    run at either end of a line counts ½, as in ASTM E112. A boundary run between two grains
    that are not neighbours (see :func:`napari_grains.grains.neighbour_pairs`) counts 2: the
    line clipped the corner of a grain in between that is too small to show in pixels. Line length is measured between the
    first and last sampled pixel centres.

    Parameters
    ----------
    labels : ndarray of int, shape (rows, cols)
        Grain labels, 0 = boundary.
    angles : iterable of float
        Directions in degrees counter-clockwise from the x axis.
    spacing : float, optional
        Distance between parallel lines in px; the first line is ``spacing / 2`` from the
        image corner. Default: 1/20 of the shorter image side, at least 4 px.

    Returns
    -------
    InterceptResult
    """
    lab = np.asarray(labels)
    h, w = lab.shape
    if spacing is None:
        spacing = max(4.0, min(h, w) / 20.0)
    spacing = float(spacing)
    if not spacing > 0:
        raise GrainsError("the test-line spacing must be positive.")
    angles = tuple(float(a) % 180.0 for a in angles)
    lengths, counts = [], []
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float)
    neighbours = {(int(a), int(b)) for a, b in neighbour_pairs(lab)}
    for ang in angles:
        th = math.radians(ang)
        u = np.array([-math.sin(th), math.cos(th)])  # (d_row, d_col): up-right for 0<ang<90
        nrm = np.array([math.cos(th), math.sin(th)])
        u[np.abs(u) < 1e-12] = 0.0
        nrm[np.abs(nrm) < 1e-12] = 0.0
        step = 1.0 / max(abs(u[0]), abs(u[1]))
        proj = corners @ nrm
        offsets = np.arange(proj.min() + spacing / 2, proj.max() + 1e-9, spacing)
        total_len = 0.0
        total_p = 0.0
        tproj = corners @ u
        ts = np.arange(tproj.min() - step, tproj.max() + step + 1e-9, step)
        for d in offsets:
            pts = d * nrm[None, :] + ts[:, None] * u[None, :]
            rr = np.rint(pts[:, 0]).astype(np.int64)
            cc = np.rint(pts[:, 1]).astype(np.int64)
            inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            if inside.sum() < 2:
                continue
            rr, cc = rr[inside], cc[inside]
            v = lab[rr, cc]
            if not (v > 0).any():
                continue  # a line lying along a boundary crosses nothing
            length = (v.size - 1) * step
            total_len += length
            total_p += _count_intersections(v, neighbours)
        lengths.append(total_len)
        counts.append(total_p)
    return InterceptResult(angles=angles, line_length=np.array(lengths),
                           intersections=np.array(counts), spacing=spacing)


def _count_intersections(v: np.ndarray, neighbours: set | None = None) -> float:
    """Boundary intersections along one line of sampled labels (see :func:`heyn_intercepts`)."""
    zero = v == 0
    starts = np.flatnonzero(zero & np.r_[True, ~zero[:-1]])
    ends = np.flatnonzero(zero & np.r_[~zero[1:], True])
    count = 0.0
    for s, e in zip(starts, ends, strict=True):
        if s == 0 or e == v.size - 1:
            count += 0.5
            continue
        a, b = int(v[s - 1]), int(v[e + 1])
        # a line that crosses from one grain into a non-adjacent one has clipped the corner of
        # a grain in between (too thin to show in pixels): that is two boundaries, not one
        pair = (a, b) if a < b else (b, a)
        count += 2.0 if (neighbours is not None and a != b and pair not in neighbours) else 1.0
    direct = float(((v[1:] != v[:-1]) & (v[1:] > 0) & (v[:-1] > 0)).sum())
    return count + direct


def planimetric(n_inside: int, n_intercepted: int, field_area_mm2: float) -> dict:
    """ASTM E112 planimetric (Jeffries) estimate.

    Parameters
    ----------
    n_inside : int
        Grains wholly inside the field.
    n_intercepted : int
        Grains cut by the field's edge (counted as halves).
    field_area_mm2 : float
        Field area in mm² at 1×.

    Returns
    -------
    dict
        ``n_inside``, ``n_intercepted``, ``n_equivalent``, ``field_area_mm2``,
        ``grains_per_mm2`` (N_A) and ``G``.
    """
    if not field_area_mm2 > 0:
        raise GrainsError("the field area must be positive.")
    n_eq = n_inside + 0.5 * n_intercepted
    na = n_eq / field_area_mm2
    return {
        "n_inside": int(n_inside), "n_intercepted": int(n_intercepted),
        "n_equivalent": float(n_eq), "field_area_mm2": float(field_area_mm2),
        "grains_per_mm2": float(na), "G": g_planimetric(na),
    }


def describe(values: Sequence[float]) -> dict:
    """Count, mean, median, standard deviation (n−1), min, max and percentiles of values."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    out = {"n": int(x.size)}
    if x.size == 0:
        out.update({k: None for k in ("mean", "median", "std", "min", "max")})
        out.update({f"p{p}": None for p in PERCENTILES})
        return out
    out.update({
        "mean": float(x.mean()), "median": float(np.median(x)),
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()), "max": float(x.max()),
    })
    for p, v in zip(PERCENTILES, np.percentile(x, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    return out


def _cut_mask(table: pd.DataFrame) -> np.ndarray:
    col = "cut_by_border" if "cut_by_border" in table else "touches_border"
    return table[col].to_numpy(bool)


def summarize(
    table: pd.DataFrame,
    labels: np.ndarray,
    *,
    pixel_size: float | None = None,
    unit: str | None = None,
    include_border: bool = False,
    intercept_angles: Iterable[float] = (0.0, 45.0, 90.0, 135.0),
    intercept_spacing: float | None = None,
    confidence: float = 0.95,
) -> dict:
    """Summary statistics of one measured image, as a JSON-ready dictionary.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`napari_grains.grains.grain_table`. A boolean ``cut_by_border`` column,
        when present, says which grains the field's edge cuts; otherwise ``touches_border``.
    labels : ndarray of int
        The label image the table was measured on (for the intercepts and the field area).
    pixel_size, unit : optional
        Physical pixel size; without it, sizes stay in pixels and G is None.
    include_border : bool
        Include grains cut by the border in the diameter statistics and the lognormal fit
        (by default they are left out: their measured size is truncated). ASTM E112 counts
        always use them (as halves in the planimetric count).
    intercept_angles, intercept_spacing
        Test lines of the lineal-intercept procedure (see :func:`heyn_intercepts`).
    confidence : float
        Level of the lognormal fit's confidence intervals.

    Returns
    -------
    dict
        ``n_grains``, ``n_cut_by_border``, ``n_measured``, ``pixel_size``, ``unit``,
        ``image_shape``, ``equivalent_diameter`` (``describe`` in px and in ``unit``),
        ``lognormal`` (fit of the diameters in ``unit``, or px), ``grains_per_unit_area``,
        ``astm_e112`` (``planimetric``, ``intercept``, ``note``).
    """
    from napari_grains.grains import _check_pixel_size

    ps, u = _check_pixel_size(pixel_size, unit)
    lab = np.asarray(labels)
    h, w = lab.shape
    cut = _cut_mask(table)
    use = np.ones(len(table), bool) if include_border else ~cut
    d_px = table["equivalent_diameter"].to_numpy(float)[use]
    out: dict = {
        "n_grains": len(table),
        "n_cut_by_border": int(cut.sum()),
        "n_measured": int(use.sum()),
        "border_grains_in_size_statistics": bool(include_border),
        "pixel_size": ps,
        "unit": u,
        "image_shape": [int(h), int(w)],
        "equivalent_diameter": {"px": describe(d_px)},
    }
    size_unit = "px"
    d = d_px
    if ps is not None:
        size_unit = u
        d = d_px * ps
        out["equivalent_diameter"][u] = describe(d)
    fit = lognormal_fit(d, confidence=confidence, unit=size_unit)
    out["lognormal"] = fit.to_dict() if fit is not None else None

    field_px = float(h * w)
    n_in = int((~cut).sum())
    n_cut = int(cut.sum())
    n_eq = n_in + 0.5 * n_cut
    out["grains_per_unit_area"] = {"per_px2": n_eq / field_px}
    inter = heyn_intercepts(lab, angles=intercept_angles, spacing=intercept_spacing)
    by_angle = inter.mean_intercept_by_angle
    intercept = {
        "angles_deg": list(inter.angles),
        "spacing_px": inter.spacing,
        "line_length_px": inter.line_length.tolist(),
        "intersections": inter.intersections.tolist(),
        "mean_intercept_px_by_angle": by_angle.tolist(),
        "mean_intercept_px": inter.mean_intercept,
        "anisotropy_index": inter.anisotropy_index,
        "G": None,
    }
    e112: dict = {"planimetric": None, "intercept": intercept, "note": None}
    if ps is not None:
        mm = ps * unit_to_mm(u)
        out["grains_per_unit_area"][f"per_{ascii_unit(u)}2"] = n_eq / (field_px * ps * ps)
        out["grains_per_unit_area"]["per_mm2"] = n_eq / (field_px * mm * mm)
        e112["planimetric"] = planimetric(n_in, n_cut, field_px * mm * mm)
        intercept[f"mean_intercept_{ascii_unit(u)}"] = inter.mean_intercept * ps
        intercept[f"mean_intercept_{ascii_unit(u)}_by_angle"] = (by_angle * ps).tolist()
        intercept["mean_intercept_mm"] = inter.mean_intercept * mm
        intercept["G"] = g_intercept(inter.mean_intercept * mm)
    else:
        e112["planimetric"] = {
            "n_inside": n_in, "n_intercepted": n_cut, "n_equivalent": n_eq,
            "field_area_mm2": None, "grains_per_mm2": None, "G": None,
        }
        e112["note"] = NO_PIXEL_SIZE_NOTE
    out["astm_e112"] = e112
    return _jsonable(out)


def field_statistics(values: Sequence[float], *, confidence: float = 0.95) -> dict:
    """ASTM E112 statistics of one quantity measured on several fields (images).

    Parameters
    ----------
    values : array_like
        One value per field (e.g. N_A or ℓ̄); non-finite values are ignored.
    confidence : float
        Confidence level (E112 uses 95 %).

    Returns
    -------
    dict
        ``n``, ``mean``, ``std`` (n−1), ``t``, ``ci`` (= t·s/√n, the half width),
        ``relative_accuracy_pct`` (= 100·ci/mean). With fewer than 2 fields the interval
        is None.
    """
    from scipy import stats as sst

    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out = {"n": n, "mean": float(x.mean()) if n else None, "std": None, "t": None, "ci": None,
           "relative_accuracy_pct": None, "confidence": confidence}
    if n >= 2:
        s = float(x.std(ddof=1))
        t = float(sst.t.ppf(1 - (1 - confidence) / 2, n - 1))
        ci = t * s / math.sqrt(n)
        out.update({"std": s, "t": t, "ci": ci,
                    "relative_accuracy_pct": 100.0 * ci / out["mean"] if out["mean"] else None})
    return out


def combine_fields(summaries: Sequence[dict], *, confidence: float = 0.95) -> dict:
    """Field statistics over several images' summaries (from :func:`summarize`).

    N_A and ℓ̄ are averaged over the fields first and G is computed from the means, as ASTM
    E112 prescribes. Images with no pixel size contribute only to the pixel-unit figures.

    Returns
    -------
    dict
        ``n_fields``, ``mean_equivalent_diameter`` (over the per-image means, in the common
        unit when all fields share one, else px), and when every field has a physical size:
        ``grains_per_mm2`` and ``mean_intercept_mm`` field statistics with ``G`` from their
        means; otherwise a ``note``.
    """
    summaries = list(summaries)
    units = {s.get("unit") for s in summaries}
    out: dict = {"n_fields": len(summaries), "confidence": confidence}
    unit = units.pop() if len(units) == 1 else None
    key = unit if unit is not None else "px"
    means = [s["equivalent_diameter"].get(key, {}).get("mean") for s in summaries]
    out["mean_equivalent_diameter"] = field_statistics(
        [m for m in means if m is not None], confidence=confidence)
    out["mean_equivalent_diameter"]["unit"] = key
    have_units = all(s.get("pixel_size") for s in summaries)
    if have_units and summaries:
        na = [s["astm_e112"]["planimetric"]["grains_per_mm2"] for s in summaries]
        ll = [s["astm_e112"]["intercept"]["mean_intercept_mm"] for s in summaries]
        fs_na = field_statistics(na, confidence=confidence)
        fs_l = field_statistics(ll, confidence=confidence)
        fs_na["G"] = g_planimetric(fs_na["mean"]) if fs_na["mean"] else None
        fs_l["G"] = g_intercept(fs_l["mean"]) if fs_l["mean"] else None
        out["grains_per_mm2"] = fs_na
        out["mean_intercept_mm"] = fs_l
        out["note"] = None
    else:
        out["grains_per_mm2"] = None
        out["mean_intercept_mm"] = None
        out["note"] = NO_PIXEL_SIZE_NOTE
    return _jsonable(out)


def interconnect_statistics(
    labels: np.ndarray,
    *,
    axis: str = "x",
    pixel_size: float | None = None,
    unit: str | None = None,
    edge_tolerance: int = 1,
) -> dict:
    """Grain length along a metal line and the bamboo fraction.

    The image is taken to show one line running along ``axis`` whose two sidewalls are the
    image edges parallel to it (crop the image to the line first).

    Parameters
    ----------
    labels : ndarray of int
        Grain labels, 0 = boundary.
    axis : {"x", "y"}
        Direction of the line: ``"x"`` along rows (a horizontal line), ``"y"`` along columns.
    pixel_size, unit : optional
        Physical pixel size for the lengths.
    edge_tolerance : int
        A grain reaches a sidewall when it comes within this many pixels of it.

    Returns
    -------
    dict
        ``line_axis``, ``line_width_px``, ``n_grains``; ``n_bamboo`` and ``bamboo_fraction``
        (grains spanning the full line width, among grains not cut by the line's ends);
        ``bamboo_length_fraction`` (fraction of the line's length where one grain fills the
        whole width); ``grain_length_px`` (``describe`` of each grain's extent along the line,
        for grains not cut by the ends) and the same in ``unit`` when known;
        ``mean_intercept_along_line_px`` (Heyn ℓ̄ along the line axis).
    """
    from napari_grains.grains import _check_pixel_size

    ps, u = _check_pixel_size(pixel_size, unit)
    if axis not in ("x", "y"):
        raise GrainsError(f"line axis must be 'x' (horizontal) or 'y' (vertical), not {axis!r}.")
    lab = np.asarray(labels)
    if axis == "y":
        lab = lab.T
    h, w = lab.shape
    tol = int(edge_tolerance)
    n = int(lab.max())
    rr, cc = np.nonzero(lab)
    ll = lab[rr, cc]
    rmin = np.full(n + 1, h, np.int64)
    rmax = np.full(n + 1, -1, np.int64)
    cmin = np.full(n + 1, w, np.int64)
    cmax = np.full(n + 1, -1, np.int64)
    np.minimum.at(rmin, ll, rr)
    np.maximum.at(rmax, ll, rr)
    np.minimum.at(cmin, ll, cc)
    np.maximum.at(cmax, ll, cc)
    present = rmax[1:] >= 0
    rmin, rmax, cmin, cmax = rmin[1:][present], rmax[1:][present], cmin[1:][present], cmax[1:][
        present]
    cut_ends = (cmin <= 0) | (cmax >= w - 1)
    bamboo = (rmin <= tol) & (rmax >= h - 1 - tol)
    whole = ~cut_ends
    length = (cmax - cmin + 1).astype(float)
    # a column is bamboo when all its grain pixels belong to one grain spanning the width
    big = np.where(lab > 0, lab, np.iinfo(np.int64).max)
    col_min = big.min(axis=0)
    col_max = np.where(lab > 0, lab, 0).max(axis=0)
    spanning = np.zeros(n + 2, bool)
    ids = np.flatnonzero(present) + 1
    spanning[ids[bamboo]] = True
    single = (col_max > 0) & (col_min == col_max)
    bamboo_cols = single & spanning[np.where(single, col_max, 0)]
    out = {
        "line_axis": axis,
        "line_width_px": int(h),
        "n_grains": int(present.sum()),
        "n_cut_by_ends": int(cut_ends.sum()),
        "n_bamboo": int((bamboo & whole).sum()),
        "bamboo_fraction": float((bamboo & whole).sum() / whole.sum()) if whole.any() else None,
        "bamboo_length_fraction": float(bamboo_cols.mean()),
        "grain_length_px": describe(length[whole]),
    }
    inter = heyn_intercepts(lab, angles=(0.0,), spacing=max(2.0, h / 10.0))
    out["mean_intercept_along_line_px"] = inter.mean_intercept
    if ps is not None:
        s = ascii_unit(u)
        out["unit"] = u
        out["line_width_" + s] = h * ps
        out["grain_length_" + s] = describe(length[whole] * ps)
        out["mean_intercept_along_line_" + s] = inter.mean_intercept * ps
    return _jsonable(out)


def _jsonable(obj):
    """Turn numpy scalars/arrays, paths and NaN into plain JSON values (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj

