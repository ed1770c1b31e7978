"""The synthetic-data generator: the paper's concepts, the target's definition, determinism,
the realism concepts and the folder layout others read."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull

from napari_grains import synth
from napari_grains.errors import GrainsError
from napari_grains.synth import (
    Realism,
    SynthParams,
    boundaries_from_labels,
    draw_diameters,
    generate_pair,
    interior_ecd,
    iter_pairs,
    load_pair,
    pack_circles,
    power_diagram,
    read_manifest,
    save_pairs,
)

CLEAN = {"overlay": False, "salt_pepper": False, "gaussian": False, "poisson": False, "median": False}


def clean(**kw) -> SynthParams:
    """Paper geometry, no overlay, no noise: the image is the grain gray levels only."""
    return SynthParams(**{**CLEAN, **kw})


def with_realism(p: SynthParams, **kw) -> SynthParams:
    return dataclasses.replace(p, realism=dataclasses.replace(p.realism, **kw))


def nonconvex_pixels(labels: np.ndarray) -> int:
    """Pixels whose centre lies in the convex hull of another grain's pixel centres."""
    bad = 0
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        sub = labels[sl]
        yy, xx = np.nonzero(sub == k)
        pts = np.c_[xx, yy].astype(float)
        if np.linalg.matrix_rank(pts - pts.mean(0)) < 2:  # a straight run of pixels
            span = (xx.max() - xx.min() + 1) * (yy.max() - yy.min() + 1)
            bad += span - xx.size
            continue
        eq = ConvexHull(pts).equations
        gy, gx = np.mgrid[0:sub.shape[0], 0:sub.shape[1]]
        cand = np.c_[gx.ravel(), gy.ravel()].astype(float)
        inside = np.all(cand @ eq[:, :2].T + eq[:, 2] <= 1e-9, axis=1)
        bad += int(np.sum(inside & (sub.ravel() != k)))
    return bad


# ----------------------------------------------------------------------------- paper defaults


def test_defaults_reproduce_the_paper():
    p = SynthParams()
    assert (p.height, p.width, p.count) == (96, 496, 3000)
    assert p.overlay and p.overlay_weight == 0.1
    assert p.salt_pepper and p.salt_pepper_density == 0.05
    assert p.gaussian and p.gaussian_variance == 0.01
    assert p.poisson and p.median and p.median_size == 5
    assert all(getattr(p.realism, c) == 0.0 for c in Realism.CONCEPTS)
    pair = generate_pair(seed=3)
    assert pair.image.shape == pair.target.shape == pair.labels.shape == (96, 496)
    assert pair.image.dtype == np.float32 and pair.target.dtype == bool
    assert pair.labels.dtype == np.int32
    assert 0.0 <= pair.image.min() and pair.image.max() <= 1.0
    # labels tile the image with grains 1..n, every id used
    assert pair.labels.min() == 1
    assert np.array_equal(np.unique(pair.labels), np.arange(1, pair.labels.max() + 1))
    assert pair.params["drawn"]["n_grains"] == pair.labels.max()
    lb = pair.labels_with_boundaries
    assert np.all(lb[pair.target] == 0) and np.all(lb[~pair.target] > 0)


# ----------------------------------------------------------------------------- sizes


def test_drawn_diameters_fill_the_area_and_follow_the_lognormal():
    rng = np.random.default_rng(0)
    area = 4e6
    d = draw_diameters(rng, 20.0, 0.3, area)
    total = np.sum(np.pi / 4 * d * d)
    assert abs(total - area) <= np.pi / 4 * d[-1] ** 2  # within the last circle drawn
    assert d.mean() == pytest.approx(20.0, rel=0.02)  # arithmetic mean diameter
    assert np.log(d).std() == pytest.approx(0.3, abs=0.01)  # sigma of ln(diameter)


