"""Grains from boundary maps and the per-grain table, against exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _grain_shapes import boundaries_of, hex_tiling, square_grid
from skimage import measure as skmeasure

from napari_grains.errors import GrainsError
from napari_grains.grains import (
    border_labels,
    extend_loose_ends,
    grain_table,
    label_grains,
    neighbour_pairs,
    normalize_unit,
    split_concave_grains,
)


def test_square_grid_gives_exact_counts_areas_and_shapes():
    labels = label_grains(square_grid(), close_gaps=0, thin=False, min_area=1)
    assert labels.dtype == np.int32
    assert labels.max() == 100
    t = grain_table(labels)
    assert len(t) == 100
    assert (t["area"] == 81).all()
    assert np.allclose(t["equivalent_diameter"], 2 * math.sqrt(81 / math.pi))
    assert np.allclose(t["feret_diameter_min"], 9.0)
    assert np.allclose(t["feret_diameter_max"], 9.0 * math.sqrt(2))
    assert np.allclose(t["solidity"], 1.0)
    assert np.allclose(t["aspect_ratio"], 1.0)
    first = t.iloc[0]
    assert (first["centroid-0"], first["centroid-1"]) == (5.0, 5.0)
    # frame grid: the 36 outer cells sit against the edge's boundary line, so they are cut
    assert int(t["touches_border"].sum()) == 36
    inner = t[~t["touches_border"]]
    assert (inner["n_neighbors"] == 4).all()  # diagonal cells touch at a point only


def test_thinning_keeps_grid_interior_cells_exact():
    labels = label_grains(square_grid(), close_gaps=0)  # default: thin, min_area 10
    t = grain_table(labels)
    assert len(t) == 100
    assert (t.loc[~t["touches_border"], "area"] == 81).all()


def test_hexagonal_tiling_count_neighbours_and_area():
    labels, n_seeds = hex_tiling()
    got = label_grains(boundaries_of(labels), close_gaps=0, min_area=1, fill_boundaries=True)
    t = grain_table(got)
    assert len(t) == n_seeds
    inner = t[~t["touches_border"]]
    assert len(inner) > 60
    assert (inner["n_neighbors"] == 6).all()
    hex_area = math.sqrt(3) / 2 * 20.0**2
    assert abs(inner["area"].mean() / hex_area - 1) < 0.01
    assert abs(inner["solidity"].mean() - 1) < 0.05


def test_moments_and_perimeter_equal_regionprops():
    rng = np.random.default_rng(3)
    labels, _ = hex_tiling((96, 128), 17.0)
    # jitter: random boundaries of random grains, so shapes are irregular
    b = boundaries_of(labels) | (rng.random(labels.shape) < 0.02)
    lab = label_grains(b, close_gaps=0, thin=False, min_area=3)
    t = grain_table(lab)
    ref = skmeasure.regionprops_table(
        lab, properties=("label", "area", "centroid", "axis_major_length", "axis_minor_length",
                         "orientation", "perimeter"))
    for col in ("label", "area", "centroid-0", "centroid-1", "axis_major_length",
                "axis_minor_length", "orientation", "perimeter"):
        np.testing.assert_allclose(t[col].to_numpy(float), ref[col], atol=1e-8, err_msg=col)


def test_feret_of_a_rectangle_and_an_l_shape():
    lab = np.zeros((30, 40), np.int32)
    lab[5:10, 5:25] = 1  # 5 x 20 rectangle
    lab[15:25, 10:13] = 2  # L: 10 x 3 bar plus a foot
    lab[22:25, 13:20] = 2
    t = grain_table(lab).set_index("label")
    assert t.loc[1, "feret_diameter_min"] == pytest.approx(5.0)
    assert t.loc[1, "feret_diameter_max"] == pytest.approx(math.hypot(5, 20))
    assert t.loc[2, "feret_diameter_max"] == pytest.approx(math.hypot(10, 10))
    assert t.loc[2, "solidity"] < 0.8  # the L is far from convex
    assert t.loc[1, "orientation"] == pytest.approx(math.pi / 2)  # major axis along columns


def test_close_gaps_joins_a_broken_boundary():
    b = square_grid(4, 20)
    b[30:33, 20] = False  # a 3-px gap in one vertical line
    b[60, 45:47] = False  # a 2-px gap in a horizontal one
    assert label_grains(b, close_gaps=0).max() == 14
    assert label_grains(b, close_gaps=2).max() == 15  # the 3-px gap is too wide
    closed = label_grains(b, close_gaps=3)
    assert closed.max() == 16
    t = grain_table(closed)
    assert (t.loc[~t["touches_border"], "area"] == 19 * 19).all()


def test_close_gaps_leaves_a_lone_spur_alone():
    b = square_grid(2, 30)
    b[10:20, 15] = True  # a dangling boundary piece in the middle of a grain
    labels = label_grains(b, close_gaps=3)
    assert labels.max() == 4


def test_thick_boundaries_are_thinned_and_specks_dropped():
    b = square_grid(4, 20)
    thick = b | np.roll(b, 1, 0) | np.roll(b, 1, 1)
    thick[45:47, 45:47] = False  # a 2x2 hole inside a boundary: a speck, not a grain
    thick[44:48, 44] = True
    thick[44:48, 47] = True
    thick[44, 44:48] = True
    thick[47, 44:48] = True
    unthinned = grain_table(label_grains(thick, close_gaps=0, thin=False, min_area=1))
    thinned = grain_table(label_grains(thick, close_gaps=0, thin=True, min_area=10))
    assert len(thinned) == 16
    assert len(unthinned) == 17  # the speck survives min_area=1
    assert thinned["area"].mean() > unthinned["area"].max() - 1


def test_fill_boundaries_tiles_the_image():
    labels = label_grains(square_grid(), close_gaps=0, fill_boundaries=True)
    assert labels.min() == 1
    assert labels.max() == 100
    t = grain_table(labels)
    assert t["area"].sum() == labels.size
    assert (t.loc[~t["touches_border"], "n_neighbors"] == 4).all()


def test_border_grains_behind_an_edge_boundary_line_are_cut():
    lab = np.zeros((20, 20), np.int32)
    lab[1:10, 1:19] = 1  # behind a one-pixel frame at the top and sides
    lab[11:15, 5:15] = 2  # 5 px from the sides and the bottom: complete
    lab[11:19, 1:4] = 3
    got = set(border_labels(lab).tolist())
    assert got == {1, 3}


def test_neighbour_pairs_across_one_pixel_boundaries():
    lab = np.array([[1, 0, 2], [1, 0, 2], [0, 0, 0], [3, 0, 4]], np.int32)
    assert neighbour_pairs(lab).tolist() == [[1, 2], [1, 3], [2, 4], [3, 4]]


def test_physical_units_scale_lengths_and_areas():
    labels = label_grains(square_grid(), close_gaps=0, thin=False)
    t = grain_table(labels, pixel_size=2.5, unit="nm")
    assert np.allclose(t["area_nm2"], t["area"] * 6.25)
    assert np.allclose(t["equivalent_diameter_nm"], t["equivalent_diameter"] * 2.5)
    assert np.allclose(t["feret_diameter_max_nm"], t["feret_diameter_max"] * 2.5)
    assert t.attrs["unit"] == "nm"
    t2 = grain_table(labels, pixel_size=0.5, unit="micron")
    assert "equivalent_diameter_um" in t2 and t2.attrs["unit"] == "µm"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: label_grains(np.zeros((4, 4, 3), bool)), "2-D"),
        (lambda: label_grains(np.arange(64).reshape(8, 8)), "not binary"),
        (lambda: label_grains(np.zeros((8, 8), bool), min_area=-1), "0 or more"),
        (lambda: grain_table(np.ones((4, 4), np.int32), pixel_size=2.0), "unit"),
        (lambda: grain_table(np.ones((4, 4), np.int32), pixel_size=-1, unit="nm"), "positive"),
        (lambda: grain_table(np.ones((4, 4), float)), "integer"),
        (lambda: normalize_unit("furlong"), "unknown length unit"),
    ],
)
def test_user_errors_raise_grains_error(call, match):
    with pytest.raises(GrainsError, match=match):
        call()


def test_0_255_boundary_maps_are_accepted():
    b = square_grid(3, 10)
    a = label_grains(b.astype(np.uint8) * 255, close_gaps=0, thin=False)
    assert np.array_equal(a, label_grains(b, close_gaps=0, thin=False))


def test_extend_loose_ends_closes_a_faded_boundary_and_leaves_open_ends_alone():
    # two grains whose boundary fades out 12 px before the next boundary
    b = np.zeros((40, 60), bool)
    b[20, :] = True
    b[:8, 30] = True  # a boundary from the top edge that stops at row 7
    added = extend_loose_ends(b, 20)
    assert added[8:20, 30].all() and added.sum() == 12
    assert label_grains(b | added, close_gaps=0, min_area=1).max() == 3
    # too short a reach: nothing is drawn (no dangling segment stopping in the open)
    assert not extend_loose_ends(b, 5).any()
    # a branch shorter than min_branch (a speck) is not prolonged
    speck = np.zeros((40, 60), bool)
    speck[20, :] = True
    speck[10:12, 30] = True  # pointing at the boundary 8 px below
    assert not extend_loose_ends(speck, 30).any()
    assert extend_loose_ends(speck, 30, min_branch=1).any()
    assert not extend_loose_ends(b, 0).any()
    # an end pointing at the image edge is not drawn out to it
    edge = np.zeros((40, 60), bool)
    edge[20, :] = True
    edge[21:30, 30] = True  # from the horizontal boundary down, stopping 10 px above the edge
    assert not extend_loose_ends(edge, 30).any()


def test_thick_boundary_into_the_image_edge_still_separates_grains():
    b = np.zeros((60, 80), bool)
    b[:, 34:46] = True  # a 12-px wide boundary from the top edge to the bottom edge
    labels = label_grains(b, min_area=1)
    assert labels.max() == 2
    assert labels[59, 5] != labels[59, 75] and labels[0, 5] != labels[0, 75]


def test_prolongation_of_a_wide_line_runs_straight():
    b = np.zeros((120, 80), bool)
    b[100:104, :] = True
    b[:50, 36:46] = True  # a 10-px wide vertical boundary stopping 50 px above the other
    added = extend_loose_ends(b, 60)
    rows, cols = np.nonzero(added)
    assert rows.size and rows.max() >= 98  # reaches the horizontal boundary
    assert cols.max() - cols.min() <= 2  # straight down, not slanted


def _erase_wall(labels: np.ndarray, b: np.ndarray, a: int, c: int):
    """``b`` without the boundary pixels that lie between grains ``a`` and ``c`` only, and
    those pixels (the erased wall)."""
    from scipy import ndimage as ndi

    near_a = ndi.binary_dilation(labels == a, iterations=2)
    near_c = ndi.binary_dilation(labels == c, iterations=2)
    others = ndi.binary_dilation(~np.isin(labels, [a, c]), iterations=2)
    wall = b & near_a & near_c & ~others
    return b & ~wall, wall


def test_split_concave_grains_restores_a_missing_wall_between_two_hexagons():
    labels, _ = hex_tiling((240, 280), spacing=40.0)
    b = boundaries_of(labels)
    # a clean tiling of convex cells is left as it is
    assert not split_concave_grains(b).any()
    a = int(labels[120, 140])
    # the neighbour to the right: the first other label along the row
    row = labels[120, 140:]
    c = int(row[row != a][0])
    merged, wall = _erase_wall(labels, b, a, c)
    assert wall.sum() > 10
    assert label_grains(merged, close_gaps=0, min_area=1).max() == labels.max() - 1
    cut = split_concave_grains(merged)
    assert cut.any() and not (cut & merged).any()
    # the cut lies on the erased wall (within 2 px) and splits the grains again
    dist = ndi_distance(~wall)
    assert dist[cut].max() <= 2
    assert label_grains(merged | cut, close_gaps=0, min_area=1).max() == labels.max()
    # off: nothing
    assert not split_concave_grains(merged, 0).any()


def test_split_concave_grains_on_a_power_diagram_finds_the_erased_walls_and_little_else():
    from napari_grains.synth import SynthParams, generate_pair

    drawn, found = [], []
    for seed in range(1, 9):  # pooled: how many walls a map offers to find varies by map
        pair = generate_pair(SynthParams(height=256, width=256, mean_diameter=(40, 40)),
                             seed=seed)
        labels, b = pair.labels, pair.target
        assert not split_concave_grains(b).any()  # a true map is kept
        # erase the walls of a few interior neighbour pairs (each grain in at most one pair)
        used, walls = set(), np.zeros_like(b)
        inner = set(np.unique(labels)) - set(border_labels(labels).tolist())
        merged = b.copy()
        for p, q in neighbour_pairs(labels).tolist():
            if p in used or q in used or p not in inner or q not in inner:
                continue
            merged, wall = _erase_wall(labels, merged, p, q)
            walls |= wall
            used |= {p, q}
            if len(used) >= 8:
                break
        cut = split_concave_grains(merged)
        drawn.append(ndi_distance(~walls)[cut] <= 2)
        found.append(ndi_distance(~cut)[walls] <= 2)
    # what it draws is the missing walls (0.998 when written); it finds most of them
    # (0.71: a wall whose two grains together are convex, or whose corners are shallow,
    # gives nothing away)
    assert np.concatenate(drawn).mean() >= 0.95
    assert np.concatenate(found).mean() >= 0.55


def test_split_concave_grains_rejects_bad_maps_and_settings():
    with pytest.raises(GrainsError):
        split_concave_grains(np.zeros((3, 3, 3)))
    ok = np.zeros((20, 20), bool)
    for bad in ({"min_depth": float("nan")}, {"min_depth": -1}, {"min_area": 0},
                {"max_angle": 0}, {"single_gain": -0.1}):
        with pytest.raises(GrainsError, match=next(iter(bad))):
            split_concave_grains(ok, **bad)
    # uint8 0/255 maps are read like bool ones
    labels, _ = hex_tiling((120, 160), spacing=40.0)
    b = boundaries_of(labels)
    b[:, 60:100] &= labels[:, 60:100] == labels[60, 80]  # erase some walls near the centre
    np.testing.assert_array_equal(split_concave_grains(b.astype(np.uint8) * 255),
                                  split_concave_grains(b))
    assert not split_concave_grains(np.zeros((20, 20), bool)).any()
    assert not split_concave_grains(np.ones((20, 20), bool)).any()


def ndi_distance(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.distance_transform_edt(mask)


def test_split_concave_grains_cuts_from_one_corner_when_the_wall_runs_to_the_edge():
    b = np.zeros((60, 100), bool)
    b[:, [0, -1]] = True
    b[-1, :] = True
    b[30, :61] = True  # a wall from the left edge to a junction at (30, 60) ...
    b[30:, 60] = True  # ... one from there down to the bottom; the one up to the top is
    # invisible, so the top-left grain and the right one merge into an L (one corner)
    assert label_grains(b, close_gaps=0, min_area=1).max() == 2
    cut = split_concave_grains(b)
    assert cut.any()
    assert label_grains(b | cut, close_gaps=0, min_area=1).max() == 3
    rows, cols = np.nonzero(cut)
    assert np.hypot(rows - 30, cols - 60).min() <= 3  # it starts at the junction
    assert rows.min() <= 1  # and runs to the image edge
    assert not split_concave_grains(b, single_gain=0).any()  # one corner alone: no cut then


def test_split_concave_grains_splits_three_grains_merged_in_a_row():
    # two missing walls: the merged region has two corners under one hull edge on each side
    labels, _ = hex_tiling((240, 320), spacing=40.0)
    b = boundaries_of(labels)
    row = labels[120, 60:]
    a = int(row[0])
    others = [int(v) for v in dict.fromkeys(row.tolist()) if v != a]
    mid, right = others[0], others[1]
    merged, w1 = _erase_wall(labels, b, a, mid)
    merged, w2 = _erase_wall(labels, merged, mid, right)
    assert label_grains(merged, close_gaps=0, min_area=1).max() == labels.max() - 2
    cut = split_concave_grains(merged)
    assert label_grains(merged | cut, close_gaps=0, min_area=1).max() == labels.max()
    assert ndi_distance(~(w1 | w2))[cut].max() <= 2  # both cuts lie on the erased walls


def test_a_ragged_notch_is_one_corner():
    from napari_grains.grains import _concave_corners

    # a square region with a V notch from the top whose right flank has small teeth: the
    # teeth are local maxima of the depth, but not prominent ones
    m = np.zeros((64, 64), bool)
    m[1:63, 1:63] = True
    for r in range(1, 31):
        m[r, 32 - (31 - r):32 + (31 - r) + 1] = False  # apex at (30, 32)
    for r in range(6, 28, 4):
        c = 32 + (31 - r) + 1
        m[r:r + 2, c:c + 2] = False
    corners = _concave_corners(m, 0.05, 2.0)
    assert len(corners) == 1
    (p, inward, depth), = corners
    assert abs(p[0] - 31) <= 1 and abs(p[1] - 32) <= 1 and depth > 20
    assert inward[0] > 0.9  # into the region, straight down


def test_a_cut_is_not_prolonged_across_a_wall():
    from napari_grains.grains import _cut_pixels

    m = np.ones((20, 20), bool)
    m[:, 10] = False  # a one-pixel wall; the region is on both sides of it
    rr, cc = _cut_pixels(m, np.array([10.0, 11.0]), np.array([10.0, 17.0]))
    cut = set(zip(rr.tolist(), cc.tolist()))
    assert {(10, c) for c in range(11, 18)} <= cut  # the segment itself
    assert (10, 18) in cut and (10, 19) in cut  # prolonged while in the region ...
    assert (10, 9) not in cut and (10, 8) not in cut  # ... but not beyond the wall
