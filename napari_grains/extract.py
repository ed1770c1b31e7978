"""The extraction pipeline: micrograph -> edge stack -> Net1 -> Net2 iterations -> boundaries.

Stages (each a public function, so a GUI or a notebook can run them one by one):

1. :func:`preprocess` -- gray image to the *working* image: resized (``mode="paper"``: squeezed to
   the authors' 96×496; ``mode="native"``: scaled by a factor so the grains have the size the
   model was trained on), contrast-stretched to the 1 % / 99 % percentiles, 7×7 median filter.
2. :func:`compute_edges` -- the 0/255 edge stack (:mod:`napari_grains.edges`).
3. :func:`run_net1` -- Net1's initial guess (tiled with overlap on large images).
4. :func:`iter_net2` -- Net2 applied to its own output until convergence (a generator).
5. :func:`finalize` -- threshold, closing with a disk of radius 2, back to the original size,
   loose boundary ends prolonged to the next boundary
   (:func:`napari_grains.grains.extend_loose_ends`), merged grains split between their
   concave corners (:func:`napari_grains.grains.split_concave_grains`).

:func:`iter_extract` runs them all as a generator of :class:`ExtractEvent` (one per stage and one
per Net2 iteration, data at the original image size), and returns an :class:`ExtractResult` as
its ``StopIteration`` value; :func:`extract` drives it for one-shot use.

Convergence (``ExtractParams.convergence``):

``"paper"`` (default)
    The paper's rule: stop when ``sum |x_k - x_(k-1)| < tolerance × pixels × max`` with max the
    largest possible value, i.e. when the mean absolute change of the [0, 1] map is below
    ``tolerance`` (0.003).
``"script"``
    The authors' script: the map is stored as uint8 (×255) between iterations, the difference
    ``uint8(x_k) - uint8(x_(k-1))`` saturates at 0 (only pixels that grew count), and "max" is
    the maximum of Net1's output instead of 255.

``max_iterations`` caps the loop either way (``ExtractResult.converged`` says which ended it).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from napari_grains.edges import EdgeStack, edge_stack
from napari_grains.errors import GrainsError
from napari_grains.io import Micrograph, read_image, to_gray_float

if TYPE_CHECKING:  # pragma: no cover
    from napari_grains.nets import GrainModel

__all__ = [
    "ExtractEvent",
    "ExtractParams",
    "ExtractResult",
    "Preprocessed",
    "compute_edges",
    "estimate_scale",
    "extract",
    "finalize",
    "imresize",
    "iter_extract",
    "iter_net2",
    "mean_intercept",
    "preprocess",
    "run_net1",
    "scale_sweep",
]

#: Training grain size of the paper model: median mean intercept (px) of the boundary targets
#: of 96×496 synthetic pairs like the authors' (``synth.SynthParams()`` defaults, seeds 0-11:
#: 50.6 px; ``bench_extract.py --calibrate``). Models trained here record theirs in
#: ``card["training"]["mean_intercept_px"]``.
PAPER_MEAN_INTERCEPT_PX = 50.6

#: The automatic scale aims for grains this much larger than in training: on synthetic
#: micrographs of 20-80 px grains tolerance-F1 peaks there (``bench_extract.py --sweep``): a
#: finer working grid places the boundaries better, at the cost of s² more computation.
SCALE_AIM = 1.2

MODES = ("native", "paper")
CONVERGENCE_RULES = ("paper", "script")


# ------------------------------------------------------------------------------------------
# parameters, events, results
# ------------------------------------------------------------------------------------------


@dataclass
class ExtractParams:
    """Everything that controls an extraction.

    Attributes
    ----------
    mode : {"native", "paper"}
        ``"native"`` (default): run at the image's own resolution times ``scale``, padded to a
        multiple of 16 and tiled when large. ``"paper"``: squeeze to ``paper_size`` (96×496) like
        the authors' script, then resize the result back.
    scale : float or "auto"
        Native mode only: resize factor applied before the nets (2 doubles the image), or
        ``"auto"`` to estimate it from the image (:func:`estimate_scale`).
    threshold : float
        Boundary where the final map exceeds this (0.2, the script's ``0.2·255``).
    tolerance : float
        Convergence factor (0.003, the paper's).
    max_iterations : int
        Cap on Net2 iterations.
    convergence : {"paper", "script"}
        Stopping rule; see the module docstring.
    percentiles : (float, float)
        Contrast stretch limits in percent.
    median_size : int
        Median filter side (odd; 0 or 1 for none).
    closing_radius : int
        Radius of the disk used to close the thresholded map (0 for none).
    extend_ends : float
        Prolong each loose boundary end straight ahead until it meets another boundary, at
        most this many mean grain intercepts of the map (0.5 by default; 0 for none; not done
        by :meth:`authors_script`). Boundaries between grains of nearly the same gray level
        are invisible to the edge detectors, so the nets stop the boundary where its
        contrast fades and the two grains merge; see :func:`napari_grains.grains.extend_loose_ends`.
    split_concave : float
        Split merged grains with a straight cut between two deep concave corners, each at
        least this fraction of the region's equivalent diameter deep (0.05 by default; 0 for
        none; not done by :meth:`authors_script`). Grains are close to convex, and where the
        whole boundary between two neighbours is invisible the merged region has a concave
        corner at each of its ends; see :func:`napari_grains.grains.split_concave_grains`.
        Done after ``extend_ends``.
    sobel_threshold, log_sigma, log_threshold, canny_sigma, canny_thresholds, canny_thin
        Edge detector settings, see :func:`napari_grains.edges.edge_stack` (None = MATLAB's
        automatic thresholds).
    paper_size : (int, int)
        Network input size of paper mode (rows, cols).
    upscale_below_rows : int
        Paper mode: images with fewer rows are first doubled (as the script does).
    tile_size : int
        Native mode: core size of a tile (multiple of 16) when an image is tiled.
    tile_margin : int
        Overlap added on each side of a tile and thrown away (multiple of 16, at least the
        nets' receptive-field radius; counting the paper's layers: at most 76 px for Net1,
        59 px for Net2).
    max_untiled_pixels : int
        Images (padded, at working resolution) with more pixels than this are tiled.
    min_scale, max_scale : float
        Bounds on the automatic scale.
    keep_iterations : bool
        Keep every Net2 output in :attr:`ExtractResult.iterations` (uint8, K × rows × cols
        bytes: 200 MB for 2048² × 50). False keeps only the last, for huge images or batches.
    max_working_pixels : int
        Native mode: the scale (given or automatic) is lowered so the working image has at most
        this many pixels (64 M by default: a 2048² image at scale 4), keeping run time bounded.
    """

    mode: str = "native"
    scale: float | str = "auto"
    threshold: float = 0.2
    tolerance: float = 0.003
    max_iterations: int = 50
    convergence: str = "paper"
    percentiles: tuple[float, float] = (1.0, 99.0)
    median_size: int = 7
    closing_radius: int = 2
    extend_ends: float = 0.5
    split_concave: float = 0.05
    sobel_threshold: float | None = None
    log_sigma: float = 2.0
    log_threshold: float | None = None
    canny_sigma: float = math.sqrt(2)
    canny_thresholds: float | tuple[float, float] | None = None
    canny_thin: bool = False
    paper_size: tuple[int, int] = (96, 496)
    upscale_below_rows: int = 50
    tile_size: int = 1024
    tile_margin: int = 96
    max_untiled_pixels: int = 2304 * 2304
    min_scale: float = 0.25
    max_scale: float = 4.0
    max_working_pixels: int = 64 * 1024 * 1024
    keep_iterations: bool = True

    @classmethod
    def authors_script(cls, **overrides: Any) -> ExtractParams:
        """Settings that reproduce the authors' MATLAB inference script (paper mode, uint8 rule)."""
        return cls(**{"mode": "paper", "convergence": "script", "extend_ends": 0.0,
                      "split_concave": 0.0, **overrides})

    def validated(self) -> ExtractParams:
        """Return self after checking every field; raise :class:`GrainsError` on a bad one."""
        if self.mode not in MODES:
            raise GrainsError(f"mode must be one of {MODES} (got {self.mode!r}).")
        if self.convergence not in CONVERGENCE_RULES:
            raise GrainsError(
                f"convergence must be one of {CONVERGENCE_RULES} (got {self.convergence!r})."
            )
        if isinstance(self.scale, str):
            if self.scale != "auto":
                raise GrainsError(f"scale must be a positive number or 'auto' (got {self.scale!r}).")
        elif not (isinstance(self.scale, (int, float)) and 0.05 <= float(self.scale) <= 16):
            raise GrainsError(f"scale must be between 0.05 and 16, or 'auto' (got {self.scale!r}).")
        if not 0.0 < self.threshold < 1.0:
            raise GrainsError(f"threshold must be in (0, 1) (got {self.threshold}).")
        if not self.tolerance >= 0:
            raise GrainsError(f"tolerance must be >= 0 (got {self.tolerance}).")
        if int(self.max_iterations) < 0:
            raise GrainsError(f"max_iterations must be >= 0 (got {self.max_iterations}).")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise GrainsError(f"percentiles must satisfy 0 <= low < high <= 100 (got {lo}, {hi}).")
        if self.median_size > 1 and self.median_size % 2 == 0:
            raise GrainsError(f"median_size must be odd (got {self.median_size}).")
        if self.tile_size < 16 or self.tile_size % 16 or self.tile_margin < 0 or self.tile_margin % 16:
            raise GrainsError(
                "tile_size must be a positive multiple of 16 and tile_margin a multiple of 16 "
                f"(got {self.tile_size}, {self.tile_margin})."
            )
        if self.closing_radius < 0:
            raise GrainsError(f"closing_radius must be >= 0 (got {self.closing_radius}).")
        if not (self.extend_ends >= 0 and math.isfinite(self.extend_ends)):
            raise GrainsError(f"extend_ends must be a number >= 0 of grain intercepts (got "
                              f"{self.extend_ends}); 0 turns it off.")
        if not (0 <= self.split_concave < 1 and math.isfinite(self.split_concave)):
            raise GrainsError(f"split_concave must be a fraction of a grain's diameter in "
                              f"[0, 1) (got {self.split_concave}); 0 turns it off.")
        if not 0 < self.min_scale <= self.max_scale:
            raise GrainsError(
                f"need 0 < min_scale <= max_scale (got {self.min_scale}, {self.max_scale})."
            )
        if self.max_working_pixels < 256:
            raise GrainsError(
                f"max_working_pixels must be at least 256 (got {self.max_working_pixels})."
            )
        if len(self.paper_size) != 2 or any(v < 16 or v % 16 for v in self.paper_size):
            raise GrainsError(
                f"paper_size must be two multiples of 16 (got {self.paper_size})."
            )
        return self


@dataclass
class ExtractEvent:
    """One step of :func:`iter_extract`, for progress display.

    Attributes
    ----------
    stage : str
        ``"preprocess"``, ``"edges"``, ``"initial"``, ``"iteration"`` or ``"boundaries"``.
    data : ndarray or None
        At the ORIGINAL image size: the preprocessed image (float32), the edge stack (uint8
        RGB), Net1's map / a Net2 iteration (float32 in [0, 1]), or the boundaries (bool).
    iteration : int or None
        Net2 iteration number (1-based) for ``"iteration"`` events.
    change : float or None
        Normalised change of that iteration (compare with ``tolerance``).
    tolerance : float
        The convergence tolerance in force.
    progress : float
        Fraction done, 0..1 (the Net2 part counts against ``max_iterations``).
    message : str
        Human-readable line.
    """

    stage: str
    data: np.ndarray | None
    iteration: int | None = None
    change: float | None = None
    tolerance: float = 0.0
    progress: float = 0.0
    message: str = ""


@dataclass
class Preprocessed:
    """The working image and how it maps back to the original.

    Attributes
    ----------
    image : ndarray of uint8, shape (rows, cols)
        Resized, contrast-stretched, median-filtered image at working resolution.
    original_shape : (int, int)
    scale : (float, float)
        Working size / original size, per axis.
    stretch : (float, float)
        Intensities (in [0, 1]) mapped to black and white by the contrast stretch.
    """

    image: np.ndarray
    original_shape: tuple[int, int]
    scale: tuple[float, float]
    stretch: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int]:
        """Working shape (rows, cols)."""
        return tuple(self.image.shape)  # type: ignore[return-value]


