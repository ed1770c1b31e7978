"""Hand-correction operations on boundary maps (no GUI).

The networks miss a faint boundary here, draw a false one across a grain there, and leave
gaps at triple junctions. These functions are the grain-aware tools a microscopist uses to fix
them; the napari correction dock (``_widgets/correction.py``) calls them and writes the
difference into the boundaries layer so that napari's undo/redo covers every edit.

All functions take a boolean boundary map (rows, cols) and return a new one in an
:class:`EditResult`; the input is never modified.

* :func:`delete_segment` -- remove the boundary segment (between two junctions) nearest a
  click, merging the two grains on either side.
* :func:`draw_boundary` -- lay a polyline boundary whose ends snap onto existing boundaries.
* :func:`propose_gap_closures` / :func:`close_gaps` -- join dangling ends to the nearest other
  boundary within a distance (preview, then apply).

Examples
--------
>>> import numpy as np
>>> b = np.zeros((40, 40), bool); b[:, 19:21] = True; b[19:21, :] = True
>>> r = delete_segment(b, (5, 20))
>>> bool(r.boundaries[5, 20]), bool(r.boundaries[20, 20])
(False, True)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as _draw_line
from skimage.morphology import skeletonize

from napari_grains.errors import GrainsError

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class SkeletonGraph:
    """A boundary map's skeleton split into segments between junctions.

    Attributes
    ----------
    skeleton : ndarray of bool, shape (rows, cols)
        One-pixel-wide skeleton of the boundaries.
    junctions : ndarray of bool
        Skeleton pixels with three or more skeleton neighbours (8-connectivity).
    endpoints : ndarray of bool
        Skeleton pixels with exactly one skeleton neighbour (dangling ends).
    segments : ndarray of int32
        Segment id of each skeleton pixel once junction pixels are removed (0 elsewhere).
    n_segments : int
        Number of segments.
    """

    skeleton: np.ndarray
    junctions: np.ndarray
    endpoints: np.ndarray
    segments: np.ndarray
    n_segments: int


@dataclass
class EditResult:
    """The outcome of one correction.

    Attributes
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        The corrected boundary map.
    changed : ndarray of bool
        Pixels whose value differs from the input map.
    description : str
        One line saying what was done (shown in the GUI's status bar).
    lines : list of ndarray
        For drawn or gap-closing boundaries, the polylines laid, each (n, 2) (row, col).
    """

    boundaries: np.ndarray
    changed: np.ndarray
    description: str
    lines: list[np.ndarray] = field(default_factory=list)

    @property
    def n_changed(self) -> int:
        """Number of pixels the edit changed."""
        return int(self.changed.sum())


@dataclass
class GapProposal:
    """Lines that would close dangling ends (a preview for :func:`close_gaps`).

    Attributes
    ----------
    lines : list of ndarray
        Each (2, 2): the dangling end (row, col) and the boundary pixel it joins.
    distances : ndarray of float
        Length of each line in pixels.
    """

    lines: list[np.ndarray]
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)


def _check_map(boundaries: np.ndarray) -> np.ndarray:
    b = np.asarray(boundaries)
    if b.ndim != 2:
        raise GrainsError(
            f"boundary map has shape {b.shape}; corrections work on one 2-D boundary map."
        )
    if b.size == 0:
        raise GrainsError("boundary map is empty; extract boundaries first.")
    return b.astype(bool) if b.dtype != bool else b


def _neighbours(mask: np.ndarray) -> np.ndarray:
    n = ndi.convolve(mask.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant")
    return (n - mask).astype(np.uint8)


def skeleton_graph(boundaries: np.ndarray) -> SkeletonGraph:
    """Skeletonize a boundary map and split it into segments between junctions.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        Boundary map (True on boundaries).

    Returns
    -------
    SkeletonGraph
    """
    b = _check_map(boundaries)
    skel = skeletonize(b)
    nb = _neighbours(skel)
    junctions = skel & (nb >= 3)
    endpoints = skel & (nb == 1)
    segments, n = ndi.label(skel & ~junctions, structure=_EIGHT)
    return SkeletonGraph(skel, junctions, endpoints, segments.astype(np.int32), int(n))


def _nearest_skeleton_index(boundaries: np.ndarray, skeleton: np.ndarray) -> np.ndarray:
    """For every pixel, the (row, col) of the nearest skeleton pixel, shape (2, rows, cols)."""
    if not skeleton.any():
        return np.zeros((2,) + skeleton.shape, dtype=np.intp)
    _, idx = ndi.distance_transform_edt(~skeleton, return_indices=True)
    return idx


def delete_segment(
    boundaries: np.ndarray, point: Sequence[float], *, max_distance: float = 5.0
) -> EditResult:
    """Remove the boundary segment nearest ``point``, merging the grains on either side.

    The skeleton is split at its junctions; the segment with a skeleton pixel nearest the click
    (within ``max_distance`` pixels) is removed together with every thick boundary pixel whose
    nearest skeleton pixel lies on it. Junction pixels, and the boundary pixels around them,
    are kept, so the neighbouring boundaries stay connected.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    point : (row, col)
        Where the user clicked, in pixel coordinates.
    max_distance : float
        How far from a segment a click may land and still pick it.

    Returns
    -------
    EditResult

    Raises
    ------
    GrainsError
        When no boundary segment lies within ``max_distance`` of the point.
    """
    b = _check_map(boundaries)
    r, c = (float(point[0]), float(point[1]))
    g = skeleton_graph(b)
    seg_pixels = np.argwhere(g.segments > 0)
    if len(seg_pixels) == 0:
        raise GrainsError("there is no boundary segment to delete in this map.")
    d2 = (seg_pixels[:, 0] - r) ** 2 + (seg_pixels[:, 1] - c) ** 2
    k = int(np.argmin(d2))
    if d2[k] > max_distance**2:
        raise GrainsError(
            f"no boundary segment within {max_distance:g} px of ({r:.0f}, {c:.0f}); "
            "click on a boundary line (or raise the pick distance)."
        )
    seg_id = g.segments[tuple(seg_pixels[k])]
    segment = g.segments == seg_id
    idx = _nearest_skeleton_index(b, g.skeleton)
    owner_is_segment = segment[idx[0], idx[1]]
    remove = b & owner_is_segment
    # Thick pixels left without skeleton (off-skeleton blobs) are assigned by nearest
    # skeleton pixel already; junction pixels are never on a segment, so they stay.
    out = b & ~remove
    return EditResult(
        boundaries=out,
        changed=remove,
        description=f"deleted a boundary segment of {int(segment.sum())} px "
        f"({int(remove.sum())} boundary pixels)",
    )


def estimate_thickness(boundaries: np.ndarray) -> int:
    """Typical boundary width in pixels (at least 1), from the distance to the background.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)

    Returns
    -------
    int
    """
    b = _check_map(boundaries)
    if not b.any():
        return 1
    skel = skeletonize(b)
    dist = ndi.distance_transform_edt(b)
    width = 2.0 * float(np.median(dist[skel])) - 1.0
    return max(1, round(width))


def _raster_polyline(shape: tuple[int, int], points: np.ndarray, thickness: int) -> np.ndarray:
    """A 4-connected polyline of the given thickness, clipped to ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    pts = np.round(points).astype(int)
    for (r0, c0), (r1, c1) in itertools.pairwise(pts):
        rr, cc = _draw_line(r0, c0, r1, c1)
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        mask[rr[ok], cc[ok]] = True
    if len(pts) == 1:
        r0, c0 = pts[0]
        if 0 <= r0 < shape[0] and 0 <= c0 < shape[1]:
            mask[r0, c0] = True
    # Make diagonal steps 4-connected so the line always separates 4-connected grains.
    down_right = mask[:-1, :-1] & mask[1:, 1:] & ~mask[:-1, 1:] & ~mask[1:, :-1]
    down_left = mask[:-1, 1:] & mask[1:, :-1] & ~mask[:-1, :-1] & ~mask[1:, 1:]
    mask[:-1, 1:] |= down_right
    mask[:-1, :-1] |= down_left
    if thickness > 1:
        radius = (thickness - 1) / 2.0
        k = int(np.ceil(radius))
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        disk = (yy**2 + xx**2) <= radius**2 + 0.5
        mask = ndi.binary_dilation(mask, structure=disk)
    return mask


