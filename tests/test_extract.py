"""The extraction pipeline: convergence rules, any image size without seams, events, CLI."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from napari_grains.errors import GrainsError
from napari_grains.extract import (
    ExtractEvent,
    ExtractParams,
    ExtractResult,
    Preprocessed,
    compute_edges,
    extract,
    finalize,
    imresize,
    iter_extract,
    iter_net2,
    mean_intercept,
    preprocess,
    run_net1,
)

torch.set_num_threads(1)


class _Contracting:
    """A test double with GrainModel's interface whose Net2 halves the map every iteration.

    Its iterations are known in closed form (x_k = 0.8 / 2**k), so the stopping iteration of
    each rule can be computed by hand.
    """

    name = "contracting"
    card: ClassVar[dict] = {}
    multiple = 16

    def __init__(self, step=lambda x: 0.5 * x, start: float = 0.8):
        self.step, self.start = step, start

    def initial_guess(self, edges: torch.Tensor) -> torch.Tensor:
        return torch.full_like(edges[:, :1], self.start)

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x).clamp(0, 1)


def _texture(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1)).astype(np.float32)
    img = np.kron(img, np.ones((8, 8), np.float32))[: shape[0], : shape[1]]
    return np.clip(img + rng.normal(0, 0.02, shape).astype(np.float32), 0, 1)


@pytest.fixture(scope="module")
def paper_model():
    from napari_grains.nets import load_model

    return load_model("paper")


@pytest.fixture(scope="module")
def tiny_model():
    """Randomly initialised small nets of the paper's layout (cheap on big images)."""
    from napari_grains.nets import build_model, paper_card

    card = paper_card()
    card["net1"]["params"].update(encoder_widths=[4, 4, 4, 4], bridge_width=4,
                                  decoder_widths=[4, 4, 4, 4], ceiling=1.0)
    card["net1"]["output_scale"] = 1.0
    card["net2"]["params"].update(encoder_widths=[2, 2, 2, 2], decoder_widths=[2, 2, 2, 2],
                                  encoder_kernels=[5, 3, 3, 3])
    return build_model(card, seed=0)


# ---------------------------------------------------------------------------------------------
# convergence
# ---------------------------------------------------------------------------------------------


def test_paper_rule_stops_at_the_first_iteration_below_tolerance():
    img = _texture((64, 80))
    res = extract(img, _Contracting(), mode="native", scale=1.0, tolerance=0.003)
    # mean |x_k - x_(k-1)| = 0.8 / 2**k; first k with 0.8 / 2**k < 0.003 is k = 9
    assert res.n_iterations == 9 and res.converged
    np.testing.assert_allclose(res.changes, 0.8 / 2.0 ** np.arange(1, 10), rtol=1e-5)
    assert np.all(res.changes[:-1] >= 0.003)
    assert res.iterations.shape == (9, 64, 80) and res.iterations.dtype == np.uint8


def test_the_cap_stops_the_loop_and_says_so():
    res = extract(_texture((64, 64)), _Contracting(), mode="native", scale=1.0,
                  tolerance=0.003, max_iterations=4)
    assert res.n_iterations == 4 and not res.converged
    res0 = extract(_texture((64, 64)), _Contracting(), mode="native", scale=1.0, tolerance=0.0,
                   max_iterations=6)
    assert res0.n_iterations == 6 and not res0.converged


def test_script_rule_counts_only_growth_on_uint8_and_uses_net1_max():
    img = _texture((64, 64))
    shrinking = extract(img, _Contracting(), mode="native", scale=1.0, convergence="script")
    assert shrinking.n_iterations == 1 and shrinking.changes[0] == 0.0
    growing = _Contracting(step=lambda x: x + 0.1, start=0.5)
    gen = iter_net2(np.full((32, 32), 0.5, np.float32), growing,
                    ExtractParams(convergence="script", max_iterations=1))
    _, y, change, conv = next(gen)
    # uint8: 128 -> round((128/255 + 0.1) * 255) = 154, growth 26 per pixel; max = 0.5*255
    assert change == pytest.approx(26 / 127.5)
    assert not conv
    assert np.all(np.round(y * 255) == 154)


# ---------------------------------------------------------------------------------------------
# any image size, tiling without seams
# ---------------------------------------------------------------------------------------------


def test_odd_size_keeps_its_shape_in_native_mode(paper_model):
    img = _texture((97, 501), seed=3)
    res = extract(img, paper_model, mode="native", scale=1.0, max_iterations=2)
    assert res.boundaries.shape == (97, 501) and res.boundaries.dtype == bool
    assert res.initial.shape == (97, 501)
    assert res.iterations.shape[1:] == (97, 501)
    assert res.refined.shape == (97, 501)


