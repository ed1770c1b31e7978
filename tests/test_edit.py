"""Correction operations on boundary maps: each tool changes the grains as a user expects."""

import numpy as np
import pytest
from skimage.measure import label

from napari_grains import edit
from napari_grains.errors import GrainsError


def grid(size=60, step=20, width=2):
    """A 3x3 grid of square grains separated by `width`-pixel boundaries (9 grains)."""
    b = np.zeros((size, size), bool)
    for k in range(step, size, step):
        b[k - width // 2 : k - width // 2 + width, :] = True
        b[:, k - width // 2 : k - width // 2 + width] = True
    return b


def n_grains(b):
    return int(label(~b, connectivity=1).max())


def test_grid_fixture_has_nine_grains():
    assert n_grains(grid()) == 9


def test_skeleton_graph_finds_junctions_and_segments():
    g = edit.skeleton_graph(grid())
    # four interior crossings of the grid
    lab = label(g.junctions, connectivity=2)
    assert lab.max() == 4
    assert g.n_segments >= 12  # 4 inner edges + 8 edges reaching the border
    assert not g.endpoints[5:55, 5:55].any()  # no dangling ends inside


def test_delete_segment_merges_two_grains_and_keeps_the_rest():
    b = grid()
    # the vertical boundary between grains (row 0-18, col 0-18) and (row 0-18, col 21-38)
    # between the crossing at (20, 20) and (40, 20) is at rows 21..38, cols 19..20
    r = edit.delete_segment(b, (30, 20))
    assert n_grains(r.boundaries) == 8
    assert not r.boundaries[25:35, 19:21].any()
    # the crossings at both ends stay, so their other boundaries stay connected
    assert r.boundaries[19:21, 19:21].all() and r.boundaries[39:41, 19:21].all()
    # nothing else is touched, and nothing is added
    assert not (r.boundaries & ~b).any()
    assert r.changed.sum() == (b & ~r.boundaries).sum() > 0
    np.testing.assert_array_equal(r.boundaries[:, 40:], b[:, 40:])


def test_delete_segment_does_not_modify_input():
    b = grid()
    before = b.copy()
    edit.delete_segment(b, (30, 20))
    np.testing.assert_array_equal(b, before)


def test_delete_segment_far_from_any_boundary_says_what_to_do():
    with pytest.raises(GrainsError, match="click on a boundary"):
        edit.delete_segment(grid(), (10, 10), max_distance=3)


def test_draw_boundary_splits_a_grain_with_snapped_ends():
    b = grid()
    # across the centre grain (rows 21..38, cols 21..38), ends a few px short of its sides
    r = edit.draw_boundary(b, [(30, 24), (30, 35)], thickness=2, snap_distance=6)
    assert n_grains(r.boundaries) == 10
    line = r.lines[0]
    assert b[tuple(line[0].astype(int))] and b[tuple(line[-1].astype(int))]  # both snapped
    assert r.changed.any() and not (b & ~r.boundaries).any()


def test_draw_boundary_without_snap_leaves_the_grain_whole():
    b = grid()
    r = edit.draw_boundary(b, [(30, 24), (30, 35)], thickness=2, snap_distance=0)
    assert n_grains(r.boundaries) == 9


def test_a_line_ending_near_the_image_edge_snaps_to_it_and_splits_the_grain():
    b = np.zeros((40, 50), bool)
    # both ends 3 px short of the left and right edges, no boundary anywhere near
    r = edit.draw_boundary(b, [(20, 3), (20, 46)], thickness=2, snap_distance=6)
    assert n_grains(r.boundaries) == 2
    line = r.lines[0]
    assert (line[0][1], line[-1][1]) == (0.0, 49.0) and "both ends" in r.description
    # a boundary nearer than the edge still wins
    c = np.zeros((40, 50), bool)
    c[:, 5] = True
    r2 = edit.draw_boundary(c, [(20, 3), (20, 30)], thickness=1, snap_distance=6)
    assert r2.lines[0][0][1] == 5.0
    # an end outside the image (a click beyond the canvas) lands on the edge
    r3 = edit.draw_boundary(b, [(-2, 25), (20, 25)], thickness=1, snap_distance=6)
    assert r3.lines[0][0][0] == 0.0
    # snapping off: the end stays where it was drawn, the grain stays whole
    r4 = edit.draw_boundary(b, [(20, 3), (20, 46)], thickness=2, snap_distance=0)
    assert n_grains(r4.boundaries) == 1


def test_diagonal_one_pixel_line_still_separates_grains():
    b = np.zeros((30, 30), bool)
    r = edit.draw_boundary(b, [(0, 0), (29, 29)], thickness=1, snap_distance=0)
    assert n_grains(r.boundaries) == 2


def test_draw_boundary_needs_two_points():
    with pytest.raises(GrainsError, match="at least two points"):
        edit.draw_boundary(grid(), [(3, 3)])


def test_close_gaps_previews_then_rejoins_a_broken_boundary():
    b = grid()
    b[19:21, 26:32] = False  # a 6-px gap in the horizontal boundary above the centre grain
    assert n_grains(b) == 8
    prop = edit.propose_gap_closures(b, max_distance=10)
    assert len(prop) == 2  # the two dangling ends face each other
    assert np.all(prop.distances <= 10) and np.all(prop.distances >= 5)
    r = edit.close_gaps(b, 10, proposal=prop)
    assert n_grains(r.boundaries) == 9
    assert not (b & ~r.boundaries).any()


def test_close_gaps_respects_the_distance():
    b = grid()
    b[19:21, 24:36] = False  # a 12-px gap
    assert len(edit.propose_gap_closures(b, max_distance=6)) == 0
    assert n_grains(edit.close_gaps(b, 6).boundaries) == 8


def test_estimate_thickness_matches_boundary_width():
    assert edit.estimate_thickness(grid(width=3)) == 3
    assert edit.estimate_thickness(grid(width=1)) == 1