@dataclass
class ExtractResult:
    """Everything one extraction computed.

    Attributes
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        The boundary map at the original image size.
    edges : EdgeStack
        The edge stack at working resolution (what Net1 saw) and its thresholds.
    initial : ndarray of float32, shape (rows, cols)
        Net1's initial guess in [0, 1], original size.
    iterations : ndarray of uint8, shape (K, rows, cols)
        Every Net2 output, ×255 as uint8 (bounded memory: 2048² × 50 iterations is 200 MB),
        original size; only the last (K = 1) when ``params.keep_iterations`` is False.
    changes : ndarray of float64, shape (K,)
        Normalised change of each iteration (the convergence curve).
    n_iterations : int
    converged : bool
        True when the rule stopped the loop, False when ``max_iterations`` did.
    refined : ndarray of float32
        The last map at working resolution (unpadded), kept so :meth:`boundaries_at` can
        re-threshold without running the nets.
    preprocessed : Preprocessed
    params : ExtractParams
        The parameters used (``scale`` resolved to a number in native mode).
    model_name : str
    timings : dict
        Milliseconds per stage (``preprocess``, ``edges``, ``net1``, ``net2``, ``finalize``).
    """

    boundaries: np.ndarray
    edges: EdgeStack
    initial: np.ndarray
    iterations: np.ndarray
    changes: np.ndarray
    n_iterations: int
    converged: bool
    refined: np.ndarray
    preprocessed: Preprocessed
    params: ExtractParams
    model_name: str
    timings: dict = field(default_factory=dict)

    @property
    def probability(self) -> np.ndarray:
        """The last map at the original size, float32 in [0, 1]."""
        return _to_original(self.refined, self.preprocessed.original_shape)

    def boundaries_at(self, threshold: float, closing_radius: int | None = None) -> np.ndarray:
        """Re-threshold the last map without running the nets again.

        Parameters
        ----------
        threshold : float in (0, 1)
        closing_radius : int, optional
            Defaults to the one used.

        Returns
        -------
        ndarray of bool, original size
        """
        p = replace(self.params, threshold=float(threshold),
                    closing_radius=self.params.closing_radius if closing_radius is None
                    else int(closing_radius)).validated()
        return finalize(self.refined, self.preprocessed, p)

    def edges_original(self) -> np.ndarray:
        """The edge stack resized (nearest) to the original size, uint8 RGB."""
        return _to_original(self.edges.rgb, self.preprocessed.original_shape, nearest=True)