def test_cell_sizes_match_the_requested_lognormal():
    """The power-diagram cells' ECDs (not just the circles') follow the request:
    mean within 5 %, sigma of ln(ECD) within 0.04, over ~2000 interior grains."""
    for sigma in (0.2, 0.45):
        p = clean(height=320, width=320, mean_diameter=(16, 16), sigma=(sigma, sigma))
        ecd, w = map(np.concatenate, zip(*(interior_ecd(generate_pair(p, 5, index=i).labels)
                                            for i in range(5))))
        assert ecd.size > 1500
        w = w / w.sum()
        mean = np.sum(w * ecd)
        lm = np.sum(w * np.log(ecd))
        s = math.sqrt(np.sum(w * (np.log(ecd) - lm) ** 2))
        assert mean == pytest.approx(16, rel=0.05)
        assert s == pytest.approx(sigma, abs=0.04)


def test_cells_spread_more_than_circles_without_compensation():
    """Why match_cells exists: uncompensated, the cells' sigma exceeds the circles'."""
    p = clean(height=320, width=320, mean_diameter=(16, 16), sigma=(0.4, 0.4),
              match_cells=False)
    ecd, w = map(np.concatenate, zip(*(interior_ecd(generate_pair(p, 5, index=i).labels)
                                        for i in range(4))))
    w = w / w.sum()
    lm = np.sum(w * np.log(ecd))
    assert math.sqrt(np.sum(w * (np.log(ecd) - lm) ** 2)) > 0.43


def test_mean_diameter_range_is_drawn_per_image():
    p = clean(mean_diameter=(10, 60))
    drawn = [generate_pair(p, 1, index=i).params["drawn"]["mean_diameter"] for i in range(12)]
    assert all(10 <= d <= 60 for d in drawn)
    assert max(drawn) - min(drawn) > 20
    # more grains for smaller mean diameters
    small = generate_pair(clean(mean_diameter=(10, 10)), 2).labels.max()
    large = generate_pair(clean(mean_diameter=(60, 60)), 2).labels.max()
    assert small > 4 * large


# ----------------------------------------------------------------------------- packing


def test_packing_removes_overlap_and_gaps():
    rng = np.random.default_rng(1)
    radii = draw_diameters(rng, 20, 0.3, 300 * 300) / 2
    _, before = pack_circles(np.random.default_rng(2), radii, (300, 300), iterations=1)
    centres, after = pack_circles(np.random.default_rng(2), radii, (300, 300), iterations=80)
    assert after["mean_overlap"] < 0.6 * before["mean_overlap"]
    assert np.all((centres >= 0) & (centres < 300))
    # with the circles' total area equal to the box, a good packing leaves few gaps
    pair = generate_pair(clean(height=200, width=200, mean_diameter=(20, 20)), 4)
    assert pair.params["drawn"]["packing"]["gap_fraction"] < 0.12


def test_image_borders_are_not_special():
    """The packing runs in a padded periodic domain, so grains are as dense next to the image
    border as inside: grain centroids per area in a 30 px frame match the interior's."""
    p = clean(height=256, width=256, mean_diameter=(20, 20), sigma=(0.2, 0.2))
    frame, interior = [], []
    for i in range(3):
        lab = generate_pair(p, 9, index=i).labels
        cy, cx = np.array(ndimage.center_of_mass(np.ones_like(lab), lab,
                                                  range(1, lab.max() + 1))).T
        inner = (cx >= 30) & (cx <= 225) & (cy >= 30) & (cy <= 225)  # 196 x 196 px
        # grains cut by the border have centroids pushed inwards: count the frame from 8 px in
        in_frame = ~inner & (cx > 8) & (cx < 247) & (cy > 8) & (cy < 247)  # 239² - 196² px
        frame.append(np.sum(in_frame) / (239 ** 2 - 196 ** 2))
        interior.append(np.sum(inner) / 196 ** 2)
    assert np.mean(frame) == pytest.approx(np.mean(interior), rel=0.2)


# ----------------------------------------------------------------------------- power diagram