def snap_point(
    boundaries: np.ndarray, point: Sequence[float], snap_distance: float
) -> tuple[np.ndarray, bool]:
    """The boundary pixel nearest ``point`` if within ``snap_distance``, else the point itself.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    point : (row, col)
    snap_distance : float
        Pixels; 0 disables snapping.

    Returns
    -------
    point : ndarray of float, shape (2,)
    snapped : bool
        Whether the point moved onto a boundary.
    """
    b = _check_map(boundaries)
    p = np.asarray(point, dtype=float)
    if snap_distance <= 0 or not b.any():
        return p, False
    k = int(np.ceil(snap_distance))
    r, c = round(p[0]), round(p[1])
    r0, r1 = max(0, r - k), min(b.shape[0], r + k + 1)
    c0, c1 = max(0, c - k), min(b.shape[1], c + k + 1)
    cand = np.argwhere(b[r0:r1, c0:c1]) + (r0, c0)
    if len(cand) == 0:
        return p, False
    d2 = ((cand - p) ** 2).sum(axis=1)
    j = int(np.argmin(d2))
    if d2[j] > snap_distance**2:
        return p, False
    return cand[j].astype(float), True


def _snap_end(b: np.ndarray, point: np.ndarray, snap_distance: float) -> tuple[np.ndarray, bool]:
    """Snap a drawn line's end onto the nearest boundary pixel or the image's edge.

    The edge counts as a boundary: a line that stops a few pixels short of it leaves a strip
    through which the grain it should split stays one grain.
    """
    q, snapped = snap_point(b, point, snap_distance)
    if snap_distance <= 0:
        return q, snapped
    p = np.asarray(point, dtype=float)
    rows, cols = b.shape
    gaps = (p[0], rows - 1 - p[0], p[1], cols - 1 - p[1])  # to the top, bottom, left, right
    side = int(np.argmin(gaps))
    d_edge = gaps[side]
    d_bound = float(np.hypot(*(q - p))) if snapped else np.inf
    if -snap_distance <= d_edge <= snap_distance and d_edge < d_bound:
        e = p.copy()
        e[side // 2] = 0.0 if side % 2 == 0 else (rows - 1 if side < 2 else cols - 1)
        e = np.clip(e, 0, (rows - 1, cols - 1))
        return e, True
    return q, snapped


def draw_boundary(
    boundaries: np.ndarray,
    points: Sequence[Sequence[float]],
    *,
    thickness: int | None = None,
    snap_distance: float = 8.0,
) -> EditResult:
    """Lay a polyline boundary, its two ends snapped to the nearest existing boundary.

    Use it to close a gap the network left or to split a grain it merged.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    points : sequence of (row, col)
        The clicked vertices, at least two.
    thickness : int, optional
        Width of the new boundary in pixels; by default the map's typical boundary width.
    snap_distance : float
        The first and last points move onto the nearest boundary pixel, or onto the image's
        edge, within this many pixels (0 disables snapping).

    Returns
    -------
    EditResult

    Raises
    ------
    GrainsError
        For fewer than two points or a non-positive thickness.
    """
    b = _check_map(boundaries)
    pts = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if len(pts) < 2:
        raise GrainsError("draw a boundary with at least two points (click twice or more).")
    if thickness is None:
        thickness = estimate_thickness(b)
    if int(thickness) < 1:
        raise GrainsError(f"thickness must be at least 1 pixel (got {thickness}).")
    pts = pts.copy()
    pts[0], s0 = _snap_end(b, pts[0], snap_distance)
    pts[-1], s1 = _snap_end(b, pts[-1], snap_distance)
    new = _raster_polyline(b.shape, pts, int(thickness))
    out = b | new
    snapped = {0: "neither end", 1: "one end", 2: "both ends"}[int(s0) + int(s1)]
    return EditResult(
        boundaries=out,
        changed=out & ~b,
        description=f"drew a {len(pts) - 1}-segment boundary ({snapped} snapped)",
        lines=[pts],
    )


def propose_gap_closures(
    boundaries: np.ndarray, max_distance: float = 10.0, *, min_branch: int = 4
) -> GapProposal:
    """Find dangling ends and the nearest other boundary each could join.

    A dangling end is a skeleton end point whose branch is at least ``min_branch`` pixels long
    (shorter spurs are skeletonisation noise) and that does not touch the image border. Its
    partner is the nearest boundary pixel within ``max_distance`` that is not connected to the
    end inside the ``max_distance`` window (so a line never folds back onto its own branch).

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    max_distance : float
        Longest gap to close, in pixels.
    min_branch : int
        Shortest branch, in skeleton pixels, whose end counts as dangling.

    Returns
    -------
    GapProposal
    """
    b = _check_map(boundaries)
    if max_distance <= 0:
        raise GrainsError(f"gap distance must be positive (got {max_distance}).")
    g = skeleton_graph(b)
    seg_sizes = np.bincount(g.segments.ravel(), minlength=g.n_segments + 1)
    rows, cols = b.shape
    k = int(np.ceil(max_distance))
    lines: list[np.ndarray] = []
    dists: list[float] = []
    for r, c in np.argwhere(g.endpoints):
        if r <= 1 or c <= 1 or r >= rows - 2 or c >= cols - 2:
            continue
        sid = g.segments[r, c]
        if sid == 0 or seg_sizes[sid] < min_branch:
            continue
        r0, r1 = max(0, r - k), min(rows, r + k + 1)
        c0, c1 = max(0, c - k), min(cols, c + k + 1)
        win = b[r0:r1, c0:c1]
        lab, _ = ndi.label(win, structure=_EIGHT)
        own = lab[r - r0, c - c0]
        cand = np.argwhere(win & (lab != own))
        if len(cand) == 0:
            continue
        cand = cand + (r0, c0)
        d2 = ((cand - (r, c)) ** 2).sum(axis=1)
        j = int(np.argmin(d2))
        if d2[j] > max_distance**2:
            continue
        lines.append(np.array([[r, c], cand[j]], dtype=float))
        dists.append(float(np.sqrt(d2[j])))
    return GapProposal(lines=lines, distances=np.asarray(dists, dtype=float))


def close_gaps(
    boundaries: np.ndarray,
    max_distance: float = 10.0,
    *,
    proposal: GapProposal | None = None,
    thickness: int | None = None,
    min_branch: int = 4,
) -> EditResult:
    """Join every dangling end to the nearest other boundary within ``max_distance``.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    max_distance : float
        Longest gap to close, in pixels.
    proposal : GapProposal, optional
        A preview from :func:`propose_gap_closures` to apply as shown; computed when omitted.
    thickness : int, optional
        Width of the joining lines; by default the map's typical boundary width.
    min_branch : int
        See :func:`propose_gap_closures`.

    Returns
    -------
    EditResult
    """
    b = _check_map(boundaries)
    if proposal is None:
        proposal = propose_gap_closures(b, max_distance, min_branch=min_branch)
    if thickness is None:
        thickness = estimate_thickness(b)
    out = b.copy()
    for seg in proposal.lines:
        out |= _raster_polyline(b.shape, seg, int(thickness))
    return EditResult(
        boundaries=out,
        changed=out & ~b,
        description=f"closed {len(proposal)} gap(s) up to {max_distance:g} px",
        lines=list(proposal.lines),
    )