# ------------------------------------------------------------------------------------------
# MATLAB-compatible resize
# ------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    ) * ((ax > 1) & (ax <= 2))


def _resize_matrix(n_in: int, n_out: int) -> Any:
    """Sparse (n_out, n_in) matrix of MATLAB ``imresize`` bicubic weights (antialiased)."""
    from scipy import sparse

    scale = n_out / n_in
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = math.ceil(width) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # symmetric boundary: 1..n, n..1 repeating (1-based)
    aux = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    cols = aux[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    rows = np.repeat(np.arange(n_out), p)
    m = sparse.csr_matrix((w.ravel(), (rows, cols.ravel())), shape=(n_out, n_in))
    m.sum_duplicates()
    return m


def imresize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize like MATLAB ``imresize(I, [rows cols])`` (bicubic, antialiased when shrinking).

    Parameters
    ----------
    image : ndarray, shape (rows, cols) or (rows, cols, channels)
        Float image (other dtypes are converted to float32).
    shape : (int, int)
        Output (rows, cols).

    Returns
    -------
    ndarray of float32
    """
    a = np.asarray(image, dtype=np.float32)
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise GrainsError(f"cannot resize to {shape}.")
    if a.shape[:2] == (rows, cols):
        return a.copy()
    if a.ndim == 3:
        return np.stack([imresize(a[..., c], shape) for c in range(a.shape[2])], axis=-1)
    out = a
    if rows != a.shape[0]:
        out = np.asarray(_resize_matrix(a.shape[0], rows).astype(np.float32) @ out)
    if cols != a.shape[1]:
        out = np.asarray((_resize_matrix(a.shape[1], cols).astype(np.float32) @ out.T).T)
    return np.ascontiguousarray(out, dtype=np.float32)


def _to_original(a: np.ndarray, shape: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize a working-resolution array to the original shape (fast, OpenCV)."""
    if a.shape[:2] == tuple(shape):
        return a
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(a, (int(shape[1]), int(shape[0])), interpolation=interp)


# ------------------------------------------------------------------------------------------
# stage 1: preprocess
# ------------------------------------------------------------------------------------------


def _as_gray(image: np.ndarray | Micrograph | str | os.PathLike) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):  # a file name: read it (clear errors included)
        image = read_image(image)
    if isinstance(image, Micrograph):
        image = image.data
    a = to_gray_float(np.asarray(image))
    if min(a.shape) < 8:
        raise GrainsError(
            f"image of shape {a.shape} is too small; napari-grains needs at least 8×8 pixels."
        )
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1e-6:
        raise GrainsError(
            f"the image is constant (every pixel is {lo:.4g}): there are no edges to find. "
            "Check that this is the micrograph and not a blank or saturated frame."
        )
    return a


