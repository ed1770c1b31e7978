"""Grains from a boundary map, and the per-grain table.

:func:`label_grains` turns a boolean boundary map (True = grain boundary) into an int32 label
image: small gaps in the boundaries are closed, the boundaries are thinned to one pixel, the
4-connected interiors are labelled, specks below a minimum area are dropped, and, when asked,
the boundary pixels are handed back to the nearest grain so that the grains tile the image.

:func:`grain_table` measures every grain in the shape of scikit-image's
:func:`skimage.measure.regionprops_table` (one row per grain, one column per property), in
pixels and, when the pixel size is known, in physical units too. It is vectorised over
run-lengths of the label image, so 5,000 grains on a 2048×2048 map take well under a second of
the measuring itself (see ``benchmarks/bench_measure.py``).

Conventions
-----------
* A pixel is a unit square centred on its integer (row, col) coordinate. Moments (centroid,
  axis lengths, orientation) use pixel centres, exactly as scikit-image does; Feret diameters
  use pixel corners, so a 9×9 square grain has Feret min 9 and Feret max 9·√2. Solidity is
  the area over the number of pixels whose centres lie in the convex hull of the grain's pixel
  centres (counted exactly with Pick's theorem), so a digitised convex grain has solidity 1.
* ``perimeter`` is scikit-image's 4-connectivity estimate (the same numbers as
  ``regionprops(...).perimeter``).
* A grain *touches the border* when one of its pixels lies on the first or last row or column
  of the image, or only boundary pixels (up to 3) separate it from the edge
  (:func:`border_labels`); ASTM E112 counts such grains as halves.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_grains.errors import GrainsError

__all__ = [
    "AREA_COLUMNS",
    "LENGTH_COLUMNS",
    "LENGTH_UNITS",
    "add_physical_columns",
    "ascii_unit",
    "border_labels",
    "extend_loose_ends",
    "grain_table",
    "label_grains",
    "neighbour_pairs",
    "normalize_unit",
    "split_concave_grains",
    "unit_to_mm",
]

#: Length units understood, with their size in millimetres.
LENGTH_UNITS = {"nm": 1e-6, "µm": 1e-3, "mm": 1.0}
_UNIT_ALIASES = {
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm", "nanometres": "nm",
    "µm": "µm", "μm": "µm", "um": "µm", "micron": "µm", "microns": "µm", "micrometer": "µm",
    "micrometre": "µm", "micrometers": "µm", "micrometres": "µm", "\\u00b5m": "µm",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "millimeters": "mm", "millimetres": "mm",
}
#: ASCII spelling of each unit for column names and file contents that must stay ASCII.
_ASCII = {"nm": "nm", "µm": "um", "mm": "mm"}

#: Table columns that are lengths (scaled by the pixel size in physical units).
LENGTH_COLUMNS = (
    "centroid-0", "centroid-1", "equivalent_diameter", "perimeter", "axis_major_length",
    "axis_minor_length", "feret_diameter_max", "feret_diameter_min",
)
#: Table columns that are areas (scaled by the pixel size squared).
AREA_COLUMNS = ("area",)


def normalize_unit(unit: str | None) -> str | None:
    """Return the canonical spelling (``"nm"``, ``"µm"``, ``"mm"``) of a length unit.

    Parameters
    ----------
    unit : str or None
        A unit as files and users write it (``"um"``, ``"micron"``, ``"μm"``, ``"nm"`` ...).
        None, ``""``, ``"px"`` and ``"pixel"`` mean no physical unit.

    Returns
    -------
    str or None

    Raises
    ------
    GrainsError
        For a unit that is not a length napari-grains knows.
    """
    if unit is None:
        return None
    u = str(unit).strip()
    if u.lower() in ("", "px", "pixel", "pixels"):
        return None
    key = u if u in _UNIT_ALIASES else u.lower()
    if key not in _UNIT_ALIASES:
        raise GrainsError(
            f"unknown length unit {unit!r}; give the pixel size in nm, µm (or um) or mm."
        )
    return _UNIT_ALIASES[key]


def unit_to_mm(unit: str) -> float:
    """Size of one ``unit`` in millimetres (``"nm"`` -> 1e-6)."""
    u = normalize_unit(unit)
    if u is None:
        raise GrainsError("a physical unit is needed here; give the pixel size in nm, µm or mm.")
    return LENGTH_UNITS[u]


def ascii_unit(unit: str) -> str:
    """ASCII spelling of a unit for column names (``"µm"`` -> ``"um"``)."""
    return _ASCII[normalize_unit(unit)]


#: Pixel sizes accepted, in mm per pixel: 0.1 pm (far below any TEM) to 1 m. Outside this
#: the number or its unit is wrong, and areas in mm² would overflow or underflow to 0.
PIXEL_SIZE_RANGE_MM = (1e-10, 1e3)


def _check_pixel_size(pixel_size, unit) -> tuple[float | None, str | None]:
    if pixel_size is None:
        return None, None
    try:
        ps = float(pixel_size)
    except (TypeError, ValueError):
        raise GrainsError(f"pixel size {pixel_size!r} is not a number.") from None
    if not (math.isfinite(ps) and ps > 0):
        raise GrainsError(f"pixel size must be a positive number, got {pixel_size!r}.")
    u = normalize_unit(unit)
    if u is None:
        raise GrainsError(
            "a pixel size was given without its unit; say whether it is in nm, µm or mm."
        )
    mm = ps * unit_to_mm(u)
    if not (PIXEL_SIZE_RANGE_MM[0] <= mm <= PIXEL_SIZE_RANGE_MM[1]):
        raise GrainsError(
            f"a pixel size of {ps:g} {u} ({mm:.3g} mm per pixel) is outside what any "
            f"microscope image has ({PIXEL_SIZE_RANGE_MM[0]:g} to {PIXEL_SIZE_RANGE_MM[1]:g} "
            "mm); check the number and its unit."
        )
    return ps, u


def _as_boundaries(boundaries) -> np.ndarray:
    b = np.asarray(boundaries)
    if b.ndim != 2:
        raise GrainsError(
            f"a boundary map must be a 2-D image, got shape {b.shape}; pass one plane."
        )
    if b.size == 0 or min(b.shape) < 2:
        raise GrainsError(f"the boundary map is empty or too small (shape {b.shape}).")
    if b.dtype != bool:
        if not np.issubdtype(b.dtype, np.number):
            raise GrainsError(f"a boundary map must be numbers or booleans, not {b.dtype}.")
        if np.issubdtype(b.dtype, np.inexact) and not np.isfinite(b).all():
            raise GrainsError("the boundary map contains NaN or infinite values; it should "
                              "be 0 (bulk) and 1 or 255 (boundary).")
        vals = np.unique(b[: min(b.shape[0], 512)])
        if vals.size > 2:
            raise GrainsError(
                "the boundary map is not binary (it has more than two values); threshold it "
                "first, e.g. boundaries = probability > 0.5."
            )
        b = b > 0 if vals.size < 2 else b == vals.max()
    return b


def label_grains(
    boundaries: np.ndarray,
    *,
    close_gaps: int = 3,
    thin: bool = True,
    min_area: int = 10,
    fill_boundaries: bool = False,
) -> np.ndarray:
    """Label the grains enclosed by a boundary map.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        True on grain boundaries. A 0/1 or 0/255 array is accepted too.
    close_gaps : int
        Close gaps of up to this many missing pixels in the boundaries: every loose end of a
        boundary (an end point of its one-pixel skeleton, away from the image edge) is joined
        by a straight segment to the nearest other boundary pixel at most ``close_gaps + 1``
        away.
        0 leaves the map as it is.
    thin : bool
        Thin the boundaries to one pixel (an 8-connected skeleton) before labelling, so a
        thick boundary does not eat into the grains. Boundary pixels that then separate
        nothing (dangling spurs, dropped specks, a line along the image edge: their 3×3
        neighbourhood holds a single grain) are given to that grain.
    min_area : int
        Grains smaller than this many pixels are dropped (they become boundary, or are
        absorbed by their neighbours when ``fill_boundaries`` is True).
    fill_boundaries : bool
        Give every boundary pixel to the nearest grain, so the grains tile the image and
        no label is 0.

    Returns
    -------
    labels : ndarray of int32, shape (rows, cols)
        1..N for the grains (4-connected interiors), 0 for boundary pixels unless
        ``fill_boundaries``.

    Raises
    ------
    GrainsError
        When ``boundaries`` is not a 2-D binary map or a parameter is out of range.

    Examples
    --------
    >>> b = np.zeros((21, 21), bool); b[10, :] = True; b[:, 10] = True
    >>> labels = label_grains(b, close_gaps=0, min_area=1)
    >>> int(labels.max()), int((labels == 1).sum())
    (4, 100)
    """
    from skimage import measure

    b = _as_boundaries(boundaries)
    if int(close_gaps) < 0 or int(min_area) < 0:
        raise GrainsError("close_gaps and min_area must be 0 or more.")
    close_gaps, min_area = int(close_gaps), int(min_area)
    if thin or close_gaps > 0:
        skel = _skeleton(b)
        if close_gaps > 0:
            bridges = _bridge_gaps(skel, close_gaps)
            skel |= bridges
            b = b | bridges
        if thin:
            b = skel
    labels = measure.label(~b, connectivity=1).astype(np.int32, copy=False)
    if min_area > 1 and labels.max() > 0:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
            labels = _relabel(labels)
    if thin and labels.max() > 0:
        labels = _absorb_loose_boundary(labels)
    if fill_boundaries and labels.max() > 0:
        labels = _fill_from_nearest(labels)
    return labels


def _absorb_loose_boundary(labels: np.ndarray) -> np.ndarray:
    """Give boundary pixels that separate nothing to the one grain around them.

    On one-pixel boundaries, a pixel whose 3×3 neighbourhood holds a single grain is a
    dangling piece (a spur left by extraction, a dropped speck, a line along the image edge),
    not a boundary between grains: it becomes part of that grain. Pixels between two or more
    grains are kept, so no two grains merge.
    """
    big = np.iinfo(np.int32).max
    hi = ndi.maximum_filter(labels, size=3, mode="constant", cval=0)
    lo = ndi.minimum_filter(np.where(labels > 0, labels, big), size=3, mode="constant",
                            cval=big)
    loose = (labels == 0) & (hi > 0) & (hi == lo)
    out = labels.copy()
    out[loose] = hi[loose]
    return out


def _skeleton(b: np.ndarray) -> np.ndarray:
    """One-pixel 8-connected skeleton that still reaches the image edge where ``b`` does."""
    from skimage import morphology

    # extend the map past the image edge first: a boundary that runs into the edge must
    # still reach it after thinning, or the grains on either side would merge there. Thinning
    # shortens a line's end by about half its width, so the margin must exceed that: 4 px was
    # too little for the 10-12 px wide lines of a map extracted at a working scale below 1.
    pad = 32
    return morphology.skeletonize(np.pad(b, pad, mode="edge"))[pad:-pad, pad:-pad]


def _bridge_gaps(skel: np.ndarray, max_gap: int) -> np.ndarray:
    """Straight segments joining loose skeleton ends to the nearest other boundary pixel."""
    from collections import deque

    from scipy.spatial import cKDTree
    from skimage.draw import line

    h, w = skel.shape
    count = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
    ends = skel & (count == 2)  # the pixel itself and exactly one neighbour
    ends[[0, -1], :] = False  # a line leaving the image is not a loose end
    ends[:, [0, -1]] = False
    out = np.zeros_like(skel)
    er, ec = np.nonzero(ends)
    if er.size == 0:
        return out
    pts = np.argwhere(skel)
    tree = cKDTree(pts)
    depth = max_gap + 3
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    for r0, c0 in zip(er.tolist(), ec.tolist(), strict=True):
        # pixels of the end's own branch near it are not a gap's other side
        own = {(r0, c0)}
        queue = deque([(r0, c0, 0)])
        while queue:
            r, c, d = queue.popleft()
            if d >= depth:
                continue
            for dr, dc in offsets:
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and skel[rr, cc] and (rr, cc) not in own:
                    own.add((rr, cc))
                    queue.append((rr, cc, d + 1))
        best, best_d = None, np.inf
        for j in tree.query_ball_point((r0, c0), r=max_gap + 1.5):
            rr, cc = int(pts[j, 0]), int(pts[j, 1])
            if (rr, cc) in own:
                continue
            dist = (rr - r0) ** 2 + (cc - c0) ** 2
            if dist < best_d:
                best, best_d = (rr, cc), dist
        if best is not None:
            lr, lc = line(r0, c0, best[0], best[1])
            out[lr, lc] = True
    return out


_EIGHT = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)


def extend_loose_ends(boundaries: np.ndarray, max_length: float, *, direction_px: int = 12,
                      min_branch: int = 4) -> np.ndarray:
    """Segments that prolong loose boundary ends straight ahead until they meet a boundary.

    A boundary that stops inside the image is most often one whose continuation has too
    little contrast to be seen: between two grains of nearly the same gray level the edge
    detectors and the nets find nothing, and the grains merge. In a grain structure the
    missing piece usually continues the visible one to the next boundary. For each loose end
    of the one-pixel skeleton (an end point away from the image edge, on a branch at least
    ``min_branch`` px long) the direction is taken from the last ``direction_px`` pixels of
    its branch, leaving out the third nearest the tip (the skeleton of a wide line bends
    where the line ends); the segment is walked up to ``max_length`` px (and at most half
    of the image's larger side) and kept only if it reaches
    another boundary -- an end that would stop in the open or run out of the image is left
    alone (a spur pointing at the image edge is more often noise than a lost boundary).

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    max_length : float
        Longest prolongation in pixels (0: none).
    direction_px : int
        Pixels of the branch used to estimate its direction.
    min_branch : int
        Shorter branches (specks, stubs) are not prolonged.

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        The new segments only (1 px wide); ``boundaries | result`` is the prolonged map.

    Examples
    --------
    >>> b = np.zeros((20, 20), bool); b[10, :] = True; b[:6, 5] = True
    >>> added = extend_loose_ends(b, 10)
    >>> bool(added[6:10, 5].all()), int(added.sum())
    (True, 4)
    """
    b = _as_boundaries(boundaries)
    out = np.zeros(b.shape, bool)
    if max_length <= 0 or not b.any():
        return out
    skel = _skeleton(b)
    h, w = skel.shape
    max_length = min(float(max_length), max(h, w) / 2)
    count = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
    ends = skel & (count == 2)
    ends[[0, -1], :] = False
    ends[:, [0, -1]] = False
    for r0, c0 in np.argwhere(ends).tolist():
        # walk back along the branch (stop at a junction)
        path = [(r0, c0)]
        seen = {(r0, c0)}
        r, c = r0, c0
        while len(path) <= max(direction_px, min_branch):
            nxt = [(r + dr, c + dc) for dr, dc in _EIGHT
                   if 0 <= r + dr < h and 0 <= c + dc < w and skel[r + dr, c + dc]
                   and (r + dr, c + dc) not in seen]
            if len(nxt) != 1:
                break
            r, c = nxt[0]
            seen.add((r, c))
            path.append((r, c))
        if len(path) < min_branch:
            continue
        near = path[len(path) // 3]
        far = path[-1]
        dr_, dc_ = near[0] - far[0], near[1] - far[1]
        norm = float(np.hypot(dr_, dc_))
        if norm == 0:
            continue
        dr_, dc_ = dr_ / norm, dc_ / norm
        # the end's own pixels (and their neighbours) are not "another boundary"
        own = set(seen)
        for rr, cc in seen.copy():
            own.update((rr + a, cc + b_) for a, b_ in _EIGHT)
        segment = []
        for step in range(1, int(max_length) + 1):
            rr, cc = round(r0 + dr_ * step), round(c0 + dc_ * step)
            if not (0 <= rr < h and 0 <= cc < w):
                segment = []  # ran out of the image without meeting a boundary: nothing
                break
            segment.append((rr, cc))
            window = skel[max(rr - 1, 0):rr + 2, max(cc - 1, 0):cc + 2]
            if window.any() and any(
                skel[rr + a, cc + b_] and (rr + a, cc + b_) not in own
                for a, b_ in ((0, 0), *_EIGHT) if 0 <= rr + a < h and 0 <= cc + b_ < w
            ):
                break  # met another boundary
        else:
            continue  # stopped in the open: no segment
        for rr, cc in segment:
            out[rr, cc] = True
    return out & ~b


def _concave_corners(mask: np.ndarray, min_depth: float, floor: float = 2.0) -> list:
    """Deep concave corners of one region: (point, inward unit normal, depth) each.

    ``mask`` (uint8 or bool) is the region in its bounding box padded by one pixel. For each
    of OpenCV's convexity defects of the outer contour (a stretch of contour between two
    hull vertices), the distance of every contour point from the hull edge is taken, and
    each of its peaks at least ``limit`` high and standing ``limit`` above the dips beside
    it is a corner, where ``limit`` is ``min_depth`` times the region's equivalent diameter,
    and at least ``floor`` px. One hull edge can span several corners: three grains merged
    in a row have two concave corners under the same hull edge on one side.
    """
    import cv2
    from scipy.signal import find_peaks

    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    cnt = max(contours, key=len)
    if len(cnt) < 8:
        return []
    hull = cv2.convexHull(cnt, returnPoints=False)
    try:
        defects = cv2.convexityDefects(cnt, hull)
    except cv2.error:  # a contour that touches itself can give a non-monotonic hull
        return []
    if defects is None:
        return []
    eqd = math.sqrt(4.0 * float(np.count_nonzero(mask)) / math.pi)
    limit = max(floor, min_depth * eqd)
    defects = defects.reshape(-1, 4)
    defects = defects[defects[:, 3] >= 256.0 * limit]
    pts = cnt[:, 0, ::-1].astype(float)  # (row, col)
    corners = []
    for s, e, _f, _d in defects.tolist():
        a, b = pts[s], pts[e]
        chord = b - a
        length = float(np.hypot(*chord))
        if length == 0:
            continue
        idx = (np.arange(s, e + 1) if e >= s
               else np.concatenate((np.arange(s, len(pts)), np.arange(e + 1))))
        seg = pts[idx]
        normal = np.array([-chord[1], chord[0]]) / length
        dist = np.abs((seg - a) @ normal)
        # zeros at both ends: the hull vertices themselves are never corners
        padded = np.zeros(dist.size + 2)
        padded[1:-1] = dist
        peaks, _ = find_peaks(padded, height=limit, prominence=limit)
        for k in peaks - 1:
            p = seg[k]
            foot = a + chord * (float((p - a) @ chord) / (length * length))
            inward = p - foot
            norm = float(np.hypot(*inward))
            if norm > 0:
                corners.append((p, inward / norm, float(dist[k])))
    return corners


def _cut_pixels(mask: np.ndarray, p: np.ndarray, q: np.ndarray, overshoot: int = 2):
    """Pixels of the straight cut from p to q, prolonged past each end by up to
    ``overshoot`` px while it stays in the region (so the cut meets the boundary it starts
    from, and never reaches across it)."""
    from skimage.draw import line

    u = q - p
    u = u / max(float(np.hypot(*u)), 1e-9)
    h, w = mask.shape
    a, b = np.rint(p).astype(int), np.rint(q).astype(int)
    rr, cc = line(int(a[0]), int(a[1]), int(b[0]), int(b[1]))
    ends = []
    for start, step in ((p, -u), (q, u)):
        extra = []
        for t in range(1, int(overshoot) + 1):
            r, c = np.rint(start + step * t).astype(int)
            if not (0 <= r < h and 0 <= c < w and mask[r, c]):
                break
            extra.append((r, c))
        ends.append(extra)
    if ends[0] or ends[1]:
        more = np.array(ends[0] + ends[1], int).reshape(-1, 2)
        rr, cc = np.r_[rr, more[:, 0]], np.r_[cc, more[:, 1]]
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    return rr[ok], cc[ok]


def _best_cut(mask: np.ndarray, min_depth: float, min_area: int, max_angle: float,
              single_gain: float, floor: float = 2.0):
    """The cut that splits one region at two of its deep concave corners, else the cut from
    one corner (:func:`_single_cut`), or None."""
    corners = _concave_corners(mask, min_depth, floor)
    if not corners:
        return None
    cos_max = math.cos(math.radians(max_angle))
    options = []
    for (p, n_p, d_p), (q, n_q, d_q) in itertools.combinations(corners, 2):
        v = q - p
        length = float(np.hypot(*v))
        if length < 2:
            continue
        u = v / length
        # the cut must leave each corner into the region, roughly along its bisector
        if u @ n_p < cos_max or -u @ n_q < cos_max:
            continue
        options.append((length / (d_p + d_q), p, q))
    for _, p, q in sorted(options, key=lambda o: o[0]):
        rr, cc = _cut_pixels(mask, p, q, overshoot=0)
        if mask[rr, cc].mean() < 0.9:
            continue  # the segment leaves the region: not a cut of this grain
        rr, cc = _cut_pixels(mask, p, q)
        if _two_pieces(mask, rr, cc, min_area) is not None:
            inside = mask[rr, cc]  # only pixels of this region are drawn
            return rr[inside], cc[inside]
    if single_gain > 0:
        return _single_cut(mask, corners, single_gain, min_area)
    return None


def _solidity(mask: np.ndarray) -> float:
    """Pixels of ``mask`` over the pixels of its filled convex hull, so a digitised convex
    region scores 1."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 1.0
    hull = cv2.convexHull(max(contours, key=len))
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(filled, [hull], 1)
    return float(mask.sum()) / max(float(filled.sum()), 1.0)


