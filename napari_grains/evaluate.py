"""Scoring boundary maps against ground truth.

Plain, fast functions on arrays (used by ``napari-grains evaluate``, the benchmarks and the
training engineer's validation), plus a folder evaluator that runs a model (or reads boundary
maps made by anything) over image / ground-truth pairs and writes ``metrics.csv`` (one row per
image) and ``metrics.json`` (means).

Definitions
-----------
Boundary precision / recall / F1 (:func:`boundary_prf`)
    Both maps are thinned to 1-px skeletons. A predicted skeleton pixel is a true positive when a
    ground-truth skeleton pixel lies within ``tolerance`` pixels (Euclidean distance, inclusive);
    recall is the same test the other way round. This is the usual BSDS-style approximation by
    distance transforms, *not* a one-to-one matching: two predicted lines 1 px apart near one
    true line both count as correct.
    Conventions for empty maps: an empty prediction has precision 0 (undefined, reported as 0),
    recall 0 and F1 0; an empty ground truth with a non-empty prediction has precision 0,
    recall 1 (nothing to find) and F1 0; both empty score 1, 1, 1.
Eq. 1 accuracy (:func:`eq1_accuracy`)
    The paper's Eq. 1: ``100 × (pixels in correctly detected boundaries) / (pixels in all grain
    boundaries)``, "the percentage of the length of correctly extracted grain boundaries to the
    total length of all grain boundaries, given a uniform grain boundary thickness". We take the
    ground truth at a uniform thickness of 1 px (its skeleton, so pixel count = length) and count
    a ground-truth pixel as detected when any predicted boundary pixel (the map as predicted, not
    thinned) lies within ``tolerance`` px. It is a recall: it does not penalise extra boundaries,
    so always read it next to precision / F1.
Grain labelings (:func:`grain_labels`, :func:`variation_of_information`,
:func:`adjusted_rand_index`)
    Grains are the 4-connected components of the complement of the boundary map. Components
    smaller than ``min_grain_area`` px are dropped (noise specks), then every boundary / dropped
    pixel is assigned to its nearest grain (Euclidean), so both labelings cover every pixel and
    boundary thickness does not bias grain areas. Variation of information is reported in
    **bits** as split (``H(pred | gt)``, over-segmentation) and merge (``H(gt | pred)``,
    under-segmentation); the adjusted Rand index (Hubert & Arabie) is computed from the
    contingency table (1 = identical, about 0 = chance). Note that scikit-image's
    ``adapted_rand_error`` is a different quantity.
Grain count / size errors
    Signed relative errors ``(pred - gt) / gt`` of the number of grains and of the mean
    equivalent-circle diameter ``2·sqrt(A/π)`` (px), both on the labelings above.

Examples
--------
>>> import numpy as np
>>> gt = np.zeros((32, 32), bool); gt[:, 16] = True
>>> s = boundary_prf(np.roll(gt, 1, axis=1), gt, tolerance=1)
>>> round(s.f1, 3)
1.0
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from napari_grains.errors import GrainsError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "BoundaryScore",
    "EvaluationEvent",
    "EvaluationResult",
    "ImageScore",
    "IterationScores",
    "Pair",
    "adjusted_rand_index",
    "boundary_prf",
    "contingency_table",
    "eq1_accuracy",
    "evaluate",
    "find_pairs",
    "format_summary",
    "grain_labels",
    "iter_evaluate",
    "net2_fixed_point",
    "read_boundary_map",
    "score_boundaries",
    "score_iterations",
    "summarize",
    "thin",
    "threshold_and_close",
    "variation_of_information",
]

#: The 4-connectivity structuring element used for grains.
_FOUR = ndi.generate_binary_structure(2, 1)

#: Columns of the per-image table, in order (after ``set`` and ``name``).
METRIC_COLUMNS = [
    "precision",
    "recall",
    "f1",
    "eq1_accuracy",
    "vi_split",
    "vi_merge",
    "vi",
    "ari",
    "n_grains_pred",
    "n_grains_gt",
    "grain_count_error",
    "mean_diameter_pred",
    "mean_diameter_gt",
    "mean_size_error",
    "seconds",
]

#: Columns describing the model run (NaN when scoring boundary maps from a folder).
RUN_COLUMNS = ["n_iterations", "scale"]


# --------------------------------------------------------------------------------------------
# Array metrics
# --------------------------------------------------------------------------------------------


def _as_bool_map(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise GrainsError(f"{name} must be a 2-D boundary map, got shape {a.shape}.")
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise GrainsError(f"{name} has data type {a.dtype}; give a boolean or 0/1 boundary map.")
    return a > (0.5 if np.issubdtype(a.dtype, np.floating) and a.max(initial=0) <= 1 else 0)


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise GrainsError(
            f"prediction has shape {pred.shape} but ground truth has shape {gt.shape}; "
            "boundary maps must be the same size as their ground truth."
        )


def thin(boundaries: np.ndarray) -> np.ndarray:
    """Thin a boundary map to a 1-px wide skeleton.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        Boundary pixels True (nonzero numbers are accepted).

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        The skeleton (scikit-image ``skeletonize``); an already thin map comes back unchanged.
    """
    from skimage.morphology import skeletonize

    b = _as_bool_map(boundaries, "boundary map")
    if not b.any():
        return b.copy()
    return skeletonize(b)


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of ``mask`` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndi.distance_transform_edt(~mask)


@dataclass
class BoundaryScore:
    """Tolerance-matched boundary precision, recall and F1 of one image.

    Attributes
    ----------
    precision, recall, f1 : float
        In [0, 1]; see the module docstring for empty-map conventions.
    n_pred, n_gt : int
        Skeleton pixels of the prediction and of the ground truth.
    matched_pred, matched_gt : int
        Predicted skeleton pixels within the tolerance of the ground truth, and vice versa.
    tolerance : float
        Matching distance in pixels (inclusive).
    """

    precision: float
    recall: float
    f1: float
    n_pred: int
    n_gt: int
    matched_pred: int
    matched_gt: int
    tolerance: float


def _prf(matched_pred: int, n_pred: int, matched_gt: int, n_gt: int) -> tuple[float, float, float]:
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0, 1.0
    precision = matched_pred / n_pred if n_pred else 0.0
    recall = matched_gt / n_gt if n_gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def boundary_prf(
    pred: np.ndarray,
    gt: np.ndarray,
    tolerance: float = 2.0,
    *,
    gt_distance: np.ndarray | None = None,
    gt_skeleton: np.ndarray | None = None,
) -> BoundaryScore:
    """Boundary precision, recall and F1 with a pixel-distance tolerance.

    Parameters
    ----------
    pred, gt : ndarray of bool, shape (rows, cols)
        Predicted and ground-truth boundary maps (any thickness; both are thinned to 1 px).
    tolerance : float
        A skeleton pixel matches when the other skeleton has a pixel within this Euclidean
        distance (pixels, inclusive). 0 means exact overlap.
    gt_distance, gt_skeleton : ndarray, optional
        Precomputed ``thin(gt)`` and its distance transform (see :func:`score_iterations`);
        pass both to save time when scoring many predictions against one ground truth.

    Returns
    -------
    BoundaryScore

    Examples
    --------
    >>> gt = np.zeros((20, 20), bool); gt[10, :] = True
    >>> boundary_prf(np.zeros_like(gt), gt).f1
    0.0
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise GrainsError(f"tolerance must be a finite number >= 0 pixels, got {tolerance}.")
    p_skel = thin(pred)
    g_skel = thin(gt) if gt_skeleton is None else gt_skeleton
    _check_same_shape(p_skel, g_skel)
    d_gt = _distance_to(g_skel) if gt_distance is None else gt_distance
    n_pred, n_gt = int(p_skel.sum()), int(g_skel.sum())
    matched_pred = int(np.count_nonzero(d_gt[p_skel] <= tolerance))
    if n_pred and n_gt:
        d_pred = _distance_to(p_skel)
        matched_gt = int(np.count_nonzero(d_pred[g_skel] <= tolerance))
    else:
        matched_gt = 0
    precision, recall, f1 = _prf(matched_pred, n_pred, matched_gt, n_gt)
    return BoundaryScore(precision, recall, f1, n_pred, n_gt, matched_pred, matched_gt,
                         float(tolerance))