def _stretchlim(a: np.ndarray, percentiles: tuple[float, float], nbins: int) -> tuple[float, float]:
    """MATLAB ``stretchlim``: intensities at the low/high fractions of the histogram."""
    lo_f, hi_f = percentiles[0] / 100.0, percentiles[1] / 100.0
    bins = np.clip(np.floor(a.ravel() * (nbins - 1) + 0.5), 0, nbins - 1).astype(np.intp)
    cdf = np.cumsum(np.bincount(bins, minlength=nbins)) / a.size
    ilow = int(np.argmax(cdf > lo_f))
    ihigh = int(np.argmax(cdf >= hi_f)) if hi_f < 1 else nbins - 1
    if ilow >= ihigh:
        ilow, ihigh = 0, nbins - 1
    return ilow / (nbins - 1), ihigh / (nbins - 1)


def _median_symmetric(u8: np.ndarray, size: int) -> np.ndarray:
    """``medfilt2(I, [size size], 'symmetric')`` on uint8."""
    if size <= 1:
        return u8
    r = size // 2
    padded = np.pad(u8, r, mode="symmetric")
    return np.ascontiguousarray(cv2.medianBlur(padded, size)[r:-r, r:-r])


def _working_shape(shape: tuple[int, int], params: ExtractParams, scale: float) -> tuple[int, int]:
    if params.mode == "paper":
        return tuple(params.paper_size)  # type: ignore[return-value]
    # The working-pixel cap lives here, where every caller (pipeline, GUI, training) passes,
    # so an automatic scale of 4 on a big image can never ask for hours of work or all memory.
    scale = min(scale, math.sqrt(params.max_working_pixels / (shape[0] * shape[1])))
    return max(16, round(shape[0] * scale)), max(16, round(shape[1] * scale))


def preprocess(
    image: np.ndarray | Micrograph, params: ExtractParams | None = None, *, scale: float = 1.0
) -> Preprocessed:
    """Resize, contrast-stretch and median-filter a micrograph.

    Parameters
    ----------
    image : ndarray or Micrograph
        Gray (rows, cols) or RGB(A) image of any dtype (see :func:`napari_grains.io.to_gray_float`).
    params : ExtractParams, optional
    scale : float
        Native mode: resize factor (ignored in paper mode, which squeezes to ``paper_size``).

    Returns
    -------
    Preprocessed

    Raises
    ------
    GrainsError
        Empty, tiny, constant or non-finite images.
    """
    params = (params or ExtractParams()).validated()
    gray = _as_gray(image)
    original = gray.shape
    if params.mode == "paper":
        if gray.shape[0] < params.upscale_below_rows:
            gray = imresize(gray, (gray.shape[0] * 2, gray.shape[1] * 2))
        work = imresize(gray, params.paper_size)
        # the script works on uint8 images: quantise after resizing
        u8 = np.clip(np.floor(work * 255 + 0.5), 0, 255).astype(np.uint8)
        lo, hi = _stretchlim(u8.astype(np.float32) / 255, params.percentiles, 256)
        f = u8.astype(np.float32) / 255
    else:
        shape = _working_shape(original, params, scale)
        work = imresize(gray, shape) if shape != original else gray
        f = np.clip(work, 0, 1)
        lo, hi = _stretchlim(f, params.percentiles, 65536)
    stretched = np.clip((f - lo) / max(hi - lo, 1e-12), 0, 1)
    u8 = np.floor(stretched * 255 + 0.5).astype(np.uint8)
    u8 = _median_symmetric(u8, params.median_size)
    wshape = u8.shape
    return Preprocessed(
        image=u8,
        original_shape=(int(original[0]), int(original[1])),
        scale=(wshape[0] / original[0], wshape[1] / original[1]),
        stretch=(float(lo), float(hi)),
    )