def test_tiled_equals_untiled_with_the_paper_nets(paper_model):
    pre = preprocess(_texture((272, 400), seed=4), ExtractParams(scale=1.0), scale=1.0)
    edges = compute_edges(pre)
    whole = ExtractParams(scale=1.0)
    tiled = ExtractParams(scale=1.0, tile_size=96, tile_margin=96, max_untiled_pixels=0)
    a = run_net1(edges, paper_model, whole)
    b = run_net1(edges, paper_model, tiled)
    assert a.std() > 0.01  # a real, non-trivial map
    np.testing.assert_allclose(a, b, atol=1e-4)
    _, ya, _, _ = next(iter_net2(a, paper_model, replace_(whole, max_iterations=1)))
    _, yb, _, _ = next(iter_net2(a, paper_model, replace_(tiled, max_iterations=1)))
    np.testing.assert_allclose(ya, yb, atol=1e-4)


def replace_(p: ExtractParams, **kw) -> ExtractParams:
    from dataclasses import replace

    return replace(p, **kw)


def test_2000_by_3000_tiled_equals_untiled(tiny_model):
    # 3000 is not a multiple of 16: padded; a random 0/255 stack stands in for the edges
    # (the edge detectors are tested in test_edges.py) to keep this test quick
    rng = np.random.default_rng(5)
    edges = ((rng.random((2000, 3000, 3)) > 0.9) * 255).astype(np.uint8)
    p = ExtractParams(scale=1.0, max_iterations=1)
    tiled = replace_(p, tile_size=512, max_untiled_pixels=0)
    a = run_net1(edges, tiny_model, p)
    b = run_net1(edges, tiny_model, tiled)
    assert a.shape == (2000, 3000) and a.std() > 1e-3
    np.testing.assert_allclose(a, b, atol=1e-4)
    ya = [y for _, y, _, _ in iter_net2(a, tiny_model, p)]
    yb = [y for _, y, _, _ in iter_net2(a, tiny_model, tiled)]
    assert len(ya) == len(yb) == 1
    np.testing.assert_allclose(ya[-1], yb[-1], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# paper mode
# ---------------------------------------------------------------------------------------------


def test_paper_mode_squeezes_to_96x496_and_returns_the_original_size(paper_model):
    img = _texture((154, 300), seed=6)
    res = extract(img, paper_model, ExtractParams.authors_script(max_iterations=3))
    assert res.preprocessed.shape == (96, 496)
    assert res.edges.rgb.shape == (96, 496, 3)
    assert res.boundaries.shape == (154, 300)
    assert res.params.convergence == "script" and res.params.mode == "paper"


def test_paper_mode_doubles_short_images_first():
    img = _texture((40, 300), seed=7)
    pre = preprocess(img, ExtractParams(mode="paper"))
    assert pre.shape == (96, 496) and pre.original_shape == (40, 300)
    assert pre.image.dtype == np.uint8
    # contrast stretch: 1 % / 99 % -> the working image spans (nearly) the full range
    assert pre.image.min() <= 5 and pre.image.max() >= 250


# ---------------------------------------------------------------------------------------------
# events, results, re-thresholding
# ---------------------------------------------------------------------------------------------


def test_iter_extract_yields_every_stage_and_iteration_at_original_size():
    img = _texture((70, 90))
    gen = iter_extract(img, _Contracting(), ExtractParams(scale=1.0, max_iterations=3,
                                                          tolerance=0.0))
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(e, ExtractEvent) for e in events)
    assert [e.stage for e in events] == ["preprocess", "edges", "initial", "iteration",
                                         "iteration", "iteration", "boundaries"]
    assert [e.iteration for e in events if e.stage == "iteration"] == [1, 2, 3]
    assert all(e.data.shape[:2] == (70, 90) for e in events)
    assert events[1].data.shape == (70, 90, 3) and events[1].data.dtype == np.uint8
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert isinstance(result, ExtractResult)
    assert [e.change for e in events if e.stage == "iteration"] == list(result.changes)


def test_boundaries_at_rethresholds_without_the_nets(paper_model):
    res = extract(_texture((96, 160), seed=8), paper_model, scale=1.0, max_iterations=3)
    assert np.array_equal(res.boundaries_at(res.params.threshold), res.boundaries)
    low = res.boundaries_at(0.05)
    high = res.boundaries_at(0.8)
    assert low.sum() >= res.boundaries.sum() >= high.sum()
    with pytest.raises(GrainsError):
        res.boundaries_at(1.5)