def test_power_diagram_equals_brute_force():
    rng = np.random.default_rng(3)
    c = rng.uniform(-30, 130, (60, 2))
    r = rng.uniform(2, 25, 60)
    owner, power = power_diagram(c, r, (70, 100), tile=16)
    yy, xx = np.mgrid[0:70, 0:100]
    pw = (xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2 \
        - r[:, None, None] ** 2
    assert np.array_equal(owner, pw.argmin(0))
    np.testing.assert_allclose(power, pw.min(0), rtol=1e-5, atol=1e-3)


def test_every_grain_is_convex():
    for i in range(3):
        assert nonconvex_pixels(generate_pair(clean(), 11, index=i).labels) == 0
    p = with_realism(clean(height=128, width=128, mean_diameter=(40, 40)), twins=1.0,
                     twin_fraction=(1.0, 1.0))
    pair = generate_pair(p, 2)
    assert pair.params["drawn"]["twins"]["n_twinned"] > 0
    assert nonconvex_pixels(pair.labels) == 0  # twin slabs are convex labels too


# ----------------------------------------------------------------------------- target


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_target_is_the_label_boundary_at_the_requested_thickness(t):
    pair = generate_pair(clean(boundary_thickness=t), 6)
    lab, tgt = pair.labels, pair.target
    assert np.array_equal(tgt, boundaries_from_labels(lab, t))
    # every interface between 4-neighbours of different grains is covered ...
    for a, b, ta, tb in ((lab[:, :-1], lab[:, 1:], tgt[:, :-1], tgt[:, 1:]),
                         (lab[:-1], lab[1:], tgt[:-1], tgt[1:])):
        diff = a != b
        assert np.all((ta | tb)[diff])
        if t >= 2:
            assert np.all((ta & tb)[diff])
    # ... and no target pixel is farther than t px from one
    change = np.zeros(lab.shape, bool)
    change[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    change[:, 1:] |= lab[:, :-1] != lab[:, 1:]
    change[:-1] |= lab[:-1] != lab[1:]
    change[1:] |= lab[:-1] != lab[1:]
    dist = ndimage.distance_transform_edt(~change)
    assert dist[tgt].max() <= t
    assert not tgt[dist > t].any()


@pytest.mark.parametrize("t", [1, 2, 3, 5])
def test_straight_boundaries_are_exactly_t_pixels_thick(t):
    lab = np.ones((40, 40), np.int32)
    lab[:, 20:] = 2
    lab[25:, :] = 3
    b = boundaries_from_labels(lab, t)
    assert b[5].sum() == t  # across the vertical interface, away from the junction
    assert b[:, 5].sum() == t  # across the horizontal one
    assert b[:, 35].sum() == t
    # centred on the interface (between columns 19 and 20) for even t
    # the band spans offsets -(t-1)//2 .. t//2 around the last column of the left grain (19):
    # centred on the interface (19.5) for even t, half a pixel left of it for odd t
    cols = np.flatnonzero(b[5])
    assert cols.tolist() == list(range(19 - (t - 1) // 2, 19 + t // 2 + 1))


# ----------------------------------------------------------------------------- concepts


def test_one_random_gray_level_per_grain_over_0_255():
    levels, near_equal = [], 0
    for i in range(4):
        pair = generate_pair(clean(), 8, index=i)
        lab, img = pair.labels, pair.image
        for k in range(1, lab.max() + 1):
            v = np.unique(img[lab == k])
            assert v.size == 1  # one level per grain
            assert abs(v[0] * 255 - round(v[0] * 255)) < 1e-4  # an 8-bit level
            levels.append(v[0])
        # neighbouring grains with nearly equal brightness occur (concept ii)
        a, b = lab[:, :-1], lab[:, 1:]
        m = a != b
        pairs = np.unique(np.c_[a[m], b[m]], axis=0)
        gv = np.asarray(ndimage.maximum(img, lab, np.arange(lab.max() + 1)))
        near_equal += int(np.sum(np.abs(gv[pairs[:, 0]] - gv[pairs[:, 1]]) < 10 / 255))
    levels = np.array(levels)
    assert levels.min() < 0.1 and levels.max() > 0.9
    assert near_equal > 0


def test_flipped_overlay_is_added_to_the_input_and_absent_from_the_target():
    base = generate_pair(clean(), 12)
    over = generate_pair(clean(overlay=True), 12)
    assert np.array_equal(base.target, over.target)
    assert np.array_equal(base.labels, over.labels)
    expected = np.clip(base.image + 0.1 * base.image[::-1, ::-1], 0, 1)
    np.testing.assert_allclose(over.image, expected, atol=1e-6)
    # the flipped copy's boundaries show as faint steps where the target has no boundary
    ghost = boundaries_from_labels(base.labels[::-1, ::-1], 1) & ~boundaries_from_labels(
        base.labels, 3)
    step = np.zeros(base.image.shape, np.float32)
    step[:, :-1] = np.abs(np.diff(over.image, axis=1))
    step[:-1] = np.maximum(step[:-1], np.abs(np.diff(over.image, axis=0)))
    faint = ghost & (step > 0) & (step <= 0.1 + 1e-6)
    assert faint.sum() > 50
    assert not over.target[faint].any()


def test_noise_stages_have_their_levels_and_are_switchable():
    flat = {"gray_range": (0.5, 0.5)}  # every grain mid-gray: noise is all that varies
    sp = generate_pair(clean(salt_pepper=True, **flat), 1).image
    assert np.mean((sp == 0) | (sp == 1)) == pytest.approx(0.05, abs=0.006)
    assert np.mean(sp == 0) == pytest.approx(np.mean(sp == 1), abs=0.008)
    g = generate_pair(clean(gaussian=True, **flat), 1).image
    assert g.mean() == pytest.approx(0.5, abs=0.005)
    assert g.var() == pytest.approx(0.01, rel=0.05)
    po = generate_pair(clean(poisson=True, **flat), 1).image
    assert po.var() == pytest.approx(0.5 / 255, rel=0.1)  # Poisson of the 8-bit value
    both = generate_pair(clean(salt_pepper=True, median=True, **flat), 1).image
    assert np.mean((both == 0) | (both == 1)) < 0.001  # the 5x5 median removes it
    assert generate_pair(clean(**flat), 1).image.var() == 0  # every stage off: no noise
    # the full paper chain keeps the grains recognisable
    pair = generate_pair(seed=1)
    means = ndimage.mean(pair.image, pair.labels, np.arange(1, pair.labels.max() + 1))
    ref = generate_pair(SynthParams(salt_pepper=False, gaussian=False, poisson=False,
                                    median=False), 1)
    ref_means = ndimage.mean(ref.image, ref.labels, np.arange(1, ref.labels.max() + 1))
    assert np.corrcoef(means, ref_means)[0, 1] > 0.9


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_pair_and_manifest_params_regenerate_it():
    a = generate_pair(SynthParams.realistic(height=96, width=128), 42, index=3)
    b = generate_pair(SynthParams.realistic(height=96, width=128), 42, index=3)
    c = generate_pair(SynthParams.realistic(height=96, width=128), 42, index=4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    rec = json.loads(json.dumps(a.params))  # JSON-able
    again = generate_pair(SynthParams.from_dict(rec["config"]), rec["seed"], index=rec["index"])
    assert np.array_equal(again.image, a.image) and np.array_equal(again.target, a.target)
    # fresh entropy is recorded too
    d = generate_pair(clean())
    assert np.array_equal(generate_pair(clean(), d.params["seed"]).labels, d.labels)


def test_iter_pairs_is_independent_of_the_worker_count():
    p = clean(height=32, width=48, mean_diameter=(10, 16))
    n = synth._MIN_POOL_JOBS  # enough jobs for a real process pool
    one = list(iter_pairs(n, p, 7, workers=1))
    two = list(iter_pairs(n, p, 7, workers=2))
    assert [q.params["index"] for q in two] == list(range(n))
    for a, b in zip(one, two):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(one[2].image, generate_pair(p, 7, index=2).image)


# ----------------------------------------------------------------------------- realism


def _pair(p, **realism):
    return generate_pair(with_realism(p, **realism), 21)


def test_each_realism_concept_changes_what_it_claims():
    p = clean(height=128, width=192, mean_diameter=(40, 40))
    off = generate_pair(p, 21)
    lab = off.labels
    inner = ndimage.binary_erosion(~off.target, iterations=4)

    def grain_std(img):  # mean over grains of the gray-level standard deviation inside each
        n = np.bincount(lab.ravel())[1:]
        m1 = np.bincount(lab.ravel(), img.ravel().astype(float))[1:] / n
        m2 = np.bincount(lab.ravel(), img.ravel().astype(float) ** 2)[1:] / n
        return float(np.mean(np.sqrt(np.maximum(m2 - m1 ** 2, 0))))

    assert grain_std(off.image) < 1e-6  # one gray level per grain

    blur = _pair(p, blur=1.0, blur_sigma=(2.0, 2.0))
    assert np.array_equal(blur.labels, lab) and np.array_equal(blur.target, off.target)
    def grad(im):  # edge energy
        return np.mean(np.diff(im, axis=1) ** 2)

    assert grad(blur.image) < 0.7 * grad(off.image)
    assert np.abs(blur.image - off.image)[inner].mean() < 0.02  # grain interiors kept

    flat = dataclasses.replace(p, gray_range=(0.5, 0.5))  # every grain mid-gray
    ill = _pair(flat, illumination=1.0, illumination_strength=(0.3, 0.3))
    gain = ill.image / 0.5
    assert gain.min() == pytest.approx(0.7, abs=1e-4) and gain.max() == pytest.approx(1, abs=1e-4)
    assert np.abs(np.diff(gain, axis=1)).max() < 0.02  # smooth: a shading, not edges
    assert np.array_equal(ill.target, off.target)

    low = _pair(p, low_contrast=1.0, contrast=(0.2, 0.2))
    assert low.image.max() - low.image.min() <= 0.2 + 1e-6
    assert np.array_equal(low.target, off.target)

    tex = _pair(p, texture=1.0)
    assert grain_std(tex.image) > 0.01  # texture inside grains
    assert np.corrcoef(tex.image.ravel(), off.image.ravel())[0, 1] > 0.9  # grains still there

    bend = _pair(p, bend_contours=1.0, bend_fraction=(1.0, 1.0), bend_depth=(0.5, 0.5))
    assert np.all(bend.image <= off.image + 1e-6)  # darkening only
    assert np.mean(bend.image < 0.8 * off.image) > 0.02  # in bands
    assert grain_std(bend.image) > 0.01

    gr = _pair(p, grooves=1.0, groove_depth=(0.5, 0.5), groove_width=(1.0, 1.0))
    dark = gr.image[off.target & (off.image > 0.2)] / off.image[off.target & (off.image > 0.2)]
    far = ndimage.binary_erosion(~off.target, iterations=6)
    assert np.mean(dark) < 0.8  # boundaries darkened
    np.testing.assert_allclose(gr.image[far], off.image[far], atol=1e-3)  # bulk untouched


def test_twins_in_target_or_only_in_the_image():
    p = with_realism(clean(height=128, width=192, mean_diameter=(50, 50)), twins=1.0,
                     twin_fraction=(1.0, 1.0))
    off = generate_pair(clean(height=128, width=192, mean_diameter=(50, 50)), 4)
    on = generate_pair(p, 4)
    assert on.labels.max() > off.labels.max()  # lamellae are grains of their own
    assert on.target.sum() > off.target.sum()
    assert np.all(on.target[off.target])  # the grain boundaries are kept
    assert np.array_equal(on.target, boundaries_from_labels(on.labels, p.boundary_thickness))
    hidden = generate_pair(dataclasses.replace(p, realism=dataclasses.replace(
        p.realism, twins_in_target=False)), 4)
    assert np.array_equal(hidden.target, off.target)
    assert np.array_equal(hidden.labels, off.labels)
    levels = ndimage.labeled_comprehension(hidden.image, hidden.labels,
                                           np.arange(1, hidden.labels.max() + 1),
                                           lambda v: np.unique(v).size, int, 0)
    assert levels.max() >= 2  # a twinned grain shows two gray levels
    # twin boundaries are straight: each lamella is a slab between parallel lines
    assert nonconvex_pixels(on.labels) == 0


def test_scale_concept_spans_few_to_hundreds_of_pixels():
    tiny = generate_pair(clean(height=128, width=128, mean_diameter=(4, 4)), 1)
    huge = generate_pair(clean(height=512, width=512, mean_diameter=(250, 250),
                               sigma=(0.2, 0.2)), 1)
    n_tiny, n_huge = tiny.labels.max(), huge.labels.max()
    assert n_tiny > 600  # ~ 128² / (π/4 · 4²) ≈ 1300 grains
    assert 2 <= n_huge <= 12
    r = SynthParams.realistic()
    assert r.mean_diameter[0] <= 8 and r.mean_diameter[1] >= 100 and r.mean_diameter_log
    assert all(getattr(r.realism, c) > 0 for c in Realism.CONCEPTS)


# ----------------------------------------------------------------------------- parameters


def test_params_round_trip_and_bad_values_raise_grains_error():
    p = SynthParams.realistic()
    assert SynthParams.from_dict(p.to_dict()) == p
    for bad in ({"sigma": (0.4, 0.2)}, {"median_size": 4}, {"boundary_thickness": 0},
                {"height": 2}, {"salt_pepper_density": 1.5},
                {"realism": Realism(blur=2.0)}, {"mean_diameter": (1e5, 1e5)}):
        with pytest.raises(GrainsError):
            generate_pair(SynthParams(**bad), 0)
    with pytest.raises(GrainsError, match="unknown"):
        SynthParams.from_dict({"heigth": 96})
    with pytest.raises(GrainsError):
        generate_pair(seed=-1)


# ----------------------------------------------------------------------------- files and CLI


def test_save_pairs_layout_and_reading_back(tmp_path):
    p = SynthParams(height=48, width=96, mean_diameter=(12, 24))
    manifest = save_pairs(tmp_path / "d", 3, p, seed=5, workers=1)
    recs = read_manifest(tmp_path / "d")
    assert manifest.name == "manifest.jsonl" and [r["index"] for r in recs] == [0, 1, 2]
    for sub, ext in (("images", "png"), ("targets", "png"), ("labels", "tif")):
        assert sorted(q.name for q in (tmp_path / "d" / sub).iterdir()) == [
            f"0000{i}.{ext}" for i in range(3)]
    back = load_pair(tmp_path / "d", recs[1])
    ref = generate_pair(p, 5, index=1)
    assert np.abs(back.image - ref.image).max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    assert np.array_equal(back.target, ref.target) and np.array_equal(back.labels, ref.labels)
    assert recs[1]["drawn"] == ref.params["drawn"]
    with pytest.raises(GrainsError, match="already holds"):
        save_pairs(tmp_path / "d", 1, p, seed=5, workers=1)
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "images").write_text("a file where a folder must go")
    with pytest.raises(GrainsError, match="cannot create"):
        save_pairs(tmp_path / "blocked", 1, p, seed=5, workers=1)


def test_cli_writes_pairs_and_contact_sheet(tmp_path, capsys):
    from napari_grains.cli import main

    out = tmp_path / "pairs"
    rc = main(["synth", "--count", "2", "--out", str(out), "--size", "48", "96",
               "--mean-diameter", "10", "20", "--realism", "blur=1", "twins",
               "--contact-sheet", "--workers", "1", "--quiet", "--format", "tiff"])
    assert rc == 0
    recs = read_manifest(out)
    assert len(recs) == 2 and recs[0]["config"]["realism"]["blur"] == 1.0
    assert recs[0]["config"]["realism"]["twins"] == 1.0 and "blur" in recs[0]["drawn"]
    assert (out / "images" / "00000.tif").exists() and (out / "contact_sheet.png").stat().st_size
    assert main(["synth", "--count", "1", "--out", str(out), "--quiet"]) == 2  # no overwrite
    assert "already holds" in capsys.readouterr().err
    assert main(["synth", "--count", "1", "--out", str(tmp_path / "x"), "--sigma", "1", "0"]) == 2


def test_interior_ecd_keeps_inner_grains_with_miles_lantuejoul_weights():
    labels = np.ones((10, 12), np.int32)
    labels[3:7, 4:8] = 2  # a 4x4 grain inside; grain 1 touches the border
    ecd, w = interior_ecd(labels)
    np.testing.assert_allclose(ecd, [2 * math.sqrt(16 / math.pi)])
    np.testing.assert_allclose(w, [1 / ((10 - 4) * (12 - 4))])