# ------------------------------------------------------------------------------------------
# stage 2: edges
# ------------------------------------------------------------------------------------------


def compute_edges(pre: Preprocessed | np.ndarray, params: ExtractParams | None = None) -> EdgeStack:
    """The edge stack of the working image (MATLAB ``edge()`` defaults unless overridden).

    Parameters
    ----------
    pre : Preprocessed or ndarray
        Output of :func:`preprocess`, or a gray image (uint8 or float in [0, 1]).
    params : ExtractParams, optional

    Returns
    -------
    EdgeStack
    """
    p = params or ExtractParams()
    img = pre.image if isinstance(pre, Preprocessed) else np.asarray(pre)
    return edge_stack(
        img,
        sobel_threshold=p.sobel_threshold,
        log_sigma=p.log_sigma,
        log_threshold=p.log_threshold,
        canny_sigma=p.canny_sigma,
        canny_thresholds=p.canny_thresholds,
        canny_thin=p.canny_thin,
    )


# ------------------------------------------------------------------------------------------
# stages 3-4: the nets, padded and tiled
# ------------------------------------------------------------------------------------------


def _pad_to(a: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad the last two axes of (C, H, W) up to multiples of ``multiple``."""
    h, w = a.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return a, (h, w)
    mode = "reflect" if (ph < h and pw < w) else "symmetric"
    return np.pad(a, ((0, 0), (0, ph), (0, pw)), mode=mode), (h, w)


def _run_tiled(
    fn: Callable[[Any], Any], x: np.ndarray, params: ExtractParams, multiple: int
) -> np.ndarray:
    """Apply a net ``fn`` ((1,C,H,W) tensor -> (1,1,H,W)) to (C, H, W), tiling if large.

    Tiles start on the net's pooling grid (multiples of ``multiple``) and carry
    ``params.tile_margin`` pixels of real image context on each side, which are thrown away;
    with batch norm in inference mode tiles are independent, so the seams vanish.
    """
    import torch

    _, h, w = x.shape
    if params.mode == "paper" or h * w <= params.max_untiled_pixels:
        with torch.inference_mode():
            return fn(torch.from_numpy(np.ascontiguousarray(x))[None])[0, 0].cpu().numpy()
    tile, margin = params.tile_size, params.tile_margin
    tile = max(multiple, tile - tile % multiple)
    margin = margin + (-margin) % multiple
    out = np.empty((h, w), np.float32)
    with torch.inference_mode():
        for y0 in range(0, h, tile):
            y1 = min(h, y0 + tile)
            a0, a1 = max(0, y0 - margin), min(h, y1 + margin)
            for x0 in range(0, w, tile):
                x1 = min(w, x0 + tile)
                b0, b1 = max(0, x0 - margin), min(w, x1 + margin)
                sub = torch.from_numpy(np.ascontiguousarray(x[:, a0:a1, b0:b1]))[None]
                res = fn(sub)[0, 0].cpu().numpy()
                out[y0:y1, x0:x1] = res[y0 - a0 : y1 - a0, x0 - b0 : x1 - b0]
    return out


def run_net1(edges: EdgeStack | np.ndarray, model: GrainModel,
             params: ExtractParams | None = None) -> np.ndarray:
    """Net1's initial guess from an edge stack.

    Parameters
    ----------
    edges : EdgeStack or ndarray (rows, cols, 3) uint8 0/255
    model : GrainModel
    params : ExtractParams, optional
        Tiling settings.

    Returns
    -------
    ndarray of float32, shape (rows, cols), in [0, 1]
    """
    p = params or ExtractParams()
    rgb = edges.rgb if isinstance(edges, EdgeStack) else np.asarray(edges)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise GrainsError(f"edge stack must be (rows, cols, 3); got {rgb.shape}.")
    from napari_grains.nets import reuse_freed_memory

    x = np.transpose(rgb, (2, 0, 1)).astype(np.float32)
    x, (h, w) = _pad_to(x, model.multiple)
    # Net1's layers free big maps that the next layers allocate again: keep them mapped
    with reuse_freed_memory():
        y = _run_tiled(model.initial_guess, x, p, model.multiple)
    return np.ascontiguousarray(y[:h, :w])


def iter_net2(
    initial: np.ndarray, model: GrainModel, params: ExtractParams | None = None, *,
    condition: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, float, bool]]:
    """Apply Net2 to its own output until convergence; yield each iteration.

    Parameters
    ----------
    initial : ndarray of float32, shape (rows, cols), in [0, 1]
        Net1's map (working resolution).
    model : GrainModel
    params : ExtractParams, optional
        ``tolerance``, ``max_iterations``, ``convergence`` and tiling settings.
    condition : ndarray, optional
        For a conditioned Net2 (``model.net2_channels == 2``): the map it sees beside its
        state at every iteration; default ``initial`` (Net1's map, as in use).

    Yields
    ------
    k : int
        Iteration number, from 1.
    x : ndarray of float32, shape (rows, cols)
        Net2's output of this iteration, in [0, 1] (uint8-quantised under the script rule).
    change : float
        Normalised change (``sum |Δ| / (pixels × max)``; the script rule counts only growth
        and uses Net1's maximum).
    converged : bool
        True on the iteration that met the rule (the last one yielded).
    """
    from napari_grains.nets import reuse_freed_memory

    p = (params or ExtractParams()).validated()
    h, w = initial.shape
    npix = h * w
    script = p.convergence == "script"
    prev = np.asarray(initial, np.float32)
    # a conditioned Net2 sees Net1's map beside its own last output at every iteration
    cond = None
    if getattr(model, "net2_channels", 1) == 2:
        cond = np.asarray(initial if condition is None else condition, np.float32)[None].copy()
    if script:
        max1 = float(prev.max()) * 255.0
        prev_u8 = np.floor(prev * 255 + 0.5).astype(np.uint8)
        prev = prev_u8.astype(np.float32) / 255
    # the passes allocate and free the same big buffers: keep them mapped between passes
    with reuse_freed_memory():
        for k in range(1, int(p.max_iterations) + 1):
            x_in = prev[None] if cond is None else np.concatenate([prev[None], cond])
            x, _ = _pad_to(x_in, model.multiple)
            y = np.ascontiguousarray(_run_tiled(model.refine, x, p, model.multiple)[:h, :w])
            if script:
                y_u8 = np.floor(y * 255 + 0.5).astype(np.uint8)
                grown = np.subtract(y_u8, prev_u8, dtype=np.int16).clip(min=0)
                change = float(grown.sum(dtype=np.int64)) / (npix * max1) if max1 > 0 else 0.0
                prev_u8 = y_u8
                y = y_u8.astype(np.float32) / 255
            else:
                change = float(np.abs(y - prev).sum(dtype=np.float64)) / npix
            converged = change < p.tolerance
            yield k, y, change, converged
            prev = y
            if converged:
                return


# ------------------------------------------------------------------------------------------
# stage 5: finalize
# ------------------------------------------------------------------------------------------


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def finalize(refined: np.ndarray, pre: Preprocessed, params: ExtractParams | None = None) -> np.ndarray:
    """Threshold, close, bring back to the original size, prolong ends, split merged grains.

    Parameters
    ----------
    refined : ndarray of float32, working resolution, in [0, 1]
    pre : Preprocessed
        Gives the original shape.
    params : ExtractParams, optional
        ``threshold``, ``closing_radius``, ``extend_ends`` (prolongations of at most
        ``extend_ends`` times the map's own mean intercept, :func:`mean_intercept`, in
        original pixels) and ``split_concave``.

    Returns
    -------
    ndarray of bool, original shape
    """
    p = params or ExtractParams()
    b = (np.asarray(refined) > p.threshold).astype(np.uint8)
    if p.closing_radius > 0:
        b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, _disk(p.closing_radius),
                             borderType=cv2.BORDER_REPLICATE)
    shape = pre.original_shape
    if b.shape != tuple(shape):
        # MATLAB resizes a logical image on doubles and thresholds at 0.5
        b = imresize(b.astype(np.float32), shape) > 0.5
    b = b.astype(bool)
    return clean_up(b, p)


def clean_up(boundaries: np.ndarray, params: ExtractParams | None = None) -> np.ndarray:
    """The last part of :func:`finalize`: prolong loose ends (``extend_ends``), then split
    concave grains (``split_concave``), on a boolean map at the image's own size.

    Returns a new map; the benchmarks call it to finish maps exactly as the pipeline does.
    """
    from napari_grains.grains import extend_loose_ends, split_concave_grains

    p = params or ExtractParams()
    b = np.array(boundaries, bool)
    if p.extend_ends > 0 and b.any():
        # a map with any boundary has a crossing, so its intercept is finite; the reach is
        # capped at half the image inside extend_loose_ends
        b |= extend_loose_ends(b, p.extend_ends * mean_intercept(b))
    if p.split_concave > 0 and b.any():
        b |= split_concave_grains(b, p.split_concave)
    return b


# ------------------------------------------------------------------------------------------
# grain size and the automatic scale
# ------------------------------------------------------------------------------------------


def mean_intercept(boundaries: np.ndarray) -> float:
    """Mean intercept length (pixels) of a boundary map along rows and columns.

    The total length of test lines (every row and every column) that is not boundary, divided
    by the number of boundary crossings (runs of boundary pixels). Returns ``inf`` when no line
    crosses a boundary.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)

    Returns
    -------
    float
    """
    b = np.asarray(boundaries, bool)
    free = float((~b).sum()) * 2
    crossings = 0
    for a in (b, b.T):
        starts = a[:, 1:] & ~a[:, :-1]
        crossings += int(starts.sum()) + int(a[:, 0].sum())
    if crossings == 0:
        return math.inf
    return free / crossings


def _target_intercept(model: GrainModel) -> float:
    """Intercept (working px) of Net1's map that the automatic scale aims for.

    ``SCALE_AIM`` (or the card's ``inference.scale_aim``, measured per model) times the
    training grain intercept.
    """
    card = model.card if isinstance(model.card, dict) else {}
    tr = card.get("training", {})
    v = tr.get("mean_intercept_px") if isinstance(tr, dict) else None
    inf = card.get("inference", {})
    aim = inf.get("scale_aim") if isinstance(inf, dict) else None
    if aim is None:
        aim = SCALE_AIM
    elif not (isinstance(aim, (int, float)) and math.isfinite(aim) and aim > 0):
        raise GrainsError(f"model {getattr(model, 'name', '?')!r}: its card's inference.scale_aim "
                          f"must be a positive number, not {aim!r}; fix or remove it.")
    return float(aim) * (float(v) if v else PAPER_MEAN_INTERCEPT_PX)


#: Scales tried by :func:`estimate_scale` (quarter to four times, steps of sqrt 2).
SCALE_CANDIDATES = tuple(float(2 ** (k / 2)) for k in range(-4, 5))


def scale_sweep(
    image: np.ndarray | Micrograph,
    model: GrainModel,
    params: ExtractParams | None = None,
    *,
    scales: tuple[float, ...] = SCALE_CANDIDATES,
    window: int = 512,
) -> list[tuple[float, float]]:
    """Net1's mean intercept (working pixels) at each candidate scale, smallest scale first.

    Each candidate runs preprocessing, edges and Net1 (no Net2) on a centre window of at most
    ``window``×``window`` working pixels. Scales whose window would be under 16 pixels, or
    where Net1 finds no boundary, are left out.

    Returns
    -------
    list of (scale, intercept)
    """
    p = replace(params or ExtractParams(), mode="native", scale=1.0).validated()
    gray = _as_gray(image)
    h, w = gray.shape
    out: list[tuple[float, float]] = []
    for s in sorted(scales):
        side = max(16, int(window / s))
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        crop = gray[y0 : y0 + side, x0 : x0 + side]
        if min(crop.shape) * s < 16:
            continue
        try:
            pre = preprocess(crop, p, scale=s)
        except GrainsError:  # a flat window
            continue
        guess = run_net1(compute_edges(pre, p), model, p)
        value = mean_intercept(guess > p.threshold)
        if math.isfinite(value):
            out.append((float(s), float(value)))
    return out


def estimate_scale(
    image: np.ndarray | Micrograph,
    model: GrainModel,
    params: ExtractParams | None = None,
) -> float:
    """Estimate the native-mode scale factor that gives grains their training size.

    Net1 is run at scales from 1/4 to 4 in steps of sqrt 2 (:func:`scale_sweep`), and the mean
    intercept of its thresholded map is converted to original pixels, ``g(s) = I(s) / s``.
    Where Net1 traces the real boundaries, ``g`` does not depend on the scale (a plateau); where
    the image is blown up too far, Net1 draws its own cells into the texture and ``g`` falls like
    ``1/s``. The longest run of neighbouring scales whose ``g`` agree within 20 % is taken as the
    plateau (the single flattest step when there is none), its geometric-mean ``g`` as the grain
    intercept, and the scale is ``target / g`` with ``target = SCALE_AIM ×`` the training
    grain intercept (the card's ``training.mean_intercept_px``, else
    :data:`PAPER_MEAN_INTERCEPT_PX`).

    Parameters
    ----------
    image : ndarray or Micrograph
    model : GrainModel
    params : ExtractParams, optional
        ``threshold``, edge settings, ``min_scale``/``max_scale``.

    Returns
    -------
    float
        The scale, clipped to ``[params.min_scale, params.max_scale]``; 1.0 when fewer than two
        candidates found boundaries.
    """
    p = (params or ExtractParams()).validated()
    target = _target_intercept(model)
    sweep = scale_sweep(image, model, p)
    if len(sweep) < 2:
        return 1.0
    logg = np.log([v / s for s, v in sweep])
    steps = np.abs(np.diff(logg))
    flat = steps < math.log(1.2)
    best: tuple[int, float, int, int] | None = None  # (length, -sum, start, stop)
    i = 0
    while i < len(flat):
        if not flat[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flat) and flat[j + 1]:
            j += 1
        cand = (j - i + 1, -float(steps[i : j + 1].sum()), i, j + 1)
        if best is None or cand[:2] > best[:2]:
            best = cand
        i = j + 1
    if best is None:
        k = int(np.argmin(steps))
        lo, hi = k, k + 1
    else:
        lo, hi = best[2], best[3]
    g = float(np.exp(logg[lo : hi + 1].mean()))
    return float(np.clip(target / g, p.min_scale, p.max_scale))


def _resolve_model(model: GrainModel | str | None) -> GrainModel:
    if model is None or isinstance(model, str):
        from napari_grains.nets import load_model

        return load_model(model or "default")
    return model


class _Clock:
    """Wall and process-CPU stopwatch for the stage timings."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, timings: dict, name: str) -> None:
        timings[name] = (time.perf_counter() - self.wall) * 1e3
        timings[f"{name}_cpu"] = (time.process_time() - self.cpu) * 1e3


def iter_extract(
    image: np.ndarray | Micrograph,
    model: GrainModel | str | None = None,
    params: ExtractParams | None = None,
) -> Generator[ExtractEvent, None, ExtractResult]:
    """Run the pipeline, yielding an event per stage and per Net2 iteration.

    Parameters
    ----------
    image : ndarray or Micrograph
        The micrograph (gray or RGB, any dtype).
    model : GrainModel or str, optional
        A loaded model, a model name/folder, or None for ``"default"``.
    params : ExtractParams, optional

    Yields
    ------
    ExtractEvent

    Returns
    -------
    ExtractResult
        As the generator's ``StopIteration.value`` (``result = yield from iter_extract(...)``).

    Examples
    --------
    >>> gen = iter_extract(img, "paper")                       # doctest: +SKIP
    >>> while True:                                            # doctest: +SKIP
    ...     try:
    ...         event = next(gen); print(event.message)
    ...     except StopIteration as stop:
    ...         result = stop.value; break
    """
    p = replace(params or ExtractParams()).validated()
    model = _resolve_model(model)
    timings: dict[str, float] = {}
    tol = float(p.tolerance)
    cap = max(1, int(p.max_iterations))

    gray = _as_gray(image)
    if p.mode == "native":
        if p.scale == "auto":
            clock = _Clock()
            p.scale = estimate_scale(gray, model, p)
            clock.stop(timings, "scale")
        scale = float(p.scale)
        limit = math.sqrt(p.max_working_pixels / (gray.shape[0] * gray.shape[1]))
        if scale > limit:
            scale = p.scale = float(limit)
    else:
        scale = 1.0
    clock = _Clock()
    pre = preprocess(gray, p, scale=scale)
    clock.stop(timings, "preprocess")
    oshape = pre.original_shape
    yield ExtractEvent(
        "preprocess", _to_original(pre.image, oshape).astype(np.float32) / 255, tolerance=tol,
        progress=0.05,
        message=f"preprocessed to {pre.shape[0]}×{pre.shape[1]} (scale {pre.scale[0]:.3g})",
    )

    clock = _Clock()
    edges = compute_edges(pre, p)
    clock.stop(timings, "edges")
    yield ExtractEvent("edges", _to_original(edges.rgb, oshape, nearest=True), tolerance=tol,
                       progress=0.1, message="edge stack (Sobel, LoG, Canny)")

    clock = _Clock()
    initial = run_net1(edges, model, p)
    clock.stop(timings, "net1")
    initial_o = _to_original(initial, oshape)
    yield ExtractEvent("initial", initial_o, tolerance=tol, progress=0.3,
                       message="Net1 initial guess")

    clock = _Clock()
    frames: list[np.ndarray] = []
    changes: list[float] = []
    converged = False
    last = initial
    for k, y, change, conv in iter_net2(initial, model, p):
        y_o = _to_original(y, oshape)
        if not p.keep_iterations:
            frames.clear()
        frames.append(np.floor(y_o * 255 + 0.5).astype(np.uint8))
        changes.append(change)
        last, converged = y, conv
        yield ExtractEvent(
            "iteration", y_o, iteration=k, change=change, tolerance=tol,
            progress=0.3 + 0.65 * min(1.0, k / cap),
            message=f"Net2 iteration {k}: change {change:.5f} (tolerance {tol})",
        )
    clock.stop(timings, "net2")

    clock = _Clock()
    boundaries = finalize(last, pre, p)
    clock.stop(timings, "finalize")
    yield ExtractEvent("boundaries", boundaries, tolerance=tol, progress=1.0,
                       message=f"boundaries ({len(changes)} Net2 iterations, "
                       f"{'converged' if converged else 'stopped at the cap'})")
    iterations = (np.stack(frames) if frames
                  else np.zeros((0, *oshape), np.uint8))
    return ExtractResult(
        boundaries=boundaries,
        edges=edges,
        initial=initial_o.astype(np.float32, copy=False),
        iterations=iterations,
        changes=np.asarray(changes, np.float64),
        n_iterations=len(changes),
        converged=converged,
        refined=np.asarray(last, np.float32),
        preprocessed=pre,
        params=p,
        model_name=model.name,
        timings=timings,
    )


def extract(
    image: np.ndarray | Micrograph,
    model: GrainModel | str | None = None,
    params: ExtractParams | None = None,
    *,
    callback: Callable[[ExtractEvent], None] | None = None,
    **overrides: Any,
) -> ExtractResult:
    """Extract grain boundaries from a micrograph in one call.

    Parameters
    ----------
    image : ndarray or Micrograph
    model : GrainModel or str, optional
        Defaults to the ``"default"`` model.
    params : ExtractParams, optional
    callback : callable, optional
        Called with every :class:`ExtractEvent` (e.g. to advance a progress bar).
    **overrides
        Fields of :class:`ExtractParams` to change, e.g. ``mode="paper"``, ``scale=2``.

    Returns
    -------
    ExtractResult

    Examples
    --------
    >>> from napari_grains.io import read_image           # doctest: +SKIP
    >>> res = extract(read_image("TEM.png"), "paper", scale=2)   # doctest: +SKIP
    >>> res.boundaries.shape, res.n_iterations             # doctest: +SKIP
    """
    p = params or ExtractParams()
    if overrides:
        unknown = set(overrides) - set(asdict(ExtractParams()))
        if unknown:
            raise GrainsError(f"unknown extraction parameter(s): {', '.join(sorted(unknown))}.")
        p = replace(p, **overrides)
    gen = iter_extract(image, model, p)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
