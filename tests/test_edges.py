"""The edge stack: MATLAB edge() threshold rules, geometry of the detected edges, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from napari_grains.edges import (
    EdgeStack,
    canny_edges,
    edge_stack,
    log_edges,
    log_kernel,
    sobel_edges,
)
from napari_grains.errors import GrainsError


@pytest.fixture
def step() -> np.ndarray:
    """A vertical step from 0.2 to 0.8 at column 32, with a little deterministic noise."""
    rng = np.random.default_rng(0)
    img = np.full((64, 64), 0.2, np.float32)
    img[:, 32:] = 0.8
    return img + rng.normal(0, 0.01, img.shape).astype(np.float32)


@pytest.fixture
def disk() -> np.ndarray:
    """A bright disk of radius 20 on a dark, slightly noisy background."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96]
    img = np.where((yy - 48) ** 2 + (xx - 48) ** 2 <= 20**2, 0.7, 0.3).astype(np.float32)
    return img + rng.normal(0, 0.01, img.shape).astype(np.float32)


def test_sobel_finds_the_step_and_uses_the_rms_threshold(step):
    e, thr = sobel_edges(step)
    # MATLAB's rule, recomputed independently with scipy: sqrt(4 * mean(bx^2 + by^2))
    k = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float64) / 8
    bx = ndimage.correlate(step.astype(np.float64), k, mode="nearest")
    by = ndimage.correlate(step.astype(np.float64), k.T, mode="nearest")
    assert thr == pytest.approx(math.sqrt(4 * np.mean(bx**2 + by**2)), rel=1e-4)
    cols = np.nonzero(e.any(axis=0))[0]
    assert set(cols) <= {31, 32}
    # thinning: one pixel per row along the step
    assert np.all(e.sum(axis=1) == 1)


def test_sobel_without_thinning_is_thicker(step):
    thin, _ = sobel_edges(step)
    thick, _ = sobel_edges(step, thinning=False)
    assert thick.sum() > thin.sum()
    assert np.all(thick[thin])


def test_given_threshold_is_used_and_higher_means_fewer_edges(disk):
    e_auto, t_auto = sobel_edges(disk)
    e_hi, t_hi = sobel_edges(disk, 2 * t_auto)
    assert t_hi == 2 * t_auto
    assert e_hi.sum() <= e_auto.sum()
    _, t_log = log_edges(disk, threshold=0.01)
    assert t_log == 0.01
    _, (lo, hi) = canny_edges(disk, thresholds=0.5)
    assert (lo, hi) == pytest.approx((0.2, 0.5))
    _, (lo, hi) = canny_edges(disk, thresholds=(0.1, 0.3))
    assert (lo, hi) == (0.1, 0.3)


def test_log_kernel_matches_fspecial_shape_and_sums_to_zero():
    k = log_kernel(2.0)
    assert k.shape == (13, 13)  # 2*ceil(3*sigma)+1
    assert abs(k.sum()) < 1e-12
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
    assert k[6, 6] == k.min()  # the centre is the negative peak
    assert log_kernel(1.0).shape == (7, 7)


def test_log_threshold_is_three_quarters_of_mean_abs_response(disk):
    _, thr = log_edges(disk)
    b = ndimage.correlate(disk.astype(np.float64), log_kernel(2.0), mode="nearest")
    assert thr == pytest.approx(0.75 * np.abs(b).mean(), rel=1e-4)


def test_log_zero_crossings_lie_on_the_disk_boundary_and_not_on_the_border(disk):
    e, _ = log_edges(disk)
    yy, xx = np.nonzero(e)
    r = np.hypot(yy - 48, xx - 48)
    assert e.sum() > 100
    assert np.median(np.abs(r - 20)) <= 1.5
    assert not e[0].any() and not e[-1].any() and not e[:, 0].any() and not e[:, -1].any()


def test_canny_high_threshold_leaves_70_percent_of_pixels_below(disk):
    _, (lo, hi) = canny_edges(disk)
    assert lo == pytest.approx(0.4 * hi)
    # the rule: first of 64 histogram bins of the max-normalised magnitude where the cumulative
    # count exceeds 70 %, divided by 64 -> hi is a multiple of 1/64
    assert (hi * 64) == pytest.approx(round(hi * 64))
    assert 0 < hi < 1


def test_canny_traces_the_disk_as_a_thin_closed_ring(disk):
    # explicit thresholds: the automatic ones mark 30 % of pixels as candidates, so on a
    # nearly noise-free image they also trace noise (MATLAB does the same)
    e, _ = canny_edges(disk, thresholds=(0.1, 0.3))
    yy, xx = np.nonzero(e)
    r = np.hypot(yy - 48, xx - 48)
    assert np.all(np.abs(r - 20) <= 2)
    # the ring separates inside from outside
    _, n = ndimage.label(~e)
    assert n >= 2
    # thin: nearly one pixel per angle (perimeter ~ 2*pi*20 = 126)
    assert 100 < e.sum() < 260


def test_canny_hysteresis_drops_weak_isolated_edges():
    img = np.zeros((64, 128), np.float32)
    img[:, 32:] = 1.0  # strong step
    img[20:40, 90:] += 0.05  # faint, isolated patch
    e, _ = canny_edges(img, thresholds=(0.02, 0.5))
    assert e[:, 28:36].any()
    assert not e[:, 80:].any()
    e_low, _ = canny_edges(img, thresholds=(0.02, 0.03))
    assert e_low[:, 80:].any()


def test_edge_stack_layout(disk):
    st = edge_stack(disk)
    assert isinstance(st, EdgeStack)
    assert st.rgb.shape == disk.shape + (3,) and st.rgb.dtype == np.uint8
    assert set(np.unique(st.rgb)) <= {0, 255}
    assert np.array_equal(st.sobel, sobel_edges(disk)[0])
    assert np.array_equal(st.log, log_edges(disk)[0])
    assert np.array_equal(st.canny, canny_edges(disk)[0])
    assert set(st.thresholds) == {"sobel", "log", "canny"}
    assert st.sigmas == {"log": 2.0, "canny": pytest.approx(math.sqrt(2))}


def test_uint8_input_is_scaled_like_im2single(disk):
    u8 = np.clip(disk * 255 + 0.5, 0, 255).astype(np.uint8)
    a = edge_stack(u8)
    b = edge_stack(u8.astype(np.float32) / 255)
    assert np.array_equal(a.rgb, b.rgb)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8, 3), np.float32), np.zeros((2, 50), np.float32),
     np.full((16, 16), np.nan, np.float32)],
)
def test_bad_images_raise_the_project_error(bad):
    with pytest.raises(GrainsError):
        edge_stack(bad)


def test_bad_parameters_raise_the_project_error(disk):
    with pytest.raises(GrainsError):
        canny_edges(disk, thresholds=(0.5, 0.2))
    with pytest.raises(GrainsError):
        log_edges(disk, sigma=0)
    with pytest.raises(GrainsError):
        sobel_edges(disk, -1.0)