def eq1_accuracy(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0) -> float:
    """The paper's Eq. 1 accuracy: percentage of ground-truth boundary length found.

    ``100 × (ground-truth skeleton pixels with a predicted boundary pixel within tolerance) /
    (ground-truth skeleton pixels)``. The ground truth is taken at a uniform 1-px thickness so
    its pixel count measures length, as the paper requires; the prediction is used as given.

    Parameters
    ----------
    pred, gt : ndarray of bool, shape (rows, cols)
        Predicted and ground-truth boundary maps.
    tolerance : float
        Distance in pixels (inclusive) within which a boundary counts as found. "Eq. 1 accuracy
        at 2 px" is the project's headline figure (the paper reports 97.23 % on three
        real Mo micrographs, with a tolerance it does not state).

    Returns
    -------
    float
        Percentage in [0, 100]; 100 when the ground truth has no boundary at all.

    Examples
    --------
    >>> gt = np.zeros((20, 20), bool); gt[10, :] = True
    >>> pred = gt.copy(); pred[10, :5] = False
    >>> eq1_accuracy(pred, gt, tolerance=0)
    75.0
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise GrainsError(f"tolerance must be a finite number >= 0 pixels, got {tolerance}.")
    p = _as_bool_map(pred, "prediction")
    g_skel = thin(gt)
    _check_same_shape(p, g_skel)
    n_gt = int(g_skel.sum())
    if n_gt == 0:
        return 100.0
    found = int(np.count_nonzero(_distance_to(p)[g_skel] <= tolerance))
    return 100.0 * found / n_gt


def grain_labels(boundaries: np.ndarray, *, min_grain_area: int = 4,
                 fill_boundaries: bool = True, close_gaps: int = 0) -> np.ndarray:
    """Label the grains of a boundary map for scoring.

    Parameters
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
        Boundary pixels True.
    min_grain_area : int
        4-connected components of the complement smaller than this (px) are dropped.
    close_gaps : int
        First close gaps of up to this many pixels the way ``napari-grains measure`` does
        (:func:`napari_grains.grains.label_grains`: each loose end of the boundary skeleton is
        joined to the nearest other boundary pixel within ``close_gaps + 1`` px). 0 (the
        default) labels the map as it is.
    fill_boundaries : bool
        When True (the default for scoring) every boundary and dropped pixel takes the label of
        its nearest grain, so the labeling covers the image. When False they stay 0.

    Returns
    -------
    ndarray of int32, shape (rows, cols)
        Grains numbered 1..N in raster order of their first pixel. A map with no grain at all
        (all boundary) is one grain, 1, when ``fill_boundaries``.
    """
    b = _as_bool_map(boundaries, "boundary map")
    if close_gaps < 0:
        raise GrainsError(f"close_gaps must be 0 or more pixels, got {close_gaps}.")
    if close_gaps and b.any():
        from napari_grains.grains import _bridge_gaps, _skeleton

        b = b | _bridge_gaps(_skeleton(b), int(close_gaps))
    labels, n = ndi.label(~b, structure=_FOUR)
    if n and min_grain_area > 1:
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        keep = areas >= min_grain_area
        keep[0] = False
        remap = np.zeros(n + 1, np.int32)
        remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels = remap[labels]
        n = int(keep.sum())
    labels = labels.astype(np.int32, copy=False)
    if not fill_boundaries:
        return labels
    if n == 0:
        return np.ones(b.shape, np.int32)
    holes = labels == 0
    if holes.any():
        _, (ii, jj) = ndi.distance_transform_edt(holes, return_indices=True)
        labels = labels[ii, jj]
    return labels


def contingency_table(a: np.ndarray, b: np.ndarray) -> sparse.csr_matrix:
    """Sparse contingency table of two labelings of the same pixels.

    Parameters
    ----------
    a, b : ndarray of int
        Labelings of equal shape (any non-negative integers).

    Returns
    -------
    scipy.sparse.csr_matrix of int64, shape (max(a)+1, max(b)+1)
        ``table[i, j]`` = number of pixels with ``a == i`` and ``b == j``.
    """
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    if a.shape != b.shape:
        raise GrainsError(f"labelings differ in size ({a.size} vs {b.size}).")
    if a.size and (a.min() < 0 or b.min() < 0):
        raise GrainsError("labelings must be non-negative integers.")
    ones = np.ones(a.size, np.int64)
    shape = (int(a.max(initial=0)) + 1, int(b.max(initial=0)) + 1)
    return sparse.coo_matrix((ones, (a, b)), shape=shape).tocsr()


def _entropy_bits(counts: np.ndarray, n: float) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def variation_of_information(pred_labels: np.ndarray, gt_labels: np.ndarray) -> tuple[float, float]:
    """Variation of information between two labelings, in bits.

    Parameters
    ----------
    pred_labels, gt_labels : ndarray of int
        Labelings of the same pixels (every pixel is compared, label 0 included).

    Returns
    -------
    (split, merge) : tuple of float
        ``split = H(pred | gt)`` (ground-truth grains cut into pieces: over-segmentation) and
        ``merge = H(gt | pred)`` (ground-truth grains fused: under-segmentation). Their sum is
        the variation of information; 0 means identical partitions.
    """
    table = contingency_table(pred_labels, gt_labels)
    n = float(table.sum())
    if n == 0:
        return 0.0, 0.0
    h_joint = _entropy_bits(table.data.astype(np.float64), n)
    h_pred = _entropy_bits(np.asarray(table.sum(axis=1)).ravel().astype(np.float64), n)
    h_gt = _entropy_bits(np.asarray(table.sum(axis=0)).ravel().astype(np.float64), n)
    split = max(h_joint - h_gt, 0.0)
    merge = max(h_joint - h_pred, 0.0)
    return split, merge


def _pairs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float((x * (x - 1) / 2).sum())


def adjusted_rand_index(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985) of two labelings.

    Parameters
    ----------
    pred_labels, gt_labels : ndarray of int
        Labelings of the same pixels.

    Returns
    -------
    float
        1 for identical partitions (also when both are a single grain), about 0 for
        chance agreement, negative below chance.
    """
    table = contingency_table(pred_labels, gt_labels)
    n = float(table.sum())
    if n < 2:
        return 1.0
    index = _pairs(table.data)
    sum_a = _pairs(np.asarray(table.sum(axis=1)).ravel())
    sum_b = _pairs(np.asarray(table.sum(axis=0)).ravel())
    expected = sum_a * sum_b / (n * (n - 1) / 2)
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def _mean_diameter(labels: np.ndarray) -> tuple[int, float]:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return 0, float("nan")
    return int(areas.size), float(np.mean(2.0 * np.sqrt(areas / np.pi)))


