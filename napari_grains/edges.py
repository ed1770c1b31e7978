"""The edge stack: Sobel (red), Laplacian-of-Gaussian zero crossings (green), Canny (blue).

The paper's Net1 was trained on edge stacks made with MATLAB's ``edge()`` at its default,
automatic thresholds, so this module reproduces those detectors and their threshold rules
(MATLAB Image Processing Toolbox, ``edge.m``) with OpenCV / SciPy doing the filtering:

Sobel
    ``bx, by`` = the image correlated with ``fspecial('sobel')/8`` and its transpose (replicate
    border); ``b = bx² + by²``; automatic cutoff ``4 · mean(b)``, i.e. threshold
    ``sqrt(4 · mean(b))`` on the gradient magnitude. Edges are thinned: a pixel is kept when
    ``b > cutoff`` and ``b`` is a local maximum across the dominant gradient axis
    (``b[r, c-1] <= b[r, c] > b[r, c+1]`` where ``|bx| >= |by|``, the same vertically where
    ``|by| >= |bx|``).
Laplacian of Gaussian
    ``fspecial('log', n, sigma)`` with ``n = 2·ceil(3·sigma) + 1`` (13×13 for the default
    ``sigma = 2``), made to sum to zero, replicate border; automatic threshold
    ``0.75 · mean(|LoG|)``. An edge is the negative side of a sign change between 4-neighbours
    whose difference exceeds the threshold (or a zero between a sign change larger than twice
    the threshold); the outermost rows and columns are never edges.
Canny
    Derivative-of-Gaussian gradients (``sigma = sqrt(2)``, kernel half-width ``ceil(4·sigma)``,
    replicate border), magnitude normalised to a maximum of 1; high threshold = the first of 64
    histogram bins (``imhist(mag, 64)``) where the cumulative count exceeds 70 % of the pixels
    (``PercentOfPixelsNotEdges = 0.7``), divided by 64; low threshold ``0.4 · high``.
    Interpolated non-maximum suppression in four direction sectors, then hysteresis: the
    8-connected pieces of the thinned weak edges that contain a strong pixel.

Every threshold and sigma is a parameter; the thresholds actually used are returned in
:attr:`EdgeStack.thresholds`. Thresholds are on MATLAB's scale: the image in [0, 1]; Sobel's on
the magnitude of the /8-normalised gradient; Canny's on the max-normalised magnitude (so in
(0, 1)).

Examples
--------
>>> import numpy as np
>>> from napari_grains.edges import edge_stack
>>> img = np.zeros((64, 64), np.float32); img[:, 32:] = 1.0
>>> stack = edge_stack(img)
>>> stack.rgb.shape, stack.rgb.dtype
((64, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from napari_grains.errors import GrainsError

__all__ = [
    "EdgeStack",
    "canny_edges",
    "edge_stack",
    "log_edges",
    "log_kernel",
    "sobel_edges",
]

_EPS100 = 100 * np.finfo(np.float64).eps
_SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32) / 8.0  # fspecial('sobel')'/8
_SOBEL_Y = np.ascontiguousarray(_SOBEL_X.T)


@dataclass
class EdgeStack:
    """Three binary edge maps stacked as an RGB image, and the thresholds that made them.

    Attributes
    ----------
    rgb : ndarray of uint8, shape (rows, cols, 3)
        0 or 255: Sobel in channel 0 (red), LoG zero crossings in 1 (green), Canny in 2 (blue).
        This is what Net1 takes (as floats 0..255).
    thresholds : dict
        ``{"sobel": float, "log": float, "canny": (low, high)}``: the thresholds used, automatic
        or given.
    sigmas : dict
        ``{"log": float, "canny": float}``.
    """

    rgb: np.ndarray
    thresholds: dict = field(default_factory=dict)
    sigmas: dict = field(default_factory=dict)

    @property
    def sobel(self) -> np.ndarray:
        """Sobel edges, bool (rows, cols)."""
        return self.rgb[..., 0] > 0

    @property
    def log(self) -> np.ndarray:
        """Laplacian-of-Gaussian zero crossings, bool (rows, cols)."""
        return self.rgb[..., 1] > 0

    @property
    def canny(self) -> np.ndarray:
        """Canny edges, bool (rows, cols)."""
        return self.rgb[..., 2] > 0


def _as_image(image: np.ndarray) -> np.ndarray:
    """A 2-D float32 image in [0, 1] (uint8 scaled by 1/255 like MATLAB's im2single)."""
    a = np.asarray(image)
    if a.ndim != 2:
        raise GrainsError(
            f"edge detection needs a 2-D gray image; got shape {a.shape}. Convert it with "
            "napari_grains.io.to_gray_float first."
        )
    if min(a.shape) < 3:
        raise GrainsError(f"image of shape {a.shape} is too small for edge detection (min 3×3).")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise GrainsError("image contains NaN or infinite values; clean them up first.")
    return a


# ------------------------------------------------------------------------------------------
# Sobel
# ------------------------------------------------------------------------------------------


def sobel_edges(
    image: np.ndarray, threshold: float | None = None, *, thinning: bool = True
) -> tuple[np.ndarray, float]:
    """Sobel edges as MATLAB ``edge(I, 'sobel', threshold)``.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Gray image, float in [0, 1] (uint8 is scaled by 1/255).
    threshold : float, optional
        Threshold on the gradient magnitude ``sqrt(bx² + by²)`` of the /8-normalised Sobel
        gradient. None (default): ``sqrt(4 · mean(bx² + by²))``.
    thinning : bool
        Keep only local maxima across the dominant gradient axis (MATLAB's default).

    Returns
    -------
    edges : ndarray of bool, shape (rows, cols)
    threshold : float
        The threshold used.
    """
    a = _as_image(image)
    bx = cv2.filter2D(a, cv2.CV_32F, _SOBEL_X, borderType=cv2.BORDER_REPLICATE)
    by = cv2.filter2D(a, cv2.CV_32F, _SOBEL_Y, borderType=cv2.BORDER_REPLICATE)
    b = bx * bx + by * by
    if threshold is None:
        cutoff = 4.0 * float(b.sum(dtype=np.float64)) / b.size
        threshold = math.sqrt(cutoff)
    else:
        threshold = float(threshold)
        if threshold < 0:
            raise GrainsError(f"sobel threshold must be >= 0 (got {threshold}).")
        cutoff = threshold**2
    if not thinning:
        return b > cutoff, threshold
    ax, ay = np.abs(bx), np.abs(by)
    true_col = np.ones((b.shape[0], 1), bool)
    true_row = np.ones((1, b.shape[1]), bool)
    # b1: left neighbour <= centre; b2: centre > right neighbour (borders count as passing)
    b1 = np.concatenate([true_col, b[:, :-1] <= b[:, 1:]], axis=1)
    b2 = np.concatenate([b[:, :-1] > b[:, 1:], true_col], axis=1)
    b3 = np.concatenate([true_row, b[:-1, :] <= b[1:, :]], axis=0)
    b4 = np.concatenate([b[:-1, :] > b[1:, :], true_row], axis=0)
    horiz = (ax >= ay - _EPS100) & b1 & b2
    vert = (ay >= ax - _EPS100) & b3 & b4
    return (b > cutoff) & (horiz | vert), threshold


# ------------------------------------------------------------------------------------------
# Laplacian of Gaussian
# ------------------------------------------------------------------------------------------


def log_kernel(sigma: float = 2.0, size: int | None = None) -> np.ndarray:
    """MATLAB ``fspecial('log', size, sigma)``, made to sum to zero.

    Parameters
    ----------
    sigma : float
        Standard deviation of the Gaussian, in pixels.
    size : int, optional
        Kernel side; default ``2·ceil(3·sigma) + 1`` (what ``edge(I, 'log')`` uses).

    Returns
    -------
    ndarray of float64, shape (size, size)
    """
    if not sigma > 0:
        raise GrainsError(f"LoG sigma must be > 0 (got {sigma}).")
    if size is None:
        size = math.ceil(sigma * 3) * 2 + 1
    half = (size - 1) / 2.0
    x, y = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    s2 = sigma * sigma
    r2 = x * x + y * y
    h = np.exp(-r2 / (2 * s2))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    h /= h.sum()
    h1 = h * (r2 - 2 * s2) / (s2 * s2)
    h = h1 - h1.sum() / h1.size
    return h - h.sum() / h.size


def log_edges(
    image: np.ndarray, sigma: float = 2.0, threshold: float | None = None
) -> tuple[np.ndarray, float]:
    """Laplacian-of-Gaussian zero crossings as MATLAB ``edge(I, 'log', threshold, sigma)``.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Gray image, float in [0, 1].
    sigma : float
        Gaussian sigma in pixels (default 2, MATLAB's).
    threshold : float, optional
        Minimum jump of the LoG response across a zero crossing. None (default):
        ``0.75 · mean(|LoG|)``.

    Returns
    -------
    edges : ndarray of bool, shape (rows, cols)
    threshold : float
    """
    a = _as_image(image)
    op = log_kernel(sigma).astype(np.float32)
    b = cv2.filter2D(a, cv2.CV_32F, op, borderType=cv2.BORDER_REPLICATE)
    if threshold is None:
        threshold = 0.75 * float(np.abs(b).sum(dtype=np.float64)) / b.size
    else:
        threshold = float(threshold)
        if threshold < 0:
            raise GrainsError(f"LoG threshold must be >= 0 (got {threshold}).")
    t = np.float32(threshold)
    c = b[1:-1, 1:-1]
    up, down = b[:-2, 1:-1], b[2:, 1:-1]
    left, right = b[1:-1, :-2], b[1:-1, 2:]
    neg = c < 0
    nz = (
        (neg & (right > 0) & (np.abs(c - right) > t))
        | (neg & (left > 0) & (np.abs(left - c) > t))
        | (neg & (down > 0) & (np.abs(c - down) > t))
        | (neg & (up > 0) & (np.abs(up - c) > t))
    )
    e = np.zeros(b.shape, bool)
    e[1:-1, 1:-1] = nz
    zero = c == 0
    if zero.any():
        t2 = 2 * t
        ud = np.abs(up - down) > t2
        lr = np.abs(left - right) > t2
        z = zero & (
            (((up < 0) & (down > 0)) | ((up > 0) & (down < 0))) & ud
            | (((left < 0) & (right > 0)) | ((left > 0) & (right < 0))) & lr
        )
        e[1:-1, 1:-1] |= z
    return e, threshold


# ------------------------------------------------------------------------------------------
# Canny
# ------------------------------------------------------------------------------------------


def _dog_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's 1-D Gaussian and derivative-of-Gaussian kernels (edge.m smoothGradient)."""
    extent = math.ceil(4 * sigma)
    x = np.arange(0, extent + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma * sigma)) / (math.sqrt(2 * math.pi) * sigma)
    g /= 2 * g[1:].sum() + g[0]
    gauss = np.concatenate([g[::-1], g[1:]])
    deriv = np.gradient(gauss)
    deriv /= deriv[: extent + 1].sum()
    return gauss, deriv


