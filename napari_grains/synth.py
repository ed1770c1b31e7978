"""Concept-oriented synthetic training data (the paper's Methods A and B).

A *pair* is a gray input image that looks like a micrograph, the binary boundary map it should
produce (the training target) and the grain labels the target was derived from. The generator
follows the paper's seven stages:

1. **Grain sizes** (the Monte-Carlo generator). Per image a mean diameter and a spread are drawn
   from ranges; circle diameters are drawn from the lognormal distribution they define until the
   circles' total area matches the area of the (padded) domain.
2. **Dynamic packing.** The circles start at random places and are pushed apart where they
   overlap, with random perturbation forces that fade out, until overlaps and gaps are small.
   The domain is periodic and extends ``pad`` pixels beyond the image on every side, so the image
   borders are not special.
3. **Power diagram** (weighted Voronoi tessellation, circle centres as seeds and radii as weights)
   on the pixel grid gives the grain labels: convex cells.
4. **Boundary target** of a given thickness, derived from the labels
   (:func:`boundaries_from_labels`).
5. **Concept (ii):** a random gray level per grain, uniform over 0..255, so neighbours of nearly
   equal brightness occur as often as chance makes them.
6. **Concept (iii):** the image flipped horizontally and vertically, weakened by 0.1 and *added*
   to the unflipped image (faint overlapped boundaries the target does not contain).
7. **Noise:** salt & pepper (density 0.05), zero-mean Gaussian (variance 0.01 on the 0..1 scale),
   Poisson (the pixel's 8-bit value as the mean), then a 5×5 median filter.

Beyond the paper, and off by default, :class:`Realism` adds what real micrographs show: blur,
uneven illumination, low grain contrast, intragrain texture and mottling, bend contours,
annealing twins, dark etched boundary grooves; the grain-size range itself covers *scale*
(:meth:`SynthParams.realistic` turns all of it on).

Conventions
-----------
* Coordinates: pixel ``(row, col)`` has its centre at ``(x, y) = (col, row)``.
* **Diameter** means equivalent circle diameter, ``2·sqrt(A/π)`` pixels. The size distribution of
  an image is lognormal with arithmetic **mean diameter** ``m`` and **sigma** ``s``, the standard
  deviation of ``ln(diameter)``; i.e. ``ln d ~ Normal(ln m - s²/2, s²)``.
* Labels tile the image: every pixel belongs to a grain ``1..n`` (no 0), and the target marks the
  pixels on the boundaries between them. ``SynthPair.labels_with_boundaries`` gives the project's
  other convention (0 on boundary pixels).
* Everything random comes from one :class:`numpy.random.SeedSequence`: the same seed (and index)
  gives the same pair, whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_grains.errors import GrainsError

__all__ = [
    "CELL_SIGMA_TABLE",
    "GENERATOR_VERSION",
    "Realism",
    "SynthPair",
    "SynthParams",
    "boundaries_from_labels",
    "circle_sigma_for",
    "contact_sheet",
    "draw_diameters",
    "generate_pair",
    "interior_ecd",
    "iter_pairs",
    "iter_save_pairs",
    "load_pair",
    "pack_circles",
    "pair_seed",
    "power_diagram",
    "read_manifest",
    "save_pairs",
]

#: Version of the generator's algorithm; recorded with every pair and in model cards. Bump it
#: when a change makes the same seed and parameters produce different pairs.
GENERATOR_VERSION = "1.1"

Range = tuple[float, float]
SeedLike = int | np.random.SeedSequence | None


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Realism:
    """Realism concepts the paper's generator lacks; each is off by default.

    Every concept has a *probability* (``0`` = never, ``1`` = every image) with which it is
    applied to an image, and ranges ``(low, high)`` from which its strengths are drawn per image
    (uniformly) when it is applied. Intensities are on the 0..1 scale.

    Attributes
    ----------
    blur, blur_sigma
        Defocus / limited resolution: a Gaussian blur of standard deviation ``blur_sigma`` px,
        applied before the noise (the detector sees a blurred image).
    illumination, illumination_strength
        Uneven illumination: the image is multiplied by a smooth gain field (a random ramp plus
        a random large-scale field) that goes from ``1 - strength`` in the darkest corner to
        1, so bright grains are shaded rather than clipped.
    low_contrast, contrast
        Low grain contrast: grain gray levels are squeezed to a band of width ``contrast``
        (instead of the full 0..1) around a random centre.
    texture, texture_amplitude, texture_scale, grain_gradient
        Intragrain texture and mottling: smooth random texture (standard deviation
        ``texture_amplitude``, correlation length ``texture_scale`` px) plus a linear brightness
        gradient inside each grain whose change over one mean diameter is up to
        ``grain_gradient``.
    bend_contours, bend_fraction, bend_depth, bend_width
        TEM bend contours: dark curved bands inside a fraction ``bend_fraction`` of the grains,
        ending at the grain boundaries; ``bend_depth`` is the relative darkening at the band
        centre, ``bend_width`` the band's Gaussian width in px.
    twins, twin_fraction, twin_width, twins_in_target
        Annealing twins: in a fraction ``twin_fraction`` of the grains (those large enough), one
        or two straight parallel lamellae of a different gray level cross the grain; their width
        is ``twin_width`` times the grain's extent across them. When ``twins_in_target`` is true
        the twin boundaries are grain boundaries (in the target and as separate labels, each
        slab a convex label); otherwise they appear only in the image.
    grooves, groove_depth, groove_width
        Dark etched boundary grooves (etched optical and SEM images): pixels near a grain
        boundary are darkened by ``groove_depth·exp(-d²/(2·groove_width²))``, ``d`` their
        distance to the boundary in px.
    """

    blur: float = 0.0
    blur_sigma: Range = (0.5, 2.0)
    illumination: float = 0.0
    illumination_strength: Range = (0.1, 0.35)
    low_contrast: float = 0.0
    contrast: Range = (0.15, 0.5)
    texture: float = 0.0
    texture_amplitude: Range = (0.02, 0.08)
    texture_scale: Range = (1.0, 4.0)
    grain_gradient: Range = (0.0, 0.2)
    bend_contours: float = 0.0
    bend_fraction: Range = (0.2, 0.6)
    bend_depth: Range = (0.2, 0.5)
    bend_width: Range = (1.5, 4.0)
    twins: float = 0.0
    twin_fraction: Range = (0.1, 0.4)
    twin_width: Range = (0.08, 0.3)
    twins_in_target: bool = True
    grooves: float = 0.0
    groove_depth: Range = (0.2, 0.6)
    groove_width: Range = (0.7, 2.5)

    CONCEPTS = ("blur", "illumination", "low_contrast", "texture", "bend_contours", "twins",
                "grooves")


@dataclass
class SynthParams:
    """Every parameter of the generator. The defaults reproduce the paper.

    Fields given as ``(low, high)`` ranges are drawn per image, so one data set covers many grain
    sizes; give ``(v, v)`` for a fixed value.

    Attributes
    ----------
    height, width : int
        Image size in pixels (paper: 96 × 496).
    count : int
        Number of pairs a data set has by default (paper: 3000). Used by the command line.
    mean_diameter : (float, float)
        Range of the per-image mean grain diameter in px (arithmetic mean of the equivalent
        circle diameters). The paper only says the mean grain size varied; 20..80 px matches
        the grains of its example TEM image at 96 × 496.
    mean_diameter_log : bool
        Draw the mean diameter log-uniformly (True; good for ranges spanning decades, e.g. the
        *scale* concept) or uniformly (False).
    sigma : (float, float)
        Range of the per-image sigma of ``ln(diameter)``.
    match_cells : bool
        The power diagram's cells are not the circles: their sizes spread ~10-15 % more.
        When True (default) the circles' sigma is reduced accordingly
        (:func:`circle_sigma_for`) so that the *cells'* equivalent diameters follow the
        requested lognormal; when False the circles follow it.
    pad : float
        Padding of the domain beyond each image border, in mean diameters.
    packing_iterations : int
        Maximum number of packing steps.
    packing_jitter : float
        Amplitude of the random perturbation force, as a fraction of each circle's radius per
        step; it fades linearly to 0 over the packing.
    packing_tolerance : float
        Packing stops early when the mean relative overlap of overlapping neighbours changes
        less than this between steps (after the perturbations have faded).
    boundary_thickness : int
        Thickness of the target's boundary lines in px (see :func:`boundaries_from_labels`).
    gray_range : (float, float)
        Range of the uniform per-grain gray levels, on the 0..1 scale (paper: 0..255 / 255).
    overlay : bool
        Concept (iii): add the image flipped both ways times ``overlay_weight``.
    overlay_weight : float
        The weakening factor (paper: 0.1).
    overlay_saturate : bool
        After the addition, clip at white (True, like 8-bit arithmetic saturating) or divide by
        ``1 + overlay_weight`` (False).
    salt_pepper, salt_pepper_density
        Salt & pepper noise: a fraction ``density`` of the pixels set to black or white.
    gaussian, gaussian_variance
        Zero-mean Gaussian noise of this variance (0..1 scale).
    poisson, poisson_scale
        Poisson noise: each pixel replaced by ``Poisson(value·scale)/scale``; with scale 255 the
        mean is the pixel's 8-bit value, as in the paper.
    median, median_size
        Median filter of ``median_size × median_size`` px after the noise.
    noise_scale : (float, float)
        Range of a per-image factor on the salt & pepper density and the Gaussian standard
        deviation (paper: 1, i.e. the levels above as given).
    realism : Realism
        The realism concepts (all off by default).
    """

    height: int = 96
    width: int = 496
    count: int = 3000
    mean_diameter: Range = (20.0, 80.0)
    mean_diameter_log: bool = False
    sigma: Range = (0.2, 0.4)
    match_cells: bool = True
    pad: float = 1.5
    packing_iterations: int = 60
    packing_jitter: float = 0.1
    packing_tolerance: float = 1e-3
    boundary_thickness: int = 2
    gray_range: Range = (0.0, 1.0)
    overlay: bool = True
    overlay_weight: float = 0.1
    overlay_saturate: bool = True
    salt_pepper: bool = True
    salt_pepper_density: float = 0.05
    gaussian: bool = True
    gaussian_variance: float = 0.01
    poisson: bool = True
    poisson_scale: float = 255.0
    median: bool = True
    median_size: int = 5
    noise_scale: Range = (1.0, 1.0)
    realism: Realism = field(default_factory=Realism)

    # -- presets ------------------------------------------------------------------------
    @classmethod
    def paper(cls, **overrides: Any) -> SynthParams:
        """The paper's generator (the defaults), with optional overrides."""
        return cls(**overrides)

    @classmethod
    def realistic(cls, **overrides: Any) -> SynthParams:
        """All realism concepts on, with random strengths, for training a general model.

        Each concept is applied to a third to two thirds of the images, grain sizes span
        6..160 px (log-uniform) on 256 × 256 images, and the noise is milder (a per-image factor
        0.2..1 on the paper's levels, 3 × 3 median) so that grains of a few pixels survive it.
        """
        realism = Realism(
            blur=0.6, illumination=0.5, low_contrast=0.4, texture=0.7, bend_contours=0.3,
            twins=0.4, grooves=0.3,
        )
        base = {"height": 256, "width": 256, "mean_diameter": (6.0, 160.0), "mean_diameter_log": True,
                    "sigma": (0.15, 0.5), "noise_scale": (0.2, 1.0), "median_size": 3, "realism": realism}
        base.update(overrides)
        return cls(**base)

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All parameters as a JSON-able dict (ranges become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthParams:
        """Rebuild parameters from :meth:`to_dict` output (unknown keys are an error)."""
        d = dict(d)
        realism = d.pop("realism", {}) or {}
        if isinstance(realism, Realism):
            realism = dataclasses.asdict(realism)
        _check_keys(cls, d, "SynthParams")
        _check_keys(Realism, realism, "Realism")

        def fix(obj_cls, values):
            out = {}
            for f in dataclasses.fields(obj_cls):
                if f.name in values:
                    v = values[f.name]
                    out[f.name] = tuple(v) if isinstance(v, list) else v
            return out

        return cls(**fix(cls, d), realism=Realism(**fix(Realism, realism)))

    def validate(self) -> SynthParams:
        """Check every parameter; raise :class:`GrainsError` saying what to change."""
        try:
            return self._validate()
        except (TypeError, ValueError) as exc:  # e.g. a string where a number belongs
            raise GrainsError(f"a synthetic-data parameter has the wrong type ({exc}); give "
                              "numbers where numbers belong (see docs/synthetic-data.md).") from None

    def _validate(self) -> SynthParams:
        if int(self.height) < 8 or int(self.width) < 8:
            raise GrainsError(f"image size {self.height}x{self.width} is too small; use at "
                              "least 8x8 pixels.")
        if self.count < 0:
            raise GrainsError("count must be 0 or more.")
        _check_range("mean_diameter", self.mean_diameter, lo=2.0)
        _check_range("sigma", self.sigma, lo=0.0, hi=1.5)
        _check_range("gray_range", self.gray_range, lo=0.0, hi=1.0)
        _check_range("noise_scale", self.noise_scale, lo=0.0)
        if max(self.mean_diameter) > 4 * max(self.height, self.width):
            raise GrainsError(f"mean_diameter up to {max(self.mean_diameter)} px is far larger "
                              f"than the {self.height}x{self.width} image; make it smaller or "
                              "the image larger.")
        if not 0.5 <= self.pad <= 10:
            raise GrainsError("pad must be between 0.5 and 10 mean diameters.")
        if not 1 <= int(self.boundary_thickness) <= 32:
            raise GrainsError("boundary_thickness must be an integer from 1 to 32 px.")
        if self.packing_iterations < 0:
            raise GrainsError("packing_iterations must be 0 or more.")
        if not 0.0 <= self.salt_pepper_density <= 1.0:
            raise GrainsError("salt_pepper_density must be between 0 and 1.")
        if self.gaussian_variance < 0:
            raise GrainsError("gaussian_variance must be 0 or more.")
        if self.poisson_scale <= 0:
            raise GrainsError("poisson_scale must be positive (255: 8-bit counts, as the paper).")
        if self.median_size < 1 or self.median_size % 2 == 0:
            raise GrainsError("median_size must be an odd number of pixels (e.g. 5).")
        if not 0.0 <= self.overlay_weight <= 1.0:
            raise GrainsError("overlay_weight must be between 0 and 1 (paper: 0.1).")
        r = self.realism
        for name in Realism.CONCEPTS:
            p = getattr(r, name)
            if not 0.0 <= float(p) <= 1.0:
                raise GrainsError(f"realism.{name} is the probability of applying it to an "
                                  f"image; give a number from 0 to 1, not {p}.")
        for f in dataclasses.fields(Realism):
            v = getattr(r, f.name)
            if isinstance(v, tuple):
                _check_range(f"realism.{f.name}", v, lo=0.0)
        for name in ("contrast", "twin_fraction", "bend_fraction", "bend_depth", "groove_depth",
                     "twin_width"):
            _check_range(f"realism.{name}", getattr(r, name), lo=0.0, hi=1.0)
        return self


def _check_keys(cls, d: dict, what: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise GrainsError(f"unknown {what} parameter(s) {unknown}; known: {sorted(names)}.")


def _check_range(name: str, value, lo: float | None = None, hi: float | None = None) -> None:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise GrainsError(f"{name} must be a (low, high) pair of numbers, not {value!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b)) or a > b:
        raise GrainsError(f"{name} = ({a}, {b}) is not a range; give low <= high.")
    if lo is not None and a < lo:
        raise GrainsError(f"{name} starts at {a}, below the smallest sensible value {lo}.")
    if hi is not None and b > hi:
        raise GrainsError(f"{name} ends at {b}, above the largest sensible value {hi}.")


#: Measured sigma of ln(cell ECD) of the power diagram of packed circles whose diameters have
#: sigma ``CELL_SIGMA_TABLE[0]`` (mean diameters 16 and 40 px, averaged; reproduce with
#: ``benchmarks/bench_synth.py --calibrate``). The cells spread the sizes ~10-15 % more than
#: their circles (a circle squeezed by larger neighbours gets a smaller cell), and even equal
#: circles give cells with sigma ~0.04 (packing disorder). With ``match_cells`` the circles'
#: sigma is this table inverted, so the *cells* follow the requested sigma.
CELL_SIGMA_TABLE = (
    (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    (0.038, 0.115, 0.222, 0.336, 0.469, 0.564, 0.678, 0.765),
)
#: Measured ratio mean(cell ECD) / mean(circle diameter): 0.97-1.00, so no correction.


def circle_sigma_for(cell_sigma: float) -> float:
    """Sigma of ln(circle diameter) that gives cells with sigma ``cell_sigma`` (table above).

    Below the packing disorder (~0.04) the circles get sigma 0; above the table the last ratio
    is extrapolated.
    """
    circ, cell = CELL_SIGMA_TABLE
    if cell_sigma >= cell[-1]:
        return float(cell_sigma * circ[-1] / cell[-1])
    return float(np.interp(cell_sigma, cell, circ))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class SynthPair:
    """One generated training pair.

    Attributes
    ----------
    image : ndarray of float32, shape (H, W)
        The synthetic micrograph, in [0, 1].
    target : ndarray of bool, shape (H, W)
        Boundary pixels (True = boundary, False = bulk), ``boundaries_from_labels(labels, t)``.
    labels : ndarray of int32, shape (H, W)
        Grain of every pixel, ``1..n``; they tile the image (no 0).
    params : dict
        JSON-able record of everything that made this pair: ``seed``, ``index``, ``version``,
        ``config`` (the :class:`SynthParams` as a dict) and ``drawn`` (the values drawn for this
        image: mean diameter, sigma, number of circles and grains, packing quality, realism
        strengths ...). ``generate_pair(SynthParams.from_dict(p["config"]), p["seed"],
        index=p["index"])`` regenerates the pair.
    circles : ndarray of float64, shape (n, 3), optional
        The packed circles ``(x, y, radius)`` in image pixel coordinates (including those in
        the padding), i.e. the power diagram's seeds and weights; for inspection and figures.
    """

    image: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    params: dict
    circles: np.ndarray | None = None

    @property
    def labels_with_boundaries(self) -> np.ndarray:
        """The labels with boundary (target) pixels set to 0, the project's label convention."""
        out = self.labels.copy()
        out[self.target] = 0
        return out


# --------------------------------------------------------------------------------------------
# Stage 1-2: sizes and packing
# --------------------------------------------------------------------------------------------


def draw_diameters(rng: np.random.Generator, mean_diameter: float, sigma: float,
                   area: float) -> np.ndarray:
    """Draw lognormal circle diameters until their total area reaches ``area``.

    Parameters
    ----------
    rng : numpy.random.Generator
    mean_diameter : float
        Arithmetic mean of the distribution, px.
    sigma : float
        Standard deviation of ``ln(diameter)``.
    area : float
        Area to fill, px². The last circle drawn is kept only if that brings the total closer to
        ``area``, so the draws are not biased towards small circles.

    Returns
    -------
    ndarray of float64
        Diameters in the order drawn (at least one).
    """
    mu = math.log(mean_diameter) - 0.5 * sigma * sigma
    mean_area = math.pi / 4 * mean_diameter ** 2 * math.exp(sigma * sigma)
    chunks: list[np.ndarray] = []
    total = 0.0
    while True:
        n = max(16, int(1.2 * (area - total) / mean_area) + 8)
        d = rng.lognormal(mu, sigma, n)
        a = math.pi / 4 * d * d
        c = total + np.cumsum(a)
        k = int(np.searchsorted(c, area))
        if k < n:
            # c[k] >= area > c[k-1]: keep circle k only if that lands nearer the target area.
            before = c[k - 1] if k > 0 else total
            keep = k + 1 if (c[k] - area) < (area - before) else k
            chunks.append(d[:keep])
            break
        chunks.append(d)
        total = float(c[-1])
    out = np.concatenate(chunks)
    return out if out.size else rng.lognormal(mu, sigma, 1)


def pack_circles(rng: np.random.Generator, radii: np.ndarray, box: tuple[float, float], *,
                 iterations: int = 60, jitter: float = 0.1, tolerance: float = 1e-3
                 ) -> tuple[np.ndarray, dict]:
    """Dynamic packing of circles in a periodic box.

    Circles start at uniformly random positions. Each step, every overlapping pair is pushed
    apart along the line of centres (the smaller circle moves more, in proportion to the other's
    area), and every circle gets a random kick of ``jitter × radius`` that fades linearly to zero
    over the first 70 % of the steps. Neighbour pairs come from a periodic
    :class:`scipy.spatial.cKDTree` (a Verlet list rebuilt when circles have moved far).

    Parameters
    ----------
    rng : numpy.random.Generator
    radii : ndarray, shape (n,)
    box : (float, float)
        Width and height of the periodic box.
    iterations, jitter, tolerance
        See :class:`SynthParams` (``packing_*``).

    Returns
    -------
    centres : ndarray, shape (n, 2)
        ``(x, y)`` in ``[0, box)``.
    info : dict
        ``iterations`` done and ``mean_overlap``: the mean of ``overlap / (r_i + r_j)`` over
        overlapping neighbour pairs at the end.
    """
    bw, bh = float(box[0]), float(box[1])
    boxv = np.array([bw, bh])
    n = radii.size
    pos = rng.random((n, 2)) * boxv
    if n < 2 or iterations == 0:
        return pos, {"iterations": 0, "mean_overlap": 0.0}
    rmax = float(radii.max())
    skin = max(float(np.median(radii)), 0.5 * rmax)  # Verlet skin: results do not depend on it
    cutoff = min(2 * rmax + skin, 0.499 * min(bw, bh))
    area = radii * radii
    fade = max(1, int(0.7 * iterations))
    i = j = None
    ref = pos.copy()
    prev = None
    it = 0
    mean_ov = 0.0
    for it in range(1, iterations + 1):
        if i is None or np.max(np.abs(pos - ref)) > 0.5 * skin:
            # Verlet list: the pairs that can overlap before any circle moves skin/2 further,
            # each with its periodic image shift (positions are wrapped only here)
            pos %= boxv
            pairs = cKDTree(pos, boxsize=boxv).query_pairs(cutoff, output_type="ndarray")
            if pairs.size == 0:
                break
            raw = pos[pairs[:, 1]] - pos[pairs[:, 0]]
            shift = -boxv * np.round(raw / boxv)
            d = raw + shift
            near = np.einsum("ij,ij->i", d, d) < (radii[pairs[:, 0]] + radii[pairs[:, 1]]
                                                  + skin) ** 2
            i, j, shift = pairs[near, 0], pairs[near, 1], shift[near]
            rs = radii[i] + radii[j]
            wi = area[j] / (area[i] + area[j])  # the smaller circle moves more
            ref = pos.copy()
        d = pos[j] - pos[i] + shift
        dist = np.sqrt(np.einsum("ij,ij->i", d, d))
        ov = rs - dist
        # push each overlapping pair apart by half its overlap (damped: the net force on
        # jammed circles balances), along the line of centres
        k = np.maximum(ov, 0.0) * 0.5 / np.maximum(dist, 1e-9)
        fx, fy = k * d[:, 0], k * d[:, 1]
        pos[:, 0] += np.bincount(j, fx * (1 - wi), n) - np.bincount(i, fx * wi, n)
        pos[:, 1] += np.bincount(j, fy * (1 - wi), n) - np.bincount(i, fy * wi, n)
        if it <= fade and jitter > 0:
            amp = jitter * (1.0 - it / fade)
            pos += rng.normal(0.0, 1.0, pos.shape) * (amp * radii)[:, None]
            if it < iterations:
                continue
        m = ov > 0
        mean_ov = float(np.mean(ov[m] / rs[m])) if np.any(m) else 0.0
        if prev is not None and abs(prev - mean_ov) < tolerance * max(mean_ov, 1e-3):
            break
        prev = mean_ov
    pos %= boxv
    return pos, {"iterations": it, "mean_overlap": round(mean_ov, 5)}


def _wrap(d: np.ndarray, boxv: np.ndarray) -> np.ndarray:
    return d - boxv * np.round(d / boxv)


# --------------------------------------------------------------------------------------------
# Stage 3-4: power diagram and boundaries
# --------------------------------------------------------------------------------------------


def power_diagram(centres: np.ndarray, radii: np.ndarray, shape: tuple[int, int], *,
                  tile: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Power diagram (Laguerre / weighted Voronoi tessellation) on the pixel grid.

    Pixel ``(row, col)`` (centre ``(x, y) = (col, row)``) goes to the seed ``i`` minimising the
    power distance ``|p - c_i|² - r_i²``; ties go to the lower index. Cells of a power diagram
    are convex, and so is each cell's set of pixel centres (up to floating-point ties).

    The grid is processed in ``tile × tile`` blocks; per block only seeds whose smallest power
    distance over the block can beat the best seed's largest are compared, so the cost grows
    with the number of pixels, not with pixels × seeds.

    Parameters
    ----------
    centres : ndarray, shape (n, 2)
        Seed positions ``(x, y)`` in pixel coordinates (seeds outside the image are fine).
    radii : ndarray, shape (n,)
        Weights as radii.
    shape : (int, int)
        ``(rows, cols)`` of the output.

    Returns
    -------
    owner : ndarray of int32, shape ``shape``
        Index of the winning seed of every pixel.
    power : ndarray of float32, shape ``shape``
        The winning power distance; a pixel is covered by some circle iff it is ``<= 0``.
    """
    H, W = int(shape[0]), int(shape[1])
    c = np.asarray(centres, dtype=np.float64)
    r2 = np.asarray(radii, dtype=np.float64) ** 2
    if c.shape[0] == 0:
        raise GrainsError("power_diagram needs at least one seed.")
    owner = np.empty((H, W), np.int32)
    power = np.empty((H, W), np.float32)
    cx, cy = c[:, 0], c[:, 1]
    for y0 in range(0, H, tile):
        y1 = min(y0 + tile, H) - 1
        dy = np.maximum(np.maximum(y0 - cy, cy - y1), 0.0)
        fy = np.maximum(np.abs(cy - y0), np.abs(cy - y1))
        py = np.arange(y0, y1 + 1, dtype=np.float64)
        for x0 in range(0, W, tile):
            x1 = min(x0 + tile, W) - 1
            dx = np.maximum(np.maximum(x0 - cx, cx - x1), 0.0)
            fx = np.maximum(np.abs(cx - x0), np.abs(cx - x1))
            lo = dx * dx + dy * dy - r2
            hi = fx * fx + fy * fy - r2
            cand = np.flatnonzero(lo <= hi.min())
            px = np.arange(x0, x1 + 1, dtype=np.float64)
            p = ((py[None, :, None] - cy[cand, None, None]) ** 2
                 + (px[None, None, :] - cx[cand, None, None]) ** 2
                 - r2[cand, None, None])
            k = p.argmin(axis=0)
            owner[y0:y1 + 1, x0:x1 + 1] = cand[k]
            power[y0:y1 + 1, x0:x1 + 1] = p.min(axis=0)
    return owner, power


def _footprint(thickness: int) -> list[tuple[int, int]]:
    t = int(thickness)
    lo = -((t - 1) // 2)
    c = (t - 1) / 2 + lo  # centre of the offsets lo..lo+t-1
    offs = []
    for dy in range(lo, lo + t):
        for dx in range(lo, lo + t):
            if (dy - c) ** 2 + (dx - c) ** 2 <= (t / 2) ** 2 + 1e-9:
                offs.append((dy, dx))
    return offs


def interior_ecd(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent circle diameters of the grains that do not touch the border, with weights.

    Dropping border grains biases a sample against large grains; the Miles–Lantuéjoul weight
    ``1 / ((H - h) (W - w))`` of each kept grain (``h × w`` its bounding box) undoes that, so a
    weighted mean/std of the returned diameters estimates the whole population's.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Grains 1..n (e.g. :attr:`SynthPair.labels`).

    Returns
    -------
    ecd, weights : ndarray of float
        ``2·sqrt(area/π)`` in pixels, and the weight of each.
    """
    H, W = labels.shape
    area = np.bincount(labels.ravel())
    ecd, wts = [], []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == H \
                or sl[1].stop == W:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        ecd.append(2 * math.sqrt(area[k] / math.pi))
        wts.append(1.0 / ((H - h) * (W - w)))
    return np.array(ecd), np.array(wts)


def boundaries_from_labels(labels: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boundary map of a label image, ``thickness`` pixels thick.

    A pixel is a *1-pixel boundary* pixel when its right or lower neighbour has another label:
    each interface between two grains is then marked by exactly one line of pixels, on its
    upper/left side. The map of thickness ``t`` is that line dilated by a digital disk of
    diameter ``t`` spanning offsets ``-(t-1)//2 .. t//2``, so the band is ``t`` pixels across
    an axis-aligned interface and centred on it for even ``t`` (half a pixel up/left for odd
    ``t``).

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
    thickness : int
        Line thickness in pixels, >= 1.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise GrainsError(f"labels must be a 2-D image, not shape {lab.shape}.")
    t = int(thickness)
    if t < 1:
        raise GrainsError("boundary thickness must be at least 1 pixel.")
    b1 = np.zeros(lab.shape, bool)
    b1[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    b1[:-1, :] |= lab[:-1, :] != lab[1:, :]
    if t == 1:
        return b1
    H, W = lab.shape
    out = np.zeros_like(b1)
    for dy, dx in _footprint(t):
        # out[p] |= b1[p - (dy, dx)]: a boundary pixel q spreads to q + (dy, dx)
        ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
        xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
        out[yd, xd] |= b1[ys, xs]
    return out


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


def pair_seed(seed: int | np.random.SeedSequence, index: int | None = None
              ) -> np.random.SeedSequence:
    """The seed sequence of pair ``index`` of a data set made with ``seed``.

    ``SeedSequence(seed, spawn_key=(index,))``: independent streams per pair, the same whatever
    the order or process they are generated in.
    """
    if isinstance(seed, np.random.SeedSequence):
        if index is None:
            return seed
        return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (index,))
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GrainsError(f"seed must be a non-negative integer, not {seed!r}.")
    if index is None:
        return np.random.SeedSequence(int(seed))
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))


def _draw(rng: np.random.Generator, rng_range: Sequence[float], log: bool = False) -> float:
    a, b = float(rng_range[0]), float(rng_range[1])
    if a == b:
        return a
    if log and a > 0:
        return float(math.exp(rng.uniform(math.log(a), math.log(b))))
    return float(rng.uniform(a, b))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth random field, zero mean, unit standard deviation, correlation length ~scale px."""
    import cv2

    H, W = shape
    if scale <= 3:
        f = rng.standard_normal((H, W)).astype(np.float32)
        f = cv2.GaussianBlur(f, (0, 0), max(scale, 0.3), borderType=cv2.BORDER_REFLECT)
    else:
        gh, gw = max(2, math.ceil(H / scale) + 3), max(2, math.ceil(W / scale) + 3)
        g = rng.standard_normal((gh, gw)).astype(np.float32)
        big = cv2.resize(g, (int(gw * scale), int(gh * scale)), interpolation=cv2.INTER_CUBIC)
        oy = int(rng.integers(0, max(1, big.shape[0] - H + 1)))
        ox = int(rng.integers(0, max(1, big.shape[1] - W + 1)))
        f = big[oy:oy + H, ox:ox + W]
        if f.shape != (H, W):  # pragma: no cover - guarded by the +3 margin
            f = cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR)
    f = f - f.mean()
    s = float(f.std())
    return f / s if s > 0 else f


def _add_twins(rng, regions, n_regions, gray, fraction, width_range, min_extent, draw_gray):
    """Split a fraction of the grains into parallel slabs with alternating gray levels.

    Returns the new region map (each slab its own id), the extended gray table and, per new id,
    the grain id it came from.
    """
    parent = np.arange(n_regions + 1)
    gray = list(gray)
    objs = ndimage.find_objects(regions)
    out = regions.copy()
    next_id = n_regions + 1
    n_twinned = 0
    for gid, sl in enumerate(objs, start=1):
        if sl is None or rng.random() >= fraction:
            continue
        sub = regions[sl] == gid
        yy, xx = np.nonzero(sub)
        if yy.size < min_extent * min_extent:
            continue
        theta = rng.uniform(0, math.pi)
        s = (xx + sl[1].start) * math.cos(theta) + (yy + sl[0].start) * math.sin(theta)
        smin, smax = float(s.min()), float(s.max())
        extent = smax - smin
        if extent < 2 * min_extent:
            continue
        cuts: list[float] = []
        for _ in range(int(rng.integers(1, 3))):
            w = max(_draw(rng, width_range) * extent, 1.5)
            a = rng.uniform(smin + 0.1 * extent, smax - 0.1 * extent - w)
            if a <= smin or a + w >= smax:
                continue
            if any(not (a + w < c0 - 2 or a > c1 + 2) for c0, c1 in zip(cuts[::2], cuts[1::2])):
                continue  # overlaps an earlier lamella
            cuts += [a, a + w]
        if not cuts:
            continue
        order = np.argsort(cuts[::2])
        edges = np.array([v for k in order for v in (cuts[2 * k], cuts[2 * k + 1])])
        slab = np.searchsorted(edges, s, side="right")  # 0 = below first cut, 1 = inside, ...
        twin_gray = draw_gray(rng)  # a twin is another orientation: another gray level
        ids = np.empty(edges.size + 1, np.int64)
        ids[0] = gid
        for k in range(1, edges.size + 1):
            ids[k] = next_id
            next_id += 1
            parent = np.append(parent, gid)
            gray.append(twin_gray if k % 2 == 1 else gray[gid])
        view = out[sl]
        view[yy, xx] = ids[slab]
        n_twinned += 1
    return out, np.asarray(gray, np.float64), parent, n_twinned


_STREAMS = ("geometry", "gray", "decide", "low_contrast", "twins", "texture", "bend_contours",
            "grooves", "illumination", "blur", "noise")


def generate_pair(params: SynthParams | None = None, seed: SeedLike = None, *,
                  index: int | None = None) -> SynthPair:
    """Generate one training pair.

    Parameters
    ----------
    params : SynthParams, optional
        Defaults to the paper's generator, ``SynthParams()``.
    seed : int or numpy.random.SeedSequence, optional
        Everything random derives from it; ``None`` draws fresh entropy (recorded in
        ``pair.params["seed"]``).
    index : int, optional
        Index of the pair in a data set: the pair's randomness is then
        ``SeedSequence(seed, spawn_key=(index,))`` (see :func:`pair_seed`).

    Returns
    -------
    SynthPair

    Examples
    --------
    >>> pair = generate_pair(seed=1)
    >>> pair.image.shape, pair.image.dtype, pair.target.dtype, pair.labels.min() >= 1
    ((96, 496), dtype('float32'), dtype('bool'), True)
    """
    import cv2

    p = (params if params is not None else SynthParams())
    if not isinstance(p, SynthParams):
        raise GrainsError(f"params must be a SynthParams, not {type(p).__name__}.")
    p.validate()
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    ss = pair_seed(seed, index)
    # One independent stream per stage, so switching one concept on or off changes only what
    # that concept does (same grains, same noise).
    streams = {name: np.random.default_rng(np.random.SeedSequence(
        ss.entropy, spawn_key=tuple(ss.spawn_key) + (k,))) for k, name in enumerate(_STREAMS)}
    decide = dict(zip(Realism.CONCEPTS, streams["decide"].random(len(Realism.CONCEPTS))))
    rng = streams["geometry"]
    R = p.realism
    H, W = int(p.height), int(p.width)
    drawn: dict[str, Any] = {}

    # 1. sizes -------------------------------------------------------------------------
    mean_d = _draw(rng, p.mean_diameter, p.mean_diameter_log)
    sigma = _draw(rng, p.sigma)
    circle_sigma = circle_sigma_for(sigma) if p.match_cells else sigma
    circle_mean = mean_d
    pad = max(p.pad * mean_d, 4.0)
    bw, bh = W + 2 * pad, H + 2 * pad
    diam = draw_diameters(rng, circle_mean, circle_sigma, bw * bh)
    radii = diam / 2
    drawn.update(mean_diameter=round(mean_d, 4), sigma=round(sigma, 4),
                 circle_sigma=round(circle_sigma, 4), pad=round(pad, 3), n_circles=int(diam.size))

    # 2. packing ------------------------------------------------------------------------
    centres, info = pack_circles(rng, radii, (bw, bh), iterations=p.packing_iterations,
                                 jitter=p.packing_jitter, tolerance=p.packing_tolerance)
    centres = centres - pad  # image pixel centres are at x = 0..W-1, y = 0..H-1
    drawn["packing"] = info

    # 3. power diagram -> labels ---------------------------------------------------------
    owner, power = power_diagram(centres, radii, (H, W))
    drawn["packing"]["gap_fraction"] = round(float(np.mean(power > 0)), 5)
    present = np.bincount(owner.ravel(), minlength=radii.size) > 0
    used = np.flatnonzero(present)  # seeds with a cell in the image, in seed order
    grains = (np.cumsum(present).astype(np.int32))[owner]  # 1..n
    n_grains = int(used.size)

    # 5. gray levels (drawn now so the twin step can extend them) -------------------------
    g_lo, g_hi = p.gray_range
    squeeze = (1.0, 0.5)  # gray -> centre + c * (gray - 0.5): identity unless low contrast
    if decide["low_contrast"] < R.low_contrast:
        rng = streams["low_contrast"]
        c = _draw(rng, R.contrast)
        squeeze = (c, float(rng.uniform(c / 2, 1 - c / 2)))
        drawn["low_contrast"] = {"contrast": round(c, 4), "centre": round(squeeze[1], 4)}

    def draw_gray(g: np.random.Generator, n: int | None = None):
        level = g.integers(0, 256, n) / 255.0  # the paper: a random 8-bit level per grain
        return squeeze[1] + squeeze[0] * (g_lo + (g_hi - g_lo) * level - 0.5)

    gray = draw_gray(streams["gray"], n_grains + 1)

    # twins (optional) ------------------------------------------------------------------
    regions, region_gray = grains, gray
    if decide["twins"] < R.twins:
        rng = streams["twins"]
        frac = _draw(rng, R.twin_fraction)
        min_extent = max(4, 3 * int(p.boundary_thickness))
        regions, region_gray, _, n_tw = _add_twins(rng, grains, n_grains, gray, frac,
                                                   R.twin_width, min_extent,
                                                   lambda g: float(draw_gray(g)))
        drawn["twins"] = {"fraction": round(frac, 4), "n_twinned": n_tw,
                          "in_target": bool(R.twins_in_target)}
    labels = regions if (R.twins_in_target and regions is not grains) else grains
    if labels is regions and regions is not grains:
        _, labels = np.unique(regions, return_inverse=True)
        labels = labels.reshape(H, W).astype(np.int32) + 1

    # 4. target ---------------------------------------------------------------------------
    target = boundaries_from_labels(labels, p.boundary_thickness)

    # image: concept (ii) gray levels, realism at grain level ------------------------------
    img = region_gray[regions].astype(np.float32)
    yy = np.arange(H, dtype=np.float32)[:, None]  # broadcast against xx: no H x W grids
    xx = np.arange(W, dtype=np.float32)[None, :]
    if decide["texture"] < R.texture:
        rng = streams["texture"]
        amp = _draw(rng, R.texture_amplitude)
        scale = _draw(rng, R.texture_scale)
        grad = _draw(rng, R.grain_gradient)
        cen = centres[used]
        g = rng.normal(0.0, grad / math.sqrt(2), (n_grains + 1, 2)) / mean_d
        gi = grains - 1
        img += (g[grains, 0] * (xx - cen[gi, 0]) + g[grains, 1] * (yy - cen[gi, 1])).astype(
            np.float32)
        img += amp * _smooth_field(rng, (H, W), scale)
        drawn["texture"] = {"amplitude": round(amp, 4), "scale": round(scale, 3),
                            "grain_gradient": round(grad, 4)}
    if decide["bend_contours"] < R.bend_contours:
        rng = streams["bend_contours"]
        frac = _draw(rng, R.bend_fraction)
        depth = _draw(rng, R.bend_depth)
        width = _draw(rng, R.bend_width)
        field_ = _smooth_field(rng, (H, W), max(1.5 * mean_d, 4.0))
        sel = rng.random(n_grains + 1) < frac
        offs = rng.uniform(0, 1, n_grains + 1)
        # level lines of a smooth field, shifted per grain so they end at its boundaries
        phase = field_ * 0.8 + offs[grains]
        dist = np.abs(phase - np.round(phase))  # field units; the field changes ~1/(1.5 d)/px
        d_px = dist * 1.5 * mean_d / 0.8
        band = np.exp(-0.5 * (d_px / width) ** 2) * sel[grains]
        img *= (1.0 - depth * band).astype(np.float32)
        drawn["bend_contours"] = {"fraction": round(frac, 4), "depth": round(depth, 4),
                                  "width": round(width, 3)}
    if decide["grooves"] < R.grooves:
        rng = streams["grooves"]
        depth = _draw(rng, R.groove_depth)
        width = _draw(rng, R.groove_width)
        gb = np.zeros((H, W), bool)
        gb[:, :-1] |= grains[:, :-1] != grains[:, 1:]
        gb[:-1, :] |= grains[:-1, :] != grains[1:, :]
        gb2 = gb.copy()
        gb2[:, 1:] |= gb[:, :-1]
        gb2[1:, :] |= gb[:-1, :]  # both sides of each interface: centred on it
        d = cv2.distanceTransform((~gb2).astype(np.uint8), cv2.DIST_L2, 5)
        img *= (1.0 - depth * np.exp(-0.5 * (d / width) ** 2)).astype(np.float32)
        drawn["grooves"] = {"depth": round(depth, 4), "width": round(width, 3)}
    np.clip(img, 0.0, 1.0, out=img)

    # 6. concept (iii): weakened flipped copy added ------------------------------------------
    if p.overlay and p.overlay_weight > 0:
        img = img + np.float32(p.overlay_weight) * img[::-1, ::-1]
        if p.overlay_saturate:
            np.clip(img, 0.0, 1.0, out=img)
        else:
            img /= np.float32(1.0 + p.overlay_weight)

    # optics -------------------------------------------------------------------------------
    if decide["illumination"] < R.illumination:
        rng = streams["illumination"]
        s = _draw(rng, R.illumination_strength)
        f = _smooth_field(rng, (H, W), max(H, W) / 2.0)
        ang = rng.uniform(0, 2 * math.pi)
        ramp = (math.cos(ang) * (xx - W / 2) + math.sin(ang) * (yy - H / 2)) / max(H, W)
        f = f + 2.0 * ramp.astype(np.float32) / max(float(np.abs(ramp).max()), 1e-6)
        f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)  # 0..1
        img *= (1.0 - s * (1.0 - f)).astype(np.float32)  # gain from 1 - s (shade) to 1
        np.clip(img, 0.0, 1.0, out=img)
        drawn["illumination"] = {"strength": round(s, 4)}
    if decide["blur"] < R.blur:
        rng = streams["blur"]
        s = _draw(rng, R.blur_sigma)
        img = cv2.GaussianBlur(img, (0, 0), s, borderType=cv2.BORDER_REFLECT)
        drawn["blur"] = {"sigma": round(s, 4)}

    # 7. noise (paper order), then the median filter ----------------------------------------
    img = np.ascontiguousarray(img, dtype=np.float32)
    rng = streams["noise"]
    ns = _draw(rng, p.noise_scale)
    if p.noise_scale[0] != p.noise_scale[1]:
        drawn["noise_scale"] = round(ns, 4)
    if p.salt_pepper and p.salt_pepper_density > 0:
        dens = min(1.0, p.salt_pepper_density * ns)
        u = rng.random((H, W))
        img[u < dens / 2] = 0.0
        img[(u >= dens / 2) & (u < dens)] = 1.0
    if p.gaussian and p.gaussian_variance > 0:
        std = math.sqrt(p.gaussian_variance) * ns
        img += (rng.standard_normal((H, W)) * std).astype(np.float32)
        np.clip(img, 0.0, 1.0, out=img)
    if p.poisson:
        img = (rng.poisson(img.astype(np.float64) * p.poisson_scale) / p.poisson_scale)
        img = np.clip(img, 0.0, 1.0).astype(np.float32)
    if p.median and p.median_size > 1:
        k = int(p.median_size)
        if k <= 5:
            img = cv2.medianBlur(img, k)
        else:  # OpenCV filters float32 only up to 5x5: use 16-bit levels for larger windows
            q = ndimage.median_filter(np.round(img * 65535).astype(np.uint16), size=k,
                                      mode="nearest")
            img = q.astype(np.float32) / 65535.0

    drawn["n_grains"] = int(labels.max())
    record = {
        "generator": "napari_grains.synth",
        "version": GENERATOR_VERSION,
        "seed": int(ss.entropy),
        "index": int(ss.spawn_key[0]) if len(ss.spawn_key) == 1 else None,
        "config": p.to_dict(),
        "drawn": drawn,
    }
    if len(ss.spawn_key) > 1:  # a SeedSequence from elsewhere: keep all it takes to redo it
        record["spawn_key"] = [int(k) for k in ss.spawn_key]
    return SynthPair(image=np.ascontiguousarray(img, np.float32), target=target,
                     labels=np.ascontiguousarray(labels, np.int32), params=record,
                     circles=np.c_[centres, radii])


# --------------------------------------------------------------------------------------------
# Many pairs: workers, saving, reading back
# --------------------------------------------------------------------------------------------


def _resolve_workers(workers: int | None) -> int:
    if workers is None or workers <= 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not on Linux
            return max(1, os.cpu_count() or 1)
    return int(workers)


def _base_seed(seed: SeedLike) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, np.random.SeedSequence):
        if seed.spawn_key:
            raise GrainsError("give a data set an integer seed (or a SeedSequence without a "
                              "spawn key).")
        return int(seed.entropy)
    return int(pair_seed(seed).entropy)


def _gen_one(args: tuple[dict, int, int]) -> SynthPair:
    cfg, seed, index = args
    return generate_pair(SynthParams.from_dict(cfg), seed, index=index)


#: Fewer jobs than this run in the calling process (a pool takes seconds to start).
_MIN_POOL_JOBS = 16


def _init_worker() -> None:
    """One thread per worker process: the pool already uses every core."""
    import cv2

    cv2.setNumThreads(1)


def _ordered_map(fn: Callable, items: Iterable, workers: int, chunksize: int) -> Iterator:
    import multiprocessing as mp

    items = list(items)
    if workers <= 1 or len(items) < _MIN_POOL_JOBS:  # starting processes would cost more
        for it in items:
            yield fn(it)
        return
    # forkserver (spawn where missing): never fork a parent that may hold torch / OpenCV thread
    # pools, which can deadlock the children.
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=min(workers, len(items)),
                             mp_context=mp.get_context(method),
                             initializer=_init_worker) as ex:
        yield from ex.map(fn, items, chunksize=chunksize)


def iter_pairs(count: int, params: SynthParams | None = None, seed: SeedLike = None, *,
               workers: int | None = 1, start: int = 0) -> Iterator[SynthPair]:
    """Generate ``count`` pairs, in index order, optionally on a process pool.

    Pair ``i`` is ``generate_pair(params, seed, index=start + i)``, so the result does not depend
    on ``workers``.

    Parameters
    ----------
    count : int
    params : SynthParams, optional
    seed : int, optional
        Seed of the data set (``None``: fresh entropy, recorded in each pair's params).
    workers : int or None
        Processes to use; ``None`` or ``0``: all cores available to this process; 1: in-process.
    start : int
        Index of the first pair.

    Returns
    -------
    iterator of SynthPair
        Parameters are checked at the call; the pairs are made as the iterator is consumed.
    """
    p = (params or SynthParams()).validate()
    if count < 0:
        raise GrainsError("count must be 0 or more.")
    base = _base_seed(seed)
    cfg = p.to_dict()
    n_workers = _resolve_workers(workers)
    chunk = max(1, min(16, count // (4 * n_workers) if n_workers > 1 else 1))
    jobs = [(cfg, base, start + i) for i in range(count)]
    return _ordered_map(_gen_one, jobs, n_workers, chunk)


def _name(index: int, digits: int) -> str:
    return f"{index:0{digits}d}"


def _write_file(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.part{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def _save_one(args: tuple[dict, int, int, str, str, int]) -> dict:
    import cv2
    import tifffile

    cfg, seed, index, out, fmt, digits = args
    pair = generate_pair(SynthParams.from_dict(cfg), seed, index=index)
    out_p = Path(out)
    name = _name(index, digits)
    img_rel = f"images/{name}.{'tif' if fmt == 'tiff' else 'png'}"
    tgt_rel, lab_rel = f"targets/{name}.png", f"labels/{name}.tif"
    if fmt == "tiff":
        _write_file(out_p / img_rel, lambda t: tifffile.imwrite(t, pair.image))
    else:
        img8 = np.round(pair.image * 255).astype(np.uint8)
        _write_file(out_p / img_rel, lambda t: _imwrite_png(cv2, t, img8))
    _write_file(out_p / tgt_rel,
                lambda t: _imwrite_png(cv2, t, pair.target.astype(np.uint8) * 255))
    _write_file(out_p / lab_rel,
                lambda t: tifffile.imwrite(t, pair.labels, compression="zlib"))
    rec = dict(pair.params)
    rec.update(image=img_rel, target=tgt_rel, labels=lab_rel)
    return rec


def _imwrite_png(cv2, path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 2-D array
        raise GrainsError(f"could not encode {path.name} as PNG.")
    path.write_bytes(buf.tobytes())


def iter_save_pairs(out: str | os.PathLike, count: int, params: SynthParams | None = None,
                    seed: SeedLike = None, *, workers: int | None = None, fmt: str = "png",
                    overwrite: bool = False) -> Iterator[dict]:
    """Generate pairs and write them to a folder; yields each pair's manifest record.

    The folder layout (read by training and evaluation)::

        out/images/NNNNN.png     the input, 8-bit gray (``fmt="tiff"``: NNNNN.tif, float32)
        out/targets/NNNNN.png    the boundary target, 0 (bulk) / 255 (boundary)
        out/labels/NNNNN.tif     the grain labels, int32 1..n tiling the image
        out/manifest.jsonl       one JSON object per pair, in index order

    Each manifest line is the pair's ``params`` (seed, index, version, config, drawn values)
    plus the relative paths ``image``, ``target``, ``labels``. Files are written under
    temporary names and renamed when complete; the manifest is written last (atomically), so a
    folder with a manifest is complete. Generation and encoding run on ``workers`` processes.

    Parameters
    ----------
    out : path
        Output folder (created).
    count : int
    params : SynthParams, optional
    seed : int, optional
    workers : int or None
        Processes; ``None``/0: all available cores.
    fmt : {"png", "tiff"}
        File type of the input images.
    overwrite : bool
        Allow writing into a folder that already has a manifest.

    Returns
    -------
    iterator of dict
        The manifest record of each pair, in index order. Parameters and the folder are checked
        at the call; the pairs are written as the iterator is consumed, the manifest when it
        is exhausted.
    """
    if fmt not in ("png", "tiff"):
        raise GrainsError(f"format must be 'png' or 'tiff', not {fmt!r}.")
    p = (params or SynthParams()).validate()
    if count < 0:
        raise GrainsError("count must be 0 or more.")
    out_p = Path(out)
    if out_p.exists() and not out_p.is_dir():
        raise GrainsError(f"{out_p} is a file; give a folder for the pairs.")
    if (out_p / "manifest.jsonl").exists() and not overwrite:
        raise GrainsError(f"{out_p} already holds a data set (manifest.jsonl); choose another "
                          "folder or pass overwrite (--overwrite).")
    try:
        for sub in ("images", "targets", "labels"):
            (out_p / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GrainsError(f"cannot create the data-set folders in {out_p}: {exc}. Choose a "
                          "folder you can write to.") from exc
    base = _base_seed(seed)
    cfg = p.to_dict()
    digits = max(5, len(str(max(count - 1, 0))))
    n_workers = _resolve_workers(workers)
    chunk = max(1, min(16, count // (4 * n_workers) if n_workers > 1 else 1))
    jobs = [(cfg, base, i, str(out_p), fmt, digits) for i in range(count)]
    return _save_all(out_p, jobs, n_workers, chunk)


def _save_all(out_p: Path, jobs: list, n_workers: int, chunk: int) -> Iterator[dict]:
    from napari_grains.io import atomic_open

    records = []
    try:
        for rec in _ordered_map(_save_one, jobs, n_workers, chunk):
            records.append(rec)
            yield rec
        with atomic_open(out_p / "manifest.jsonl", "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
    except OSError as exc:  # disk full, permissions, folder removed: say so, no traceback
        raise GrainsError(f"writing the pairs to {out_p} failed after {len(records)} of "
                          f"{len(jobs)}: {exc}. The folder has no manifest, so it is not a "
                          "usable data set; free space or fix permissions and run again "
                          "with --overwrite.") from exc


def save_pairs(out: str | os.PathLike, count: int, params: SynthParams | None = None,
               seed: SeedLike = None, *, workers: int | None = None, fmt: str = "png",
               overwrite: bool = False) -> Path:
    """Write ``count`` pairs to ``out`` (see :func:`iter_save_pairs`); returns the manifest path."""
    for _ in iter_save_pairs(out, count, params, seed, workers=workers, fmt=fmt,
                             overwrite=overwrite):
        pass
    return Path(out) / "manifest.jsonl"


def read_manifest(folder: str | os.PathLike) -> list[dict]:
    """The records of a data set written by :func:`save_pairs`, in index order."""
    path = Path(folder) / "manifest.jsonl"
    if not path.exists():
        raise GrainsError(f"{folder} has no manifest.jsonl: it is not a complete synthetic data "
                          "set (write one with 'napari-grains synth').")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_pair(folder: str | os.PathLike, record: dict) -> SynthPair:
    """Read one pair of a saved data set back (``record`` from :func:`read_manifest`)."""
    import tifffile

    from napari_grains.io import read_image

    root = Path(folder)
    image = read_image(root / record["image"]).data
    target = read_image(root / record["target"]).data > 0.5
    labels = tifffile.imread(root / record["labels"]).astype(np.int32)
    params = {k: v for k, v in record.items() if k not in ("image", "target", "labels")}
    return SynthPair(image=image, target=target, labels=labels, params=params)


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def contact_sheet(pairs: Sequence[SynthPair], path: str | os.PathLike, *, title: str | None = None,
                  columns: int | None = None) -> Path:
    """Save a PNG showing each pair's input next to its target (red on the input).

    Parameters
    ----------
    pairs : sequence of SynthPair
    path : path
        The PNG to write (atomically).
    title : str, optional
    columns : int, optional
        Pairs per row; default 1 for wide images (width >= 2 × height), else 2.
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    from napari_grains.io import atomic_write

    if not pairs:
        raise GrainsError("no pairs to put on a contact sheet.")
    h, w = pairs[0].image.shape
    cols = columns or (1 if w >= 2 * h else 2)
    rows = math.ceil(len(pairs) / cols)
    panel_w = 2 * w / max(h, w) * 3.2
    panel_h = h / max(h, w) * 3.2 + 0.35
    fig = Figure(figsize=(cols * panel_w, rows * panel_h + (0.4 if title else 0)), dpi=110)
    for k, pair in enumerate(pairs):
        r, c = divmod(k, cols)
        for j in range(2):
            ax = fig.add_subplot(rows, 2 * cols, r * 2 * cols + 2 * c + j + 1)
            ax.set_axis_off()
            if j == 0:
                ax.imshow(pair.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                d = pair.params.get("drawn", {})
                extras = [k2 for k2 in Realism.CONCEPTS if k2 in d]
                txt = (f"#{pair.params.get('index')}  d={d.get('mean_diameter', 0):.0f}px "
                       f"σ={d.get('sigma', 0):.2f}  {d.get('n_grains', '')} grains")
                if extras:
                    txt += "\n" + ", ".join(extras)
                ax.set_title(txt, fontsize=6.5, loc="left")
            else:
                rgb = np.repeat(pair.image[..., None], 3, axis=2)
                rgb[pair.target] = (1.0, 0.1, 0.1)
                ax.imshow(rgb, interpolation="nearest")
                ax.set_title("target (red)", fontsize=6.5, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_write(Path(path), lambda t: fig.savefig(t, format="png"))