def _rel_err(pred: float, gt: float) -> float:
    if not (math.isfinite(pred) and math.isfinite(gt)) or gt == 0:
        return float("nan")
    return (pred - gt) / gt


@dataclass
class ImageScore:
    """Every metric of one predicted boundary map against its ground truth.

    Attributes
    ----------
    boundary : BoundaryScore
        Tolerance precision / recall / F1.
    eq1_accuracy : float
        Paper Eq. 1, percent.
    vi_split, vi_merge : float
        Variation of information (bits), see :func:`variation_of_information`.
    ari : float
        Adjusted Rand index of the grain labelings.
    n_grains_pred, n_grains_gt : int
        Grain counts.
    mean_diameter_pred, mean_diameter_gt : float
        Mean equivalent-circle diameter in px.
    seconds : float
        Time spent producing the prediction (NaN when not measured).
    """

    boundary: BoundaryScore
    eq1_accuracy: float
    vi_split: float
    vi_merge: float
    ari: float
    n_grains_pred: int
    n_grains_gt: int
    mean_diameter_pred: float
    mean_diameter_gt: float
    seconds: float = float("nan")

    @property
    def vi(self) -> float:
        """Total variation of information (bits)."""
        return self.vi_split + self.vi_merge

    @property
    def grain_count_error(self) -> float:
        """Signed relative error of the grain count, ``(pred - gt) / gt``."""
        return _rel_err(self.n_grains_pred, self.n_grains_gt)

    @property
    def mean_size_error(self) -> float:
        """Signed relative error of the mean equivalent diameter."""
        return _rel_err(self.mean_diameter_pred, self.mean_diameter_gt)

    def as_row(self) -> dict:
        """The metrics as a flat dict keyed by :data:`METRIC_COLUMNS`."""
        b = self.boundary
        return {
            "precision": b.precision, "recall": b.recall, "f1": b.f1,
            "eq1_accuracy": self.eq1_accuracy,
            "vi_split": self.vi_split, "vi_merge": self.vi_merge, "vi": self.vi, "ari": self.ari,
            "n_grains_pred": self.n_grains_pred, "n_grains_gt": self.n_grains_gt,
            "grain_count_error": self.grain_count_error,
            "mean_diameter_pred": self.mean_diameter_pred,
            "mean_diameter_gt": self.mean_diameter_gt,
            "mean_size_error": self.mean_size_error,
            "seconds": self.seconds,
        }