def _canny_gradients(a: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    gauss, deriv = _dog_kernels(sigma)
    # MATLAB convolves ('conv'); OpenCV correlates: flip the (antisymmetric) derivative kernel.
    g = gauss.astype(np.float32)
    d = deriv[::-1].astype(np.float32).copy()
    dx = cv2.sepFilter2D(a, cv2.CV_32F, d, g, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.sepFilter2D(a, cv2.CV_32F, g, d, borderType=cv2.BORDER_REPLICATE)
    return dx, dy


def _canny_high_threshold(mag: np.ndarray, percent_not_edges: float = 0.7) -> float:
    """``imhist(mag, 64)``: the first bin whose cumulative count exceeds 70 %, divided by 64."""
    bins = np.clip(np.floor(mag.ravel() * 63 + 0.5), 0, 63).astype(np.intp)
    counts = np.bincount(bins, minlength=64)
    cum = np.cumsum(counts)
    idx = int(np.argmax(cum > percent_not_edges * mag.size))  # 0-based first bin
    return (idx + 1) / 64.0


def _nonmax_suppress(dx: np.ndarray, dy: np.ndarray, mag: np.ndarray, low: float) -> np.ndarray:
    """Interpolated non-maximum suppression in MATLAB's four direction sectors."""
    ix = dx[1:-1, 1:-1]
    iy = dy[1:-1, 1:-1]
    m = mag[1:-1, 1:-1]
    # neighbours: m_<row offset><col offset>, p = +1, n = -1, z = 0
    m_zp, m_zn = mag[1:-1, 2:], mag[1:-1, :-2]
    m_nz, m_pz = mag[:-2, 1:-1], mag[2:, 1:-1]
    m_np, m_pn = mag[:-2, 2:], mag[2:, :-2]
    m_nn, m_pp = mag[:-2, :-2], mag[2:, 2:]
    s1 = ((iy <= 0) & (ix > -iy)) | ((iy >= 0) & (ix < -iy))
    s2 = ~s1 & (((ix > 0) & (-iy >= ix)) | ((ix < 0) & (-iy <= ix)))
    s3 = ~s1 & ~s2 & (((ix <= 0) & (ix > iy)) | ((ix >= 0) & (ix < iy)))
    s4 = ~s1 & ~s2 & ~s3 & (((iy < 0) & (ix <= iy)) | ((iy > 0) & (ix >= iy)))
    with np.errstate(divide="ignore", invalid="ignore"):
        d_yx = np.abs(iy / ix)
        d_xy = np.abs(ix / iy)
    keep = np.zeros(m.shape, bool)
    for sector, d, a1, b1, a2, b2 in (
        (s1, d_yx, m_zp, m_np, m_zn, m_pn),
        (s2, d_xy, m_nz, m_np, m_pz, m_pn),
        (s3, d_xy, m_nz, m_nn, m_pz, m_pp),
        (s4, d_yx, m_zn, m_nn, m_zp, m_pp),
    ):
        sel = sector & (m > low)
        if not sel.any():
            continue
        dd = d[sel]
        g1 = a1[sel] * (1 - dd) + b1[sel] * dd
        g2 = a2[sel] * (1 - dd) + b2[sel] * dd
        mv = m[sel]
        keep[sel] = (mv >= g1) & (mv >= g2)
    out = np.zeros(mag.shape, bool)
    out[1:-1, 1:-1] = keep
    return out


_EIGHT = np.ones((3, 3), bool)


def canny_edges(
    image: np.ndarray,
    sigma: float = math.sqrt(2),
    thresholds: float | tuple[float, float] | None = None,
    *,
    thin: bool = False,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Canny edges as MATLAB ``edge(I, 'canny', thresholds, sigma)``.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Gray image, float in [0, 1].
    sigma : float
        Sigma of the derivative-of-Gaussian filter (default ``sqrt(2)``, MATLAB's).
    thresholds : float or (low, high), optional
        On the gradient magnitude normalised to a maximum of 1. A single value is the high
        threshold (low = 0.4·high). None (default): high from the 64-bin histogram so that 70 %
        of the pixels lie below it, low = 0.4·high.
    thin : bool
        Apply one pass of morphological thinning afterwards (``bwmorph(e, 'thin', 1)``, which
        older MATLAB releases did; current ones do not).

    Returns
    -------
    edges : ndarray of bool, shape (rows, cols)
    thresholds : (low, high)
    """
    a = _as_image(image)
    dx, dy = _canny_gradients(a, float(sigma))
    mag = np.hypot(dx, dy)
    mmax = float(mag.max())
    if mmax > 0:
        mag /= mmax
    if thresholds is None:
        high = _canny_high_threshold(mag)
        low = 0.4 * high
    elif np.ndim(thresholds) == 0:
        high = float(thresholds)
        low = 0.4 * high
    else:
        low, high = (float(v) for v in thresholds)
    if not (0 <= low < high < 1):
        raise GrainsError(
            f"Canny thresholds must satisfy 0 <= low < high < 1 (got low={low}, high={high})."
        )
    weak = _nonmax_suppress(dx, dy, mag, low)
    labels, n = ndimage.label(weak, structure=_EIGHT)
    if n == 0:
        e = weak
    else:
        strong_labels = np.unique(labels[weak & (mag > high)])
        keep = np.zeros(n + 1, bool)
        keep[strong_labels] = True
        keep[0] = False
        e = keep[labels]
    if thin:
        from skimage.morphology import thin as _thin

        e = _thin(e, max_num_iter=1)
    return e, (low, high)


# ------------------------------------------------------------------------------------------
# the stack
# ------------------------------------------------------------------------------------------


def edge_stack(
    image: np.ndarray,
    *,
    sobel_threshold: float | None = None,
    log_sigma: float = 2.0,
    log_threshold: float | None = None,
    canny_sigma: float = math.sqrt(2),
    canny_thresholds: float | tuple[float, float] | None = None,
    canny_thin: bool = False,
) -> EdgeStack:
    """The paper's edge stack: Sobel (R), LoG (G), Canny (B) as a 0/255 RGB image.

    Each threshold left as None is chosen automatically with MATLAB ``edge()``'s rule (see the
    module docstring); give a value to override it.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Gray image, float in [0, 1] (uint8 is scaled by 1/255). The pipeline hands in the
        contrast-stretched, median-filtered image.
    sobel_threshold, log_sigma, log_threshold, canny_sigma, canny_thresholds, canny_thin
        See :func:`sobel_edges`, :func:`log_edges`, :func:`canny_edges`.

    Returns
    -------
    EdgeStack
    """
    a = _as_image(image)
    s, ts = sobel_edges(a, sobel_threshold)
    g, tl = log_edges(a, log_sigma, log_threshold)
    c, tc = canny_edges(a, canny_sigma, canny_thresholds, thin=canny_thin)
    rgb = np.empty(a.shape + (3,), np.uint8)
    rgb[..., 0] = s
    rgb[..., 1] = g
    rgb[..., 2] = c
    rgb *= 255
    return EdgeStack(
        rgb=rgb,
        thresholds={"sobel": ts, "log": tl, "canny": tc},
        sigmas={"log": float(log_sigma), "canny": float(canny_sigma)},
    )