def _single_cut(mask: np.ndarray, corners: list, gain: float, min_area: int):
    """The cut from a deep corner straight along its inward direction to the region's other
    side, taken when both pieces are clearly more convex than the region (solidity at least
    ``gain`` higher), trying the deepest corner first; or None."""
    eqd = math.sqrt(4.0 * float(mask.sum()) / math.pi)
    base = _solidity(mask)
    for p, n_p, _d in sorted(corners, key=lambda c: -c[2]):
        q = None
        for t in range(1, int(eqd) + 1):
            r, c = np.rint(p + n_p * t).astype(int)
            if not (0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]) or not mask[r, c]:
                q = p + n_p * (t - 1)
                break
        if q is None or float(np.hypot(*(q - p))) < 2:
            continue
        rr, cc = _cut_pixels(mask, p, q)
        pieces = _two_pieces(mask, rr, cc, min_area)
        if pieces is None or min(_solidity(piece) for piece in pieces) < base + gain:
            continue
        inside = mask[rr, cc]
        return rr[inside], cc[inside]
    return None


def _two_pieces(mask: np.ndarray, rr: np.ndarray, cc: np.ndarray, min_area: int):
    """The two largest pieces (bool masks) the cut ``rr, cc`` leaves of ``mask``, or None when
    it leaves one piece, or a second piece smaller than ``min_area`` px."""
    rest = mask.copy()
    rest[rr, cc] = False
    n, parts = _pieces(rest)
    if n < 2:
        return None
    sizes = np.bincount(parts.ravel())
    big = np.argsort(sizes[1:])[::-1][:2] + 1
    if sizes[big[1]] < min_area:
        return None
    return parts == big[0], parts == big[1]