def test_auto_scale_is_resolved_and_recorded(paper_model):
    res = extract(_texture((96, 128), seed=9), paper_model, scale="auto", max_iterations=1)
    assert isinstance(res.params.scale, float)
    assert 0.25 <= res.params.scale <= 4.0
    assert res.preprocessed.scale[0] == pytest.approx(res.params.scale, rel=0.05)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.full((64, 64), 0.5, np.float32), "constant"),
        (np.zeros((0, 10), np.float32), "empty"),
        (np.zeros((4, 32, 32), np.float32), "single 2-D"),
        (np.full((32, 32), np.nan, np.float32), "NaN"),
        (np.ones((4, 4), np.float32), "too small"),
    ],
)
def test_bad_images_raise_the_project_error_with_advice(bad, words):
    with pytest.raises(GrainsError, match=words):
        extract(bad, _Contracting())


def test_bad_parameters_raise_the_project_error():
    img = _texture((64, 64))
    with pytest.raises(GrainsError, match="mode"):
        extract(img, _Contracting(), mode="squeeze")
    with pytest.raises(GrainsError, match="unknown"):
        extract(img, _Contracting(), colour="red")
    with pytest.raises(GrainsError, match="scale"):
        extract(img, _Contracting(), scale=-1.0)
    with pytest.raises(GrainsError, match="convergence"):
        extract(img, _Contracting(), convergence="sometimes")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def test_imresize_keeps_constants_and_means():
    const = np.full((50, 70), 0.3, np.float32)
    np.testing.assert_allclose(imresize(const, (96, 496)), 0.3, atol=1e-6)
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    small = imresize(checker, (16, 16))  # antialiased: the pattern averages out
    np.testing.assert_allclose(small, 0.5, atol=0.05)
    assert imresize(_texture((30, 40)), (61, 83)).shape == (61, 83)


def test_mean_intercept_of_a_grid():
    b = np.zeros((101, 101), bool)
    b[::10, :] = True
    b[:, ::10] = True
    # every test line between grid lines is cut into 9-pixel pieces
    assert mean_intercept(b) == pytest.approx(9.0, rel=0.15)
    assert mean_intercept(np.zeros((10, 10), bool)) == float("inf")


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def test_cli_writes_the_promised_files_and_refuses_to_overwrite(tmp_path, capsys):
    import imageio.v3 as iio
    import tifffile

    from napari_grains.cli import main

    img = (_texture((120, 200), seed=10) * 255).astype(np.uint8)
    src = tmp_path / "sample.png"
    iio.imwrite(src, img)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    other = tmp_path / "notes.txt"
    other.write_text("not an image")
    out = tmp_path / "out"
    args = ["extract", str(src), str(bad), str(other), "--out", str(out), "--model", "paper",
            "--mode", "paper", "--max-iterations", "3", "--quiet"]
    rc = main(args)
    assert rc != 0  # the broken file failed ...
    err = capsys.readouterr().err
    assert "broken.tif" in err and "2 of 3 image(s) failed" in err
    assert "unsupported file type '.txt'" in err  # says what napari-grains reads instead
    b = iio.imread(out / "sample_boundaries.png")  # ... but the good one was written
    assert b.shape == (120, 200) and b.dtype == np.uint8 and set(np.unique(b)) <= {0, 255}
    ov = iio.imread(out / "sample_overlay.png")
    assert ov.shape == (120, 200, 3)
    assert np.all(ov[b == 255] == (255, 0, 0))
    stack = tifffile.imread(out / "sample_iterations.tif")
    assert stack.ndim == 3 and stack.shape[1:] == (120, 200) and 2 <= stack.shape[0] <= 4
    # again: refuses, leaves the files alone; with --overwrite: succeeds
    before = (out / "sample_boundaries.png").stat().st_mtime_ns
    good_only = args[:2] + args[4:]
    assert main(good_only) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "sample_boundaries.png").stat().st_mtime_ns == before
    assert main(good_only + ["--overwrite"]) == 0


def test_auto_scale_follows_the_grain_size(paper_model):
    from napari_grains.extract import estimate_scale
    from napari_grains.synth import SynthParams, generate_pair

    pair = generate_pair(SynthParams(height=256, width=256, mean_diameter=(40.0, 40.0)), seed=200)
    s1 = estimate_scale(pair.image, paper_model)
    s2 = estimate_scale(imresize(pair.image, (512, 512)), paper_model)  # grains twice as big
    assert 1.0 < s1 <= 4.0  # 40 px grains are smaller than the training grains: enlarge
    assert s2 / s1 == pytest.approx(0.5, rel=0.2)