def score_boundaries(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    tolerance: float = 2.0,
    min_grain_area: int = 4,
    close_gaps: int = 3,
    seconds: float = float("nan"),
) -> ImageScore:
    """Score one predicted boundary map against its ground truth with every metric.

    Parameters
    ----------
    pred, gt : ndarray of bool, shape (rows, cols)
        Boundary maps of the same shape.
    tolerance : float
        Pixel tolerance of the boundary metrics and of Eq. 1.
    min_grain_area : int
        Smallest grain kept in the labelings (px), see :func:`grain_labels`.
    close_gaps : int
        Gaps of up to this many pixels in the *prediction* are closed before its grains are
        labelled, as ``napari-grains measure`` closes them (its default, 3), so the grain
        scores are those of the grains a user measures. The boundary scores and Eq. 1 use the
        map as predicted. 0 labels the prediction as it is.
    seconds : float
        Time the prediction took, stored as is.

    Returns
    -------
    ImageScore
    """
    p = _as_bool_map(pred, "prediction")
    g = _as_bool_map(gt, "ground truth")
    _check_same_shape(p, g)
    bscore = boundary_prf(p, g, tolerance)
    acc = eq1_accuracy(p, g, tolerance)
    lp = grain_labels(p, min_grain_area=min_grain_area, close_gaps=close_gaps)
    lg = grain_labels(g, min_grain_area=min_grain_area)
    split, merge = variation_of_information(lp, lg)
    ari = adjusted_rand_index(lp, lg)
    n_p, d_p = _mean_diameter(lp)
    n_g, d_g = _mean_diameter(lg)
    return ImageScore(bscore, acc, split, merge, ari, n_p, n_g, d_p, d_g, float(seconds))


# --------------------------------------------------------------------------------------------
# Net2 iterations
# --------------------------------------------------------------------------------------------