def _line_width(b: np.ndarray) -> float:
    """Mean width (px) of the boundary lines: twice their area over their edge pixels (a band
    of width w ≥ 2 and length L has area wL and about 2L edge pixels; a 1 px line, all edge,
    measures 2, which the split's 2 px floor covers anyway)."""
    import cv2

    u8 = b.view(np.uint8)
    inner = cv2.erode(u8, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=1)
    edge = int(np.count_nonzero(u8)) - int(np.count_nonzero(inner))
    return 2.0 * float(np.count_nonzero(u8)) / max(float(edge), 1.0)


def _regions(boundaries: np.ndarray):
    """4-connected regions of the complement: int32 labels (0 = boundary) and OpenCV's
    stats rows (left, top, width, height, area), one per label."""
    import cv2

    free = (~boundaries).view(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=4, ltype=cv2.CV_32S)
    return labels, stats


def _pieces(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of 4-connected pieces of ``mask`` and their labels (1..n)."""
    import cv2

    n, parts = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return n - 1, parts


def split_concave_grains(boundaries: np.ndarray, min_depth: float = 0.05, *,
                         min_area: int = 20, max_angle: float = 60.0,
                         single_gain: float = 0.08, max_rounds: int = 4) -> np.ndarray:
    """Straight cuts that split merged grains at pairs of deep concave corners.

    Grains in a polycrystal are (close to) convex polygons: the paper's generator draws them
    as the cells of a power diagram, which are convex, and grain growth straightens real
    boundaries between triple junctions. Where the boundary between two neighbours is
    invisible (grains of nearly the same gray level: about 9 % of the boundary length of the
    paper's 96×496 setting) the extraction merges them, and the merged region has a deep
    concave corner at each end of the missing boundary -- the triple junctions. This joins
    two such corners with a straight line when

    * each corner is at least ``min_depth`` × the region's equivalent diameter deep,
      measured from the region's convex hull, and at least the mean width of the boundary
      lines (and 2 px): shallower dents are the ragged edge of a wide line;
    * the line leaves each corner into the region within ``max_angle`` degrees of the
      corner's inward direction (the missing boundary continues the third boundary of the
      junction);
    * the line runs inside the region and splits it into pieces of at least ``min_area`` px.

    Of several candidate pairs in a region the one with the shortest cut relative to the
    corners' depths is taken. A region with one deep corner, or whose corners pair up with
    none (a missing boundary that runs to the image edge, or ends at a corner too shallow to
    count), is cut from its deepest corner straight along the corner's inward direction to
    the region's other side, but only when both pieces are then clearly more convex: the
    solidity of each at least ``single_gain`` above the region's. Regions are looked at
    again, up to ``max_rounds`` times, so three merged grains are split twice.

    The thresholds were chosen on synthetic images that are not the benchmark's
    (``benchmarks/calibrate_postprocess.py``, docs/extraction.md).

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    min_depth : float
        Smallest corner depth, as a fraction of the region's equivalent diameter (0: none
        are split).
    min_area : int
        Smallest piece a cut may leave (px).
    max_angle : float
        Largest angle (degrees) between the cut and a corner's inward direction.
    single_gain : float
        Least gain in solidity of both pieces for a cut from one corner (0: no such cuts).
    max_rounds : int
        Passes over the regions that changed.

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        The cuts only (1 px wide, 8-connected, so they separate 4-connected grains);
        ``boundaries | result`` is the split map.

    Examples
    --------
    >>> b = np.zeros((40, 80), bool)
    >>> b[[0, -1], :] = True; b[:, [0, -1]] = True     # frame
    >>> b[:15, 40] = True; b[26:, 40] = True           # a wall with a hole: two grains merge
    >>> cut = split_concave_grains(b)
    >>> bool(cut[15:26, 40].all())
    True
    """
    b = _as_boundaries(boundaries)
    for name, value, ok in (("min_depth", min_depth, min_depth >= 0),
                            ("min_area", min_area, min_area >= 1),
                            ("max_angle", max_angle, 0 < max_angle <= 180),
                            ("single_gain", single_gain, single_gain >= 0),
                            ("max_rounds", max_rounds, max_rounds >= 0)):
        if not (math.isfinite(value) and ok):
            raise GrainsError(f"split_concave_grains: {name} = {value} is out of range.")
    out = np.zeros(b.shape, bool)
    if min_depth <= 0 or b.all() or not b.any():
        return out
    cur = b.copy()
    floor = max(2.0, _line_width(b))  # shallower dents are the line's own ragged edge
    labels, boxes = _regions(cur)
    # the first round looks at every region big enough to leave two pieces, later rounds at
    # those beside the new cuts (texture can make hundreds of thousands of specks)
    look = np.flatnonzero(boxes[:, 4] >= 2 * min_area)
    look = look[look > 0]
    for _ in range(max(int(max_rounds), 0)):
        new = np.zeros(b.shape, bool)
        for c0, r0, w, h, lab in zip(*(boxes[look, i].tolist() for i in range(4)),
                                     look.tolist()):
            mask = np.zeros((h + 2, w + 2), bool)
            mask[1:-1, 1:-1] = labels[r0:r0 + h, c0:c0 + w] == lab
            cut = _best_cut(mask, min_depth, min_area, max_angle, single_gain, floor)
            if cut is None:
                continue
            rr, cc = cut[0] + r0 - 1, cut[1] + c0 - 1
            ok = (rr >= 0) & (rr < b.shape[0]) & (cc >= 0) & (cc < b.shape[1])
            new[rr[ok], cc[ok]] = True
        if not new.any():
            break
        cur |= new
        out |= new
        labels, boxes = _regions(cur)
        rr, cc = np.nonzero(new)  # the regions beside the new cuts are looked at again
        near = [labels[np.clip(rr + dr, 0, b.shape[0] - 1), np.clip(cc + dc, 0, b.shape[1] - 1)]
                for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
        look = np.unique(np.concatenate(near))
        look = look[(look > 0) & (boxes[look, 4] >= 2 * min_area)]
    return out & ~b


def _relabel(labels: np.ndarray) -> np.ndarray:
    present = np.unique(labels)
    present = present[present > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return lut[labels]


def _fill_from_nearest(labels: np.ndarray) -> np.ndarray:
    _, (ri, ci) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    return labels[ri, ci].astype(np.int32, copy=False)


def border_labels(labels: np.ndarray, *, depth: int = 3) -> np.ndarray:
    """Labels of the grains cut by the image border.

    A grain is cut by the border when one of its pixels lies on the image's outermost rows or
    columns, or when only boundary pixels (label 0), at most ``depth`` of them, lie between it
    and the edge: a boundary line drawn along the image edge (as extraction and ground-truth
    maps often have) does not make a cut grain whole.

    Parameters
    ----------
    labels : ndarray of int
    depth : int
        How far in from the edge to look through boundary pixels.

    Returns
    -------
    ndarray of int
        Sorted, without 0.
    """
    lab = np.asarray(labels)
    k = max(1, min(int(depth) + 1, min(lab.shape)))
    found = []
    for strip in (lab[:k, :], lab[::-1][:k, :], lab[:, :k].T, lab[:, ::-1][:, :k].T):
        nz = strip > 0
        first = np.argmax(nz, axis=0)
        hit = nz.any(axis=0)
        found.append(strip[first[hit], np.flatnonzero(hit)])
    out = np.unique(np.concatenate(found))
    return out[out > 0]


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """Pairs of neighbouring grains.

    Two grains are neighbours when they touch along a row or a column, directly or across one
    boundary pixel (a one-pixel boundary line, as :func:`label_grains` leaves it). Grains that
    meet only at a corner, like the diagonal cells of a square grid, are not neighbours.

    Returns
    -------
    ndarray of int, shape (n_pairs, 2)
        Each unordered pair once, smaller label first.
    """
    pairs = []
    for a, b in (
        (labels[:, :-1], labels[:, 1:]),
        (labels[:-1, :], labels[1:, :]),
    ):
        sel = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([a[sel], b[sel]], 1))
    for a, mid, b in (
        (labels[:, :-2], labels[:, 1:-1], labels[:, 2:]),
        (labels[:-2, :], labels[1:-1, :], labels[2:, :]),
    ):
        sel = (mid == 0) & (a > 0) & (b > 0) & (a != b)
        pairs.append(np.stack([a[sel], b[sel]], 1))
    p = np.concatenate(pairs).astype(np.int64)
    if p.size == 0:
        return np.zeros((0, 2), np.int64)
    p.sort(axis=1)
    base = int(p.max()) + 1
    code = np.unique(p[:, 0] * base + p[:, 1])
    return np.stack([code // base, code % base], axis=1)


def _runs(labels: np.ndarray):
    """Run-length encode each row: (row, first col, last col, label) of runs with label > 0."""
    _h, w = labels.shape
    flat = labels.ravel()
    change = np.empty(flat.size, bool)
    change[0] = True
    change[1:] = flat[1:] != flat[:-1]
    change[::w] = True  # every row starts a run
    starts = np.flatnonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = flat.size - 1
    lab = flat[starts]
    keep = lab > 0
    starts, ends, lab = starts[keep], ends[keep], lab[keep]
    return starts // w, starts % w, ends % w, lab.astype(np.int64)


# Weights of scikit-image's 4-connectivity perimeter estimate, indexed by the code
# 1*self + 2*(edge neighbours on the border) + 10*(corner neighbours on the border).
_PERIM_WEIGHTS = np.zeros(50)
_PERIM_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIM_WEIGHTS[[21, 33]] = math.sqrt(2.0)
_PERIM_WEIGHTS[[13, 23]] = (1.0 + math.sqrt(2.0)) / 2.0


def _perimeters(labels: np.ndarray, n: int) -> np.ndarray:
    """scikit-image's ``perimeter(region, 4)`` for every label at once."""
    p = np.pad(labels, 1)
    c = p[1:-1, 1:-1]
    inner = (
        (p[:-2, 1:-1] == c) & (p[2:, 1:-1] == c) & (p[1:-1, :-2] == c) & (p[1:-1, 2:] == c)
    )
    border = (c > 0) & ~inner
    bl = np.where(border, labels, 0)
    bp = np.pad(bl, 1)
    code = np.where(border, 1, 0).astype(np.int16)
    h, w = labels.shape
    for dr, dc, wgt in (
        (-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2),
        (-1, -1, 10), (-1, 1, 10), (1, -1, 10), (1, 1, 10),
    ):
        nb = bp[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        code += (border & (nb == bl)).astype(np.int16) * wgt
    sel = border
    return np.bincount(
        labels[sel].ravel(), weights=_PERIM_WEIGHTS[code[sel]], minlength=n + 1
    )[1:]


def _hull_measures(rows, c0, c1, lab, n):
    """Feret max/min (hull of pixel corners) and convex-hull pixel count (hull of centres)."""
    import cv2

    order = np.lexsort((rows, lab))
    rows, c0, c1, lab = rows[order], c0[order], c1[order], lab[order]
    # one (label, row) extent: leftmost start and rightmost end
    key = lab * (int(rows.max()) + 2) + rows
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lab_r = lab[first]
    row_r = rows[first].astype(np.float64)
    lo = np.minimum.reduceat(c0, first).astype(np.float64)
    hi = np.maximum.reduceat(c1, first).astype(np.float64)
    pts = np.stack(
        [
            np.stack([row_r - 0.5, lo - 0.5], 1),
            np.stack([row_r + 0.5, lo - 0.5], 1),
            np.stack([row_r - 0.5, hi + 0.5], 1),
            np.stack([row_r + 0.5, hi + 0.5], 1),
        ],
        1,
    )  # (n_extents, 4, 2)
    centres = np.stack([np.stack([row_r, lo], 1), np.stack([row_r, hi], 1)], 1)
    bounds = np.flatnonzero(np.r_[True, lab_r[1:] != lab_r[:-1], True])
    ids = lab_r[bounds[:-1]].astype(np.int64) - 1
    corner_hulls, centre_hulls = [], []
    for i in range(bounds.size - 1):
        s, e = bounds[i], bounds[i + 1]
        corner_hulls.append(cv2.convexHull(pts[s:e].reshape(-1, 2).astype(np.float32)))
        centre_hulls.append(cv2.convexHull(centres[s:e].reshape(-1, 2).astype(np.int32)))
    fmax = np.full(n, np.nan)
    fmin = np.full(n, np.nan)
    hull_pixels = np.full(n, np.nan)
    # in chunks of similar vertex counts, to bound the (chunk, m, m) work arrays
    order = np.argsort([len(h) for h in corner_hulls], kind="stable")
    for k in range(0, order.size, 256):
        sel = order[k : k + 256]
        fmax[ids[sel]], fmin[ids[sel]] = _calipers(_pad_polygons([corner_hulls[i] for i in sel]))
        hull_pixels[ids[sel]] = _lattice_points_in_hulls(
            _pad_polygons([centre_hulls[i] for i in sel]))
    return fmax, fmin, hull_pixels


def _pad_polygons(hulls: list) -> np.ndarray:
    """Stack convex polygons of different vertex counts into (n, m, 2), repeating the last
    vertex (a repeated vertex adds only zero-length edges)."""
    m = max(len(h) for h in hulls)
    out = np.empty((len(hulls), m, 2), np.float64)
    for i, h in enumerate(hulls):
        v = h.reshape(-1, 2)
        out[i, : len(v)] = v
        out[i, len(v):] = v[-1]
    return out


def _calipers(poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and smallest caliper width of convex polygons, (n, m, 2) vertices in order."""
    d = poly[:, :, None, :] - poly[:, None, :, :]
    fmax = np.sqrt((d**2).sum(-1).max(axis=(1, 2)))
    edge = np.concatenate([poly[:, 1:], poly[:, :1]], axis=1) - poly  # (n, m, 2)
    length = np.hypot(edge[..., 0], edge[..., 1])
    # distance of every vertex j from the line through edge k: |edge_k x (v_j - v_k)| / |edge_k|
    cross = np.abs(edge[:, :, None, 0] * (-d[..., 1]) - edge[:, :, None, 1] * (-d[..., 0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.where(length > 0, cross.max(axis=2) / np.where(length > 0, length, 1), np.inf)
    fmin = width.min(axis=1)
    fmin[~np.isfinite(fmin)] = 0.0  # degenerate (all vertices equal)
    return fmax, fmin


def _lattice_points_in_hulls(poly: np.ndarray) -> np.ndarray:
    """Pixel centres inside or on convex polygons with integer vertices (Pick's theorem)."""
    h = np.rint(poly).astype(np.int64)
    nxt = np.concatenate([h[:, 1:], h[:, :1]], axis=1)
    dd = np.abs(nxt - h)
    on_edges = np.gcd(dd[..., 0], dd[..., 1]).sum(axis=1).astype(np.float64)
    area2 = np.abs((h[..., 0] * nxt[..., 1] - h[..., 1] * nxt[..., 0]).sum(axis=1)).astype(
        np.float64)
    # Pick: A = I + B/2 - 1, so I + B = A + B/2 + 1 (also right for segments and points)
    return area2 / 2.0 + on_edges / 2.0 + 1.0


def grain_table(
    labels: np.ndarray,
    *,
    pixel_size: float | None = None,
    unit: str | None = None,
) -> pd.DataFrame:
    """Measure every grain of a label image.

    Parameters
    ----------
    labels : ndarray of int, shape (rows, cols)
        Grain labels, 0 = boundary/background (as :func:`label_grains` returns).
    pixel_size : float, optional
        Edge length of one pixel in ``unit``. When given, every length and area column is
        repeated in physical units, named with the unit: ``equivalent_diameter_nm``,
        ``area_nm2`` (``um`` stands for µm in column names).
    unit : str, optional
        ``"nm"``, ``"µm"`` (``"um"``) or ``"mm"``; required with ``pixel_size``.

    Returns
    -------
    pandas.DataFrame
        One row per grain, in the shape of :func:`skimage.measure.regionprops_table`, with
        columns (in pixels): ``label``, ``centroid-0`` (row), ``centroid-1`` (col), ``area``,
        ``equivalent_diameter`` (2·√(area/π)), ``perimeter``, ``axis_major_length``,
        ``axis_minor_length``, ``aspect_ratio`` (major/minor), ``orientation`` (radians,
        scikit-image's convention: angle between the row axis and the major axis, in
        [-π/2, π/2]), ``feret_diameter_max``, ``feret_diameter_min``, ``solidity``
        (area / convex hull area in pixels; the convexity), ``n_neighbors``,
        ``touches_border``.
        ``table.attrs`` holds ``pixel_size``, ``unit`` and ``image_shape``.

    Raises
    ------
    GrainsError
        For a label image that is not 2-D integers, or a pixel size without a unit.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise GrainsError(
            f"grain labels must be a 2-D integer image, got {lab.dtype} of shape {lab.shape}."
        )
    if lab.size and lab.min() < 0:
        raise GrainsError("grain labels must not be negative.")
    ps, u = _check_pixel_size(pixel_size, unit)
    lab = lab.astype(np.int64, copy=False)
    n = int(lab.max()) if lab.size else 0
    present = np.bincount(lab.ravel(), minlength=n + 1) > 0
    present[0] = False

    rows, c0, c1, rl = _runs(lab)
    cnt = (c1 - c0 + 1).astype(np.float64)
    a = c0.astype(np.float64)
    b = c1.astype(np.float64)
    sum_c = (a + b) * cnt / 2.0
    sum_c2 = (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) / 6.0
    r = rows.astype(np.float64)

    def per_label(x):
        return np.bincount(rl, weights=x, minlength=n + 1)[1:]

    area = per_label(cnt)
    with np.errstate(invalid="ignore", divide="ignore"):
        mr = per_label(r * cnt) / area
        mc = per_label(sum_c) / area
        var_r = per_label(r * r * cnt) / area - mr**2
        var_c = per_label(sum_c2) / area - mc**2
        cov = per_label(r * sum_c) / area - mr * mc
        var_r = np.maximum(var_r, 0.0)
        var_c = np.maximum(var_c, 0.0)
        half_tr = (var_r + var_c) / 2.0
        root = np.sqrt(((var_r - var_c) / 2.0) ** 2 + cov**2)
        l1 = half_tr + root
        l2 = np.maximum(half_tr - root, 0.0)
        major = 4.0 * np.sqrt(l1)
        minor = 4.0 * np.sqrt(l2)
        aspect = np.where(minor > 0, major / np.where(minor > 0, minor, 1.0), np.inf)
        orientation = np.where(
            var_r == var_c,
            np.where(cov > 0, math.pi / 4.0, -math.pi / 4.0),
            0.5 * np.arctan2(2.0 * cov, var_r - var_c),
        )
    perimeter = _perimeters(lab, n) if n else np.zeros(0)
    if rl.size:
        fmax, fmin, hull_pixels = _hull_measures(rows, c0, c1, rl, n)
    else:
        fmax = fmin = hull_pixels = np.zeros(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        solidity = area / hull_pixels

    nb = np.zeros(n + 1, np.int64)
    pairs = neighbour_pairs(lab)
    if pairs.size:
        nb += np.bincount(pairs.ravel(), minlength=n + 1)
    touches = np.zeros(n + 1, bool)
    touches[border_labels(lab)] = True

    idx = np.flatnonzero(present[1:])
    table = pd.DataFrame(
        {
            "label": (idx + 1).astype(np.int32),
            "centroid-0": mr[idx],
            "centroid-1": mc[idx],
            "area": area[idx],
            "equivalent_diameter": 2.0 * np.sqrt(area[idx] / math.pi),
            "perimeter": perimeter[idx],
            "axis_major_length": major[idx],
            "axis_minor_length": minor[idx],
            "aspect_ratio": aspect[idx],
            "orientation": orientation[idx],
            "feret_diameter_max": fmax[idx],
            "feret_diameter_min": fmin[idx],
            "solidity": solidity[idx],
            "n_neighbors": nb[1:][idx],
            "touches_border": touches[1:][idx],
        }
    )
    if ps is not None:
        add_physical_columns(table, ps, u)
    table.attrs.update({"pixel_size": ps, "unit": u, "image_shape": tuple(lab.shape)})
    return table


def add_physical_columns(table: pd.DataFrame, pixel_size: float, unit: str) -> pd.DataFrame:
    """Add ``<column>_<unit>`` copies of the length and area columns, in physical units.

    Lengths are multiplied by ``pixel_size`` and areas by its square; ``"µm"`` is spelled
    ``um`` in the names (e.g. ``equivalent_diameter_um``, ``area_um2``). Modifies ``table``
    in place and returns it.
    """
    ps, u = _check_pixel_size(pixel_size, unit)
    s = ascii_unit(u)
    for col in LENGTH_COLUMNS:
        table[f"{col}_{s}"] = table[col] * ps
    for col in AREA_COLUMNS:
        table[f"{col}_{s}2"] = table[col] * ps * ps
    table.attrs.update({"pixel_size": ps, "unit": u})
    return table