def test_scale_is_lowered_to_keep_the_working_image_bounded():
    img = _texture((64, 64))
    res = extract(img, _Contracting(), scale=4.0, max_working_pixels=128 * 128, max_iterations=1)
    assert res.params.scale == pytest.approx(2.0)
    assert res.preprocessed.shape == (128, 128)
    assert res.boundaries.shape == (64, 64)


def test_keep_iterations_false_keeps_only_the_last_map():
    img = _texture((64, 64))
    full = extract(img, _Contracting(), scale=1.0, max_iterations=5, tolerance=0.0)
    last = extract(img, _Contracting(), scale=1.0, max_iterations=5, tolerance=0.0,
                   keep_iterations=False)
    assert full.iterations.shape[0] == 5 and last.iterations.shape[0] == 1
    assert np.array_equal(last.iterations[0], full.iterations[-1])
    assert last.n_iterations == 5 and len(last.changes) == 5


def test_extract_accepts_a_file_name_and_reports_a_missing_one(tmp_path, paper_model):
    import imageio.v3 as iio

    img = (_texture((96, 160), seed=3) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "m.png", img)
    params = ExtractParams(mode="paper", max_iterations=1)
    from_file = extract(str(tmp_path / "m.png"), paper_model, params)
    from_array = extract(img, paper_model, params)
    np.testing.assert_array_equal(from_file.boundaries, from_array.boundaries)
    with pytest.raises(GrainsError, match="no such file"):
        extract(tmp_path / "missing.png", paper_model, params)


def test_preprocess_caps_the_working_size_for_every_caller():
    """The GUI calls preprocess directly: the working-pixel cap must hold there too."""
    from napari_grains.extract import preprocess

    img = _texture((200, 300), seed=4)
    p = ExtractParams(mode="native", max_working_pixels=120_000)
    pre = preprocess(img, p, scale=4.0)  # would be 800×1200 = 960,000 px uncapped
    assert pre.shape[0] * pre.shape[1] <= 120_000 * 1.01
    assert pre.shape[0] / pre.shape[1] == pytest.approx(200 / 300, rel=0.01)


def test_finalize_prolongs_loose_ends_unless_told_not_to():
    refined = np.zeros((64, 64), np.float32)
    refined[32, :] = 1.0
    refined[:20, 20] = 1.0  # a boundary fading out 12 px before the horizontal one
    pre = Preprocessed(np.zeros((64, 64), np.uint8), (64, 64), (1.0, 1.0), (0.0, 1.0))
    closed = finalize(refined, pre, ExtractParams(closing_radius=0))
    assert closed[20:32, 20].all()
    as_is = finalize(refined, pre, ExtractParams(closing_radius=0, extend_ends=0))
    assert not as_is[21:31, 20].any()
    assert ExtractParams.authors_script().extend_ends == 0
    with pytest.raises(GrainsError, match="extend_ends"):
        ExtractParams(extend_ends=-1).validated()


def test_finalize_splits_a_merged_grain_unless_told_not_to():
    refined = np.zeros((64, 96), np.float32)
    refined[[0, -1], :] = refined[:, [0, -1]] = 1.0
    refined[:24, 48] = refined[40:, 48] = 1.0  # a wall with a 16 px hole: two grains merge
    pre = Preprocessed(np.zeros((64, 96), np.uint8), (64, 96), (1.0, 1.0), (0.0, 1.0))
    # prolonging the ends would close it too; leave that off to see the split alone
    split = finalize(refined, pre, ExtractParams(closing_radius=0, extend_ends=0))
    assert split[24:40, 48].all()
    as_is = finalize(refined, pre, ExtractParams(closing_radius=0, extend_ends=0,
                                                 split_concave=0))
    assert not as_is[25:39, 48].any()
    assert ExtractParams.authors_script().split_concave == 0
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(GrainsError, match="split_concave"):
            ExtractParams(split_concave=bad).validated()


def test_scale_aim_comes_from_the_card_when_measured_for_the_model():
    from types import SimpleNamespace

    from napari_grains.extract import SCALE_AIM, _target_intercept

    trained = {"training": {"mean_intercept_px": 20.0}}
    assert _target_intercept(SimpleNamespace(card=trained)) == pytest.approx(SCALE_AIM * 20)
    tuned = {**trained, "inference": {"scale_aim": 2.0}}
    assert _target_intercept(SimpleNamespace(card=tuned)) == pytest.approx(40.0)
    with pytest.raises(GrainsError, match="scale_aim"):
        _target_intercept(SimpleNamespace(card={**trained, "inference": {"scale_aim": -1}}))