@dataclass
class IterationScores:
    """Boundary scores of each Net2 iteration of one image.

    Attributes
    ----------
    precision, recall, f1, eq1_accuracy : ndarray of float64, shape (K,)
        Index ``k`` scores iteration ``k + 1`` (index 0 is the first Net2 output, or the map
        fed in when the stack starts with it; see :func:`score_iterations`).
    tolerance : float
        Pixel tolerance used.
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    eq1_accuracy: np.ndarray
    tolerance: float


def threshold_and_close(threshold: float = 0.2, closing_radius: int = 0
                        ) -> Callable[[np.ndarray], np.ndarray]:
    """A binarizer for :func:`score_iterations`: threshold, then close with a disk.

    With ``closing_radius=2`` and ``threshold=0.2`` it is the pipeline's own finishing step
    (``napari_grains.extract.finalize``), applied at the map's size.

    Parameters
    ----------
    threshold : float
        Boundary where the map exceeds this (maps in [0, 1]).
    closing_radius : int
        Radius in px of the disk of the morphological closing (0: none).

    Returns
    -------
    callable
        ``binarize(prob) -> ndarray of bool``.
    """
    if closing_radius < 0:
        raise GrainsError(f"closing_radius must be >= 0, got {closing_radius}.")
    r = int(closing_radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = (xx * xx + yy * yy <= r * r).astype(np.uint8)

    def binarize(prob: np.ndarray) -> np.ndarray:
        b = (np.asarray(prob) > threshold).astype(np.uint8)
        if r > 0:
            import cv2

            b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, disk, borderType=cv2.BORDER_REPLICATE)
        return b.astype(bool)

    return binarize


def score_iterations(
    iterations: np.ndarray | Sequence[np.ndarray],
    gt: np.ndarray,
    *,
    tolerance: float = 2.0,
    threshold: float = 0.2,
    binarize: Callable[[np.ndarray], np.ndarray] | None = None,
) -> IterationScores:
    """Score every map of a Net2 iteration stack against one ground truth.

    Parameters
    ----------
    iterations : ndarray, shape (K, rows, cols), or a sequence of (rows, cols) arrays
        Net2 outputs as floats in [0, 1], as uint8 0..255 (``ExtractResult.iterations``, which
        are divided by 255 first) or as boolean maps. Maps of another
        size than ``gt`` are resized to it (bilinear) before binarizing.
    gt : ndarray of bool, shape (rows, cols)
        Ground-truth boundary map.
    tolerance : float
        Pixel tolerance.
    threshold : float
        Boundary threshold used when ``binarize`` is None (the paper's 0.2).
    binarize : callable, optional
        ``binarize(prob) -> bool map``, e.g. the pipeline's own post-processing (threshold plus
        closing) so the scores match what ``extract`` would return at that iteration.

    Returns
    -------
    IterationScores
    """
    g = _as_bool_map(gt, "ground truth")
    g_skel = thin(g)
    d_gt = _distance_to(g_skel)
    to_bool = binarize or threshold_and_close(threshold)
    prec, rec, f1, acc = [], [], [], []
    for k, prob in enumerate(iterations):
        prob = np.asarray(prob)
        if prob.dtype == np.uint8:
            prob = prob.astype(np.float32) / 255.0
        if prob.ndim != 2:
            raise GrainsError(f"iteration {k + 1} has shape {prob.shape}; expected 2-D maps.")
        if prob.shape != g.shape:
            from skimage.transform import resize

            prob = resize(prob.astype(np.float32), g.shape, order=1, mode="edge",
                          anti_aliasing=False, preserve_range=True)
        p = _as_bool_map(to_bool(prob), "binarized iteration")
        s = boundary_prf(p, g, tolerance, gt_distance=d_gt, gt_skeleton=g_skel)
        prec.append(s.precision)
        rec.append(s.recall)
        f1.append(s.f1)
        n_gt = int(g_skel.sum())
        if n_gt:
            acc.append(100.0 * np.count_nonzero(_distance_to(p)[g_skel] <= tolerance) / n_gt)
        else:
            acc.append(100.0)
    return IterationScores(np.array(prec), np.array(rec), np.array(f1), np.array(acc),
                           float(tolerance))


# --------------------------------------------------------------------------------------------
# Folders of image / ground-truth pairs
# --------------------------------------------------------------------------------------------

#: Sub-folder names holding ground-truth boundary maps, in order of preference.
GT_FOLDERS = ("targets", "ground_truth", "boundaries")
#: Sub-folder holding the input micrographs.
IMAGE_FOLDER = "images"


@dataclass
class Pair:
    """One image to score: its ground truth and where the prediction comes from.

    Attributes
    ----------
    set : str
        Name of the set it belongs to (the data folder's name, or a benchmark set).
    name : str
        File stem shared by the image, ground truth and prediction.
    gt : Path
        Ground-truth boundary map (boundaries bright).
    image : Path or None
        The micrograph (needed with a model).
    pred : Path or None
        A boundary map made by anything (``--boundaries``).
    gt_polarity : str
        How to read the ground truth (see :func:`read_boundary_map`): ``"bright"`` for
        synthetic ``targets/``, ``"auto"`` for traced ``ground_truth/`` or ``boundaries/``.
    """

    set: str
    name: str
    gt: Path
    image: Path | None = None
    pred: Path | None = None
    gt_polarity: str = "bright"


def _stems(folder: Path) -> dict[str, Path]:
    from napari_grains.io import list_images

    return {p.stem: p for p in list_images([folder])}


def _is_set(folder: Path) -> bool:
    return any((folder / g).is_dir() for g in GT_FOLDERS)


def find_pairs(data: str | Path, *, boundaries: str | Path | None = None,
               need_images: bool = True) -> list[Pair]:
    """Match images, ground truth and (optionally) predicted boundary maps by file stem.

    Parameters
    ----------
    data : str or Path
        Either one set — a folder with ``images/`` and a ground-truth folder ``targets/``
        (the synthetic layout), ``ground_truth/`` or ``boundaries/`` — or a folder of such sets
        (a benchmark made by ``napari-grains evaluate --make-benchmark``).
    boundaries : str or Path, optional
        Folder of predicted boundary maps named like the ground truth (for a folder of sets,
        one sub-folder per set, or all maps side by side).
    need_images : bool
        When True every pair must have its micrograph in ``images/``.

    Returns
    -------
    list of Pair
        Sorted by set, then name.

    Raises
    ------
    GrainsError
        When the layout is not recognised or nothing matches.
    """
    root = Path(data)
    if not root.is_dir():
        raise GrainsError(f"no such data folder: {root}")
    if _is_set(root):
        sets = [root]
    else:
        sets = sorted(p for p in root.iterdir() if p.is_dir() and _is_set(p))
    if not sets:
        raise GrainsError(
            f"{root} has no ground truth: expected a folder with 'images/' and one of "
            f"{', '.join(g + '/' for g in GT_FOLDERS)} (boundary maps named like the images), "
            "or a folder of such sets (see 'napari-grains evaluate --make-benchmark')."
        )
    pred_root = Path(boundaries) if boundaries is not None else None
    if pred_root is not None and not pred_root.is_dir():
        raise GrainsError(f"no such boundaries folder: {pred_root}")
    pairs: list[Pair] = []
    for s in sets:
        gt_dir = next(s / g for g in GT_FOLDERS if (s / g).is_dir())
        if pred_root is not None and gt_dir.resolve() == pred_root.resolve():
            raise GrainsError(f"--boundaries points at the ground truth itself ({gt_dir}).")
        gts = _stems(gt_dir)
        images = _stems(s / IMAGE_FOLDER) if (s / IMAGE_FOLDER).is_dir() else {}
        preds: dict[str, Path] = {}
        if pred_root is not None:
            sub = pred_root / s.name
            preds = _stems(sub) if s != root and sub.is_dir() else _stems(pred_root)
        for stem, gt in sorted(gts.items()):
            image = images.get(stem)
            pred = preds.get(stem)
            if need_images and image is None:
                continue
            if pred_root is not None and pred is None:
                continue
            polarity = "bright" if gt_dir.name == "targets" else "auto"
            pairs.append(Pair(s.name, stem, gt, image, pred, polarity))
    if not pairs:
        what = "predicted boundary maps" if pred_root is not None else "images in images/"
        raise GrainsError(
            f"no ground-truth file in {root} has matching {what}; files are matched by their "
            "name without extension (e.g. images/00001.png with targets/00001.png)."
        )
    return pairs


def read_boundary_map(path: str | Path, polarity: str = "bright") -> np.ndarray:
    """Read a boundary-map image as bool.

    Parameters
    ----------
    path : str or Path
        Any image ``napari-grains`` reads; pixels above half the range are "bright".
    polarity : {"bright", "dark", "auto"}
        ``"bright"``: bright pixels are boundaries (synthetic targets, the pipeline's output).
        ``"dark"``: dark pixels are (a tracing on white). ``"auto"``: the polarity whose pixels
        form fewer connected pieces (boundaries are one network, grains are many). Pixel counts
        cannot decide: with small grains, boundaries can cover more than half of the image.

    Returns
    -------
    ndarray of bool, shape (rows, cols)
    """
    from napari_grains.io import read_image

    if polarity not in ("bright", "dark", "auto"):
        raise GrainsError(f"polarity must be 'bright', 'dark' or 'auto', not {polarity!r}.")
    b = read_image(path).data > 0.5
    if polarity == "dark":
        return ~b
    if polarity == "auto" and b.any() and not b.all():
        # boundaries form one connected network (8-connected); grains are many pieces
        n_bright = ndi.label(b, structure=np.ones((3, 3), bool))[1]
        n_dark = ndi.label(~b, structure=np.ones((3, 3), bool))[1]
        if n_bright > n_dark:
            return ~b
    return b


@dataclass
class EvaluationEvent:
    """Progress of :func:`iter_evaluate`: one image scored, or failed (``error`` says why)."""

    index: int
    total: int
    pair: Pair
    score: ImageScore | None
    error: str | None = None


@dataclass
class EvaluationResult:
    """Scores of a whole evaluation.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per image: ``set``, ``name``, :data:`METRIC_COLUMNS` and :data:`RUN_COLUMNS`
        (Net2 iterations run and the scale used; NaN when scoring maps from a folder).
    summary : dict
        Means per set and overall (see :func:`summarize`), plus the settings used.
    """

    table: pd.DataFrame
    summary: dict = field(default_factory=dict)

    def to_csv(self, path: str | Path) -> Path:
        """Write the per-image table as CSV, atomically."""
        from napari_grains.io import atomic_write

        return atomic_write(path, lambda tmp: self.table.to_csv(tmp, index=False,
                                                                float_format="%.6g"))

    def to_json(self, path: str | Path) -> Path:
        """Write the summary as JSON, atomically."""
        from napari_grains.io import atomic_write

        text = json.dumps(_jsonable(self.summary), indent=2)
        return atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))

    def write(self, out_dir: str | Path, *, overwrite: bool = True) -> tuple[Path, Path]:
        """Write ``metrics.csv`` and ``metrics.json`` into ``out_dir``.

        With ``overwrite=False``, earlier results there raise :class:`GrainsError` and are kept.
        """
        out = check_output_folder(out_dir, overwrite=overwrite)
        return self.to_csv(out / "metrics.csv"), self.to_json(out / "metrics.json")

    def format_table(self) -> str:
        """A plain-text table of the means per set, for the terminal."""
        return format_summary(self.summary)


def check_output_folder(out_dir: str | Path, *, overwrite: bool) -> Path:
    """Refuse an output folder that is a file or holds earlier metrics (unless ``overwrite``).

    Called before an evaluation starts, so minutes of work are never lost to a bad ``--out``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GrainsError(f"{out} is a file; give a folder for the results.")
    existing = [out / n for n in ("metrics.csv", "metrics.json") if (out / n).exists()]
    if existing and not overwrite:
        raise GrainsError(f"{', '.join(map(str, existing))} exist already; use --overwrite to "
                          "replace them or choose another --out.")
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _means(df) -> dict:
    out: dict = {"n_images": len(df)}
    for col in METRIC_COLUMNS:
        out[col] = float(df[col].mean()) if len(df) else float("nan")
    for col in RUN_COLUMNS:
        if col in df:
            out[col] = float(df[col].mean()) if len(df) else float("nan")
    for col in ("grain_count_error", "mean_size_error"):
        out[f"abs_{col}"] = float(df[col].abs().mean()) if len(df) else float("nan")
    return out


def summarize(table: pd.DataFrame, **settings) -> dict:
    """Means of every metric per set and over all images.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-image rows as in :attr:`EvaluationResult.table`.
    **settings
        Stored under ``"settings"`` (model, tolerance, ...).

    Returns
    -------
    dict
        ``{"settings": ..., "sets": {set: means}, "overall": means}``; means include
        ``abs_grain_count_error`` and ``abs_mean_size_error`` (mean absolute relative errors).
    """
    sets = {str(name): _means(group) for name, group in table.groupby("set", sort=True)}
    return {"settings": settings, "sets": sets, "overall": _means(table)}


def format_summary(summary: dict) -> str:
    """Render :func:`summarize`'s output as an aligned text table."""
    cols = [("n", "n_images", "{:d}"), ("P", "precision", "{:.3f}"), ("R", "recall", "{:.3f}"),
            ("F1", "f1", "{:.3f}"), ("Eq1 %", "eq1_accuracy", "{:.2f}"), ("VI bits", "vi", "{:.3f}"),
            ("ARI", "ari", "{:.3f}"), ("|count err|", "abs_grain_count_error", "{:.1%}"),
            ("|size err|", "abs_mean_size_error", "{:.1%}"), ("iters", "n_iterations", "{:.1f}"),
            ("s/img", "seconds", "{:.3f}")]
    rows = [(name, m) for name, m in summary["sets"].items()]
    if len(rows) > 1:
        rows.append(("all", summary["overall"]))

    def fmt(f: str, v) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        return f.format(v)

    cells = [["set"] + [c[0] for c in cols]]
    for name, m in rows:
        cells.append([name] + [fmt(f, m.get(key)) for _, key, f in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for i, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    s = summary.get("settings", {})
    head = ", ".join(f"{k}={v}" for k, v in s.items() if v is not None)
    return (head + "\n" if head else "") + "\n".join(lines)


def iter_evaluate(
    data: str | Path,
    *,
    model=None,
    boundaries: str | Path | None = None,
    tolerance: float = 2.0,
    min_grain_area: int = 4,
    close_gaps: int = 3,
    limit: int | None = None,
    sets: Iterable[str] | None = None,
    **extract_overrides,
) -> Generator[EvaluationEvent, None, EvaluationResult]:
    """Score a model, or a folder of boundary maps, on image / ground-truth pairs.

    A generator: it yields an :class:`EvaluationEvent` after each image and returns the
    :class:`EvaluationResult` (``StopIteration.value``); use :func:`evaluate` for one call.

    Parameters
    ----------
    data : str or Path
        A set or a folder of sets, see :func:`find_pairs`.
    model : str, Path or GrainModel, optional
        Model to run through :func:`napari_grains.extract.extract` on each image ("paper",
        "default", a model folder, or a loaded model). Exactly one of ``model`` and
        ``boundaries`` must be given.
    boundaries : str or Path, optional
        Folder of predicted boundary maps to score instead of running a model.
    tolerance : float
        Pixel tolerance of the boundary metrics and Eq. 1.
    min_grain_area : int
        Smallest grain (px) kept in the labelings.
    close_gaps : int
        Gaps of up to this many pixels in each prediction are closed before its grains are
        labelled, as ``napari-grains measure`` does (see :func:`score_boundaries`).
    limit : int, optional
        Score at most this many images per set (first by name), for quick checks.
    sets : iterable of str, optional
        Only these sets of a folder of sets.
    **extract_overrides
        Passed to ``extract`` (``mode=``, ``scale=``, ...); None values are dropped.

    Raises
    ------
    GrainsError
        On a bad layout, both or neither of ``model`` / ``boundaries``, or unreadable files.
    """
    import pandas as pd

    if (model is None) == (boundaries is None):
        raise GrainsError("give either a model (--model NAME|PATH) or a folder of predicted "
                          "boundary maps (--boundaries DIR), not both or neither.")
    pairs = find_pairs(data, boundaries=boundaries, need_images=model is not None)
    if sets is not None:
        wanted = set(sets)
        unknown = wanted - {p.set for p in pairs}
        if unknown:
            raise GrainsError(f"no set named {', '.join(sorted(unknown))} in {data}; "
                              f"sets there: {', '.join(sorted({p.set for p in pairs}))}.")
        pairs = [p for p in pairs if p.set in wanted]
    if limit is not None:
        if limit < 1:
            raise GrainsError(f"limit must be at least 1, got {limit}.")
        counts: dict[str, int] = {}
        kept = []
        for p in pairs:
            counts[p.set] = counts.get(p.set, 0) + 1
            if counts[p.set] <= limit:
                kept.append(p)
        pairs = kept
    overrides = {k: v for k, v in extract_overrides.items() if v is not None}
    model_name = None
    run = None
    if model is not None:
        from napari_grains.extract import extract
        from napari_grains.io import read_image
        from napari_grains.nets import load_model

        loaded = load_model(model) if isinstance(model, (str, Path)) else model
        model_name = getattr(loaded, "name", str(model))

        def run(pair: Pair) -> tuple[np.ndarray, float, dict]:
            image = read_image(pair.image).data
            t0 = time.perf_counter()
            res = extract(image, loaded, **overrides)
            seconds = time.perf_counter() - t0
            scale = res.params.scale
            info = {"n_iterations": res.n_iterations,
                    "scale": float(scale) if isinstance(scale, (int, float)) else float("nan")}
            return np.asarray(res.boundaries, bool), seconds, info

    rows = []
    failed: list[tuple[Pair, str]] = []
    for i, pair in enumerate(pairs):
        try:
            gt = read_boundary_map(pair.gt, pair.gt_polarity)
            if run is not None:
                pred, seconds, info = run(pair)
            else:
                pred, seconds = read_boundary_map(pair.pred), float("nan")
                info = {"n_iterations": float("nan"), "scale": float("nan")}
            if pred.shape != gt.shape:
                raise GrainsError(
                    f"prediction is {pred.shape[1]}×{pred.shape[0]} px but the ground truth is "
                    f"{gt.shape[1]}×{gt.shape[0]} px; they must match."
                )
        except Exception as exc:  # noqa: BLE001 - one bad image is reported, the rest scored
            msg = str(exc) if isinstance(exc, GrainsError) else f"{type(exc).__name__}: {exc}"
            failed.append((pair, msg))
            yield EvaluationEvent(i, len(pairs), pair, None, error=msg)
            continue
        score = score_boundaries(pred, gt, tolerance=tolerance, min_grain_area=min_grain_area,
                                 close_gaps=close_gaps, seconds=seconds)
        rows.append({"set": pair.set, "name": pair.name, **score.as_row(), **info})
        yield EvaluationEvent(i, len(pairs), pair, score)
    if pairs and not rows:
        raise GrainsError(f"no image could be scored; the first error: "
                          f"{failed[0][0].set}/{failed[0][0].name}: {failed[0][1]}")
    table = pd.DataFrame(rows, columns=["set", "name", *METRIC_COLUMNS, *RUN_COLUMNS])
    bench = _benchmark_info(Path(data), {p.set for p in pairs}, limited=limit is not None)
    summary = summarize(
        table,
        **bench,
        model=model_name,
        boundaries=str(boundaries) if boundaries is not None else None,
        data=str(data),
        tolerance=float(tolerance),
        min_grain_area=int(min_grain_area),
        close_gaps=int(close_gaps),
        **{k: (v if isinstance(v, (int, float, str, bool)) else str(v))
           for k, v in overrides.items()},
    )
    if model is not None:  # every extraction setting the model ran with, defaults included
        from dataclasses import asdict

        from napari_grains.extract import ExtractParams

        summary["settings"]["extraction"] = {
            k: (v if v is None or isinstance(v, (int, float, str, bool)) else
                list(v) if isinstance(v, tuple) else str(v))
            for k, v in asdict(ExtractParams(**overrides)).items()}
    summary["failed"] = [{"set": p.set, "name": p.name, "error": m} for p, m in failed]
    return EvaluationResult(table, summary)


def _benchmark_info(root: Path, sets: set[str], *, limited: bool) -> dict:
    """Version and completeness of a benchmark folder (empty for other data)."""
    path = root / "benchmark.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    defined = info.get("sets", {})
    official = (not limited and all(defined.get(s, {}).get("official", False) for s in sets))
    return {"benchmark_version": info.get("version"), "benchmark_official": bool(official)}


def evaluate(data: str | Path, **kwargs) -> EvaluationResult:
    """Run :func:`iter_evaluate` to the end and return its result.

    Examples
    --------
    >>> res = evaluate("bench/paper96", model="paper")          # doctest: +SKIP
    >>> res.summary["overall"]["f1"]                            # doctest: +SKIP
    """
    gen = iter_evaluate(data, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def net2_fixed_point(
    model,
    gt: np.ndarray,
    *,
    n_iterations: int = 50,
    tolerance: float = 2.0,
    binarize: Callable[[np.ndarray], np.ndarray] | None = None,
    initial: np.ndarray | None = None,
) -> IterationScores:
    """Apply a model's Net2 to a clean ground-truth map again and again, and score each output.

    A stable refiner keeps a correct map (nearly) unchanged: F1 should stay near 1 for all
    ``n_iterations``. The map is fed at its own resolution (no resizing), with no early stop.

    Parameters
    ----------
    model : str, Path or GrainModel
        The model whose Net2 is tested.
    gt : ndarray of bool, shape (rows, cols)
        Ground-truth boundary map, fed as 1.0 (boundary) / 0.0 (bulk).
    n_iterations : int
        Iterations to run (at least 1).
    tolerance : float
        Pixel tolerance of the scores.
    binarize : callable, optional
        Default: :func:`threshold_and_close` with the pipeline's defaults (0.2, radius 2).
    initial : ndarray of float, shape (rows, cols), optional
        The image's Net1 map (``ExtractResult.initial``), which a *conditioned* Net2
        (``GrainModel.net2_channels == 2``) sees beside its state at every iteration. Without
        it such a Net2 is given the truth there too, an oracle it never has in use. Ignored
        by a one-channel Net2.

    Returns
    -------
    IterationScores
        Index ``k`` scores the output of iteration ``k + 1``.
    """
    from napari_grains.extract import ExtractParams, iter_net2
    from napari_grains.nets import load_model

    if n_iterations < 1:
        raise GrainsError(f"n_iterations must be at least 1, got {n_iterations}.")
    m = load_model(model) if isinstance(model, (str, Path)) else model
    g = _as_bool_map(gt, "ground truth")
    params = ExtractParams(tolerance=0.0, max_iterations=int(n_iterations))
    cond = None if initial is None else np.asarray(initial, np.float32)
    if cond is not None and cond.shape != g.shape:
        raise GrainsError(f"initial has shape {cond.shape}, the truth {g.shape}.")
    # iter_net2 gives a conditioned Net2 ``cond`` (default: the truth) and ignores it otherwise
    outputs = [y for _, y, _, _ in iter_net2(g.astype(np.float32), m, params, condition=cond)]
    return score_iterations(outputs, g, tolerance=tolerance,
                            binarize=binarize or threshold_and_close(0.2, 2))
