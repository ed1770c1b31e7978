"""Summary statistics: ASTM E112 on exact geometries, lognormal fit, field statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _grain_shapes import boundaries_of, hex_tiling
from scipy import stats as sst

from napari_grains.grains import grain_table, label_grains
from napari_grains.stats import (
    NO_PIXEL_SIZE_NOTE,
    combine_fields,
    field_statistics,
    g_intercept,
    g_planimetric,
    heyn_intercepts,
    interconnect_statistics,
    lognormal_fit,
    planimetric,
    summarize,
)


def grid_labels(row_period: int = 10, col_period: int = 10, n: int = 10) -> np.ndarray:
    """Frame-included rectangular grid of boundary lines, labelled without thinning."""
    b = np.zeros((n * row_period + 1, n * col_period + 1), bool)
    b[::row_period, :] = True
    b[:, ::col_period] = True
    return label_grains(b, close_gaps=0, thin=False, min_area=1)


def test_e112_reference_points():
    # ASTM E112 tables: G = 1 at 15.50 grains/mm² (1x) and at a mean intercept of 0.2263 mm;
    # G = 0 at 7.75 grains/mm² and 0.32 mm. Each G step doubles N_A.
    assert g_planimetric(15.50) == pytest.approx(1.0, abs=0.005)
    assert g_planimetric(7.75) == pytest.approx(0.0, abs=0.005)
    assert g_planimetric(31.0) - g_planimetric(15.5) == pytest.approx(1.0, abs=1e-4)
    assert g_intercept(0.2263) == pytest.approx(1.0, abs=0.005)
    assert g_intercept(0.32) == pytest.approx(0.0, abs=0.005)
    assert math.isnan(g_planimetric(0.0))


def test_intercepts_of_a_square_grid_are_exact_along_rows_and_columns():
    lab = grid_labels()
    res = heyn_intercepts(lab, angles=(0, 90), spacing=10)
    # 10 horizontal lines at rows 5, 15, ... each 100 px long with 9 inner crossings and
    # a boundary at each end counted as half
    assert res.line_length.tolist() == [1000.0, 1000.0]
    assert res.intersections.tolist() == [100.0, 100.0]
    assert res.mean_intercept_by_angle.tolist() == [10.0, 10.0]
    assert res.anisotropy_index == 1.0


def test_diagonal_intercepts_of_a_square_grid():
    res = heyn_intercepts(grid_labels(), angles=(45, 135), spacing=7)
    # a line at 45° crosses period-p lines of both families: mean intercept p/√2
    assert res.mean_intercept_by_angle == pytest.approx([10 / math.sqrt(2)] * 2, rel=0.03)


def test_anisotropy_of_elongated_grains():
    lab = grid_labels(row_period=10, col_period=20)
    res = heyn_intercepts(lab, angles=(0, 90), spacing=5)
    assert res.mean_intercept_by_angle == pytest.approx([20.0, 10.0])
    assert res.anisotropy_index == pytest.approx(2.0)


def test_hexagonal_intercept_matches_stereology():
    labels, _ = hex_tiling((300, 360), 24.0)
    lab = label_grains(boundaries_of(labels), close_gaps=0, min_area=1)
    res = heyn_intercepts(lab, angles=range(0, 180, 15), spacing=6)
    # P_L = (2/π)·L_A and L_A = 2/(√3·s) for hexagons of side s = a/√3: ℓ̄ = π·a/4
    assert res.mean_intercept == pytest.approx(math.pi * 24.0 / 4, rel=0.04)


def test_summary_of_a_square_grid_with_pixel_size():
    lab = grid_labels()
    table = grain_table(lab)
    # a pixel size that puts N_A at E112's G = 1 (15.50 grains/mm²)
    n_eq = 64 + 0.5 * 36
    ps_mm = math.sqrt(n_eq / 15.50) / 101
    s = summarize(table, lab, pixel_size=ps_mm * 1000, unit="µm", intercept_spacing=10)
    assert s["n_grains"] == 100
    assert s["n_cut_by_border"] == 36
    assert s["n_measured"] == 64
    p = s["astm_e112"]["planimetric"]
    assert (p["n_inside"], p["n_intercepted"], p["n_equivalent"]) == (64, 36, 82.0)
    assert p["field_area_mm2"] == pytest.approx((101 * ps_mm) ** 2)
    assert p["grains_per_mm2"] == pytest.approx(15.50)
    assert p["G"] == pytest.approx(1.0, abs=0.005)
    ecd = s["equivalent_diameter"]
    assert ecd["px"]["mean"] == pytest.approx(2 * math.sqrt(81 / math.pi))
    assert ecd["µm"]["mean"] == pytest.approx(2 * math.sqrt(81 / math.pi) * ps_mm * 1000)
    i = s["astm_e112"]["intercept"]
    assert i["mean_intercept_px_by_angle"][0] == 10.0
    assert i["G"] == pytest.approx(g_intercept(i["mean_intercept_px"] * ps_mm))
    assert s["grains_per_unit_area"]["per_mm2"] == pytest.approx(15.50)


def test_without_pixel_size_g_is_none_with_a_note():
    lab = grid_labels()
    s = summarize(grain_table(lab), lab)
    assert s["astm_e112"]["planimetric"]["G"] is None
    assert s["astm_e112"]["intercept"]["G"] is None
    assert s["astm_e112"]["note"] == NO_PIXEL_SIZE_NOTE
    assert s["astm_e112"]["planimetric"]["n_equivalent"] == 82.0
    assert "µm" not in s["equivalent_diameter"]


def test_include_border_changes_only_size_statistics():
    lab = grid_labels()
    t = grain_table(lab)
    a = summarize(t, lab, pixel_size=1, unit="nm")
    b = summarize(t, lab, pixel_size=1, unit="nm", include_border=True)
    assert (a["n_measured"], b["n_measured"]) == (64, 100)
    assert a["astm_e112"]["planimetric"] == b["astm_e112"]["planimetric"]


def test_lognormal_fit_recovers_parameters():
    rng = np.random.default_rng(7)
    x = rng.lognormal(mean=3.0, sigma=0.4, size=3000)
    fit = lognormal_fit(x, unit="nm")
    assert fit.mu_ci[0] < 3.0 < fit.mu_ci[1]
    assert fit.sigma_ci[0] < 0.4 < fit.sigma_ci[1]
    assert fit.mu == pytest.approx(np.log(x).mean())
    assert fit.median == pytest.approx(math.exp(fit.mu))
    assert fit.ks_pvalue > 0.01
    assert fit.cdf(np.array([fit.median]))[0] == pytest.approx(0.5)
    # a normal sample with a wide spread is not lognormal
    y = rng.normal(50, 15, 3000)
    assert lognormal_fit(y[y > 0]).ks_pvalue < 1e-3
    assert lognormal_fit([5.0, 5.0, 5.0]) is None
    assert lognormal_fit([1.0, 2.0]) is None


def test_field_statistics_follow_e112():
    v = [10.0, 12.0, 11.0, 13.0, 9.0]
    fs = field_statistics(v)
    s = np.std(v, ddof=1)
    t = sst.t.ppf(0.975, 4)
    assert fs["n"] == 5
    assert fs["ci"] == pytest.approx(t * s / math.sqrt(5))
    assert fs["relative_accuracy_pct"] == pytest.approx(100 * t * s / math.sqrt(5) / 11.0)
    assert field_statistics([3.0])["ci"] is None


def test_combine_fields_computes_g_from_the_mean_na():
    lab = grid_labels()
    t = grain_table(lab)
    s1 = summarize(t, lab, pixel_size=0.010, unit="mm")
    s2 = summarize(t, lab, pixel_size=0.012, unit="mm")
    c = combine_fields([s1, s2])
    na = [s1["astm_e112"]["planimetric"]["grains_per_mm2"],
          s2["astm_e112"]["planimetric"]["grains_per_mm2"]]
    assert c["n_fields"] == 2
    assert c["grains_per_mm2"]["mean"] == pytest.approx(np.mean(na))
    assert c["grains_per_mm2"]["G"] == pytest.approx(g_planimetric(np.mean(na)))
    assert c["grains_per_mm2"]["ci"] > 0
    c2 = combine_fields([summarize(t, lab), s1])
    assert c2["grains_per_mm2"] is None and c2["note"]


def test_planimetric_counts_border_grains_as_halves():
    p = planimetric(10, 4, 2.0)
    assert p["grains_per_mm2"] == 6.0
    assert p["G"] == pytest.approx(3.321928 * math.log10(6.0) - 2.954)


def test_interconnect_bamboo_fraction_and_grain_length():
    # a 21-px-wide line along x: bamboo grains between vertical boundaries at 30, 60, 100, and
    # between 100 and 150 a horizontal boundary splits the width into two grains
    b = np.zeros((21, 180), bool)
    for c in (30, 60, 100, 150):
        b[:, c] = True
    b[10, 100:150] = True
    lab = label_grains(b, close_gaps=0, thin=False, min_area=1)
    ic = interconnect_statistics(lab, axis="x", pixel_size=2.0, unit="nm")
    # grains: [0-29] end, [31-59] bamboo, [61-99] bamboo, two half-width, [151-179] end
    assert ic["n_grains"] == 6
    assert ic["n_cut_by_ends"] == 2
    assert ic["n_bamboo"] == 2
    assert ic["bamboo_fraction"] == pytest.approx(2 / 4)
    assert ic["grain_length_px"]["mean"] == pytest.approx((29 + 39 + 49 + 49) / 4)
    assert ic["grain_length_nm"]["mean"] == pytest.approx(2 * (29 + 39 + 49 + 49) / 4)
    # bamboo columns: 0-29, 31-59, 61-99, 151-179 (the end grains span the width too)
    assert ic["bamboo_length_fraction"] == pytest.approx((30 + 29 + 39 + 29) / 180)
    vertical = interconnect_statistics(lab.T, axis="y")
    assert vertical["bamboo_fraction"] == ic["bamboo_fraction"]
