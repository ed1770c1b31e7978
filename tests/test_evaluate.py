"""Metrics on hand-made cases, the folder evaluator and the ``evaluate`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from napari_grains.cli import main
from napari_grains.errors import GrainsError
from napari_grains.evaluate import (
    adjusted_rand_index,
    boundary_prf,
    eq1_accuracy,
    evaluate,
    find_pairs,
    grain_labels,
    score_boundaries,
    score_iterations,
    thin,
    threshold_and_close,
    variation_of_information,
)
from napari_grains.io import write_image


def grid(shape=(64, 96), step=16, offset=8) -> np.ndarray:
    """A 1-px grid of boundaries: rectangular grains, a clean hand-made ground truth."""
    b = np.zeros(shape, bool)
    b[offset::step, :] = True
    b[:, offset::step] = True
    return b


# ---- boundary precision / recall / F1 -----------------------------------------------------


def test_perfect_prediction_scores_one_everywhere():
    gt = grid()
    s = score_boundaries(gt.copy(), gt, tolerance=2)
    assert s.boundary.precision == s.boundary.recall == s.boundary.f1 == 1.0
    assert s.eq1_accuracy == 100.0
    assert s.vi == pytest.approx(0.0, abs=1e-12)
    assert s.ari == pytest.approx(1.0)
    assert s.n_grains_pred == s.n_grains_gt == 5 * 7  # 4 row lines x 6 column lines
    assert s.grain_count_error == 0.0 and s.mean_size_error == 0.0


def test_shift_by_one_pixel_is_forgiven_only_within_tolerance():
    gt = np.zeros((40, 40), bool)
    gt[:, 20] = True
    pred = np.zeros_like(gt)
    pred[:, 21] = True
    exact = boundary_prf(pred, gt, tolerance=0)
    assert (exact.precision, exact.recall, exact.f1) == (0.0, 0.0, 0.0)
    loose = boundary_prf(pred, gt, tolerance=1)
    assert (loose.precision, loose.recall, loose.f1) == (1.0, 1.0, 1.0)
    assert eq1_accuracy(pred, gt, tolerance=0) == 0.0
    assert eq1_accuracy(pred, gt, tolerance=1) == 100.0
    # a diagonal step of (1, 1) is sqrt(2) px away: outside 1 px, inside 1.5 px
    dot, moved = np.zeros((9, 9), bool), np.zeros((9, 9), bool)
    dot[4, 4], moved[5, 5] = True, True
    assert boundary_prf(moved, dot, tolerance=1.0).precision == 0.0
    assert boundary_prf(moved, dot, tolerance=1.5).precision == 1.0


def test_shift_changes_grain_labels_only_slightly():
    gt = np.zeros((40, 40), bool)
    gt[:, 20] = True
    s = score_boundaries(np.roll(gt, 1, axis=1), gt, tolerance=1)
    assert s.n_grains_pred == s.n_grains_gt == 2
    assert 0.9 < s.ari < 1.0
    assert 0.0 < s.vi < 0.4


def test_empty_prediction_scores_zero():
    gt = grid()
    pred = np.zeros_like(gt)
    s = score_boundaries(pred, gt)
    assert (s.boundary.precision, s.boundary.recall, s.boundary.f1) == (0.0, 0.0, 0.0)
    assert s.eq1_accuracy == 0.0
    assert s.n_grains_pred == 1
    assert s.ari == pytest.approx(0.0, abs=1e-12)  # one grain vs many: exactly chance
    assert s.vi_split == pytest.approx(0.0, abs=1e-12)  # nothing cut ...
    # ... everything merged: H(gt) bits, at most log2(35) = 5.13 for 35 grains
    assert 4.5 < s.vi_merge <= math.log2(35)
    assert s.grain_count_error == pytest.approx((1 - 35) / 35)


def test_empty_ground_truth_conventions():
    empty = np.zeros((20, 20), bool)
    both = boundary_prf(empty, empty)
    assert (both.precision, both.recall, both.f1) == (1.0, 1.0, 1.0)
    extra = empty.copy()
    extra[10, :] = True
    s = boundary_prf(extra, empty)
    assert (s.precision, s.recall, s.f1) == (0.0, 1.0, 0.0)
    assert eq1_accuracy(extra, empty) == 100.0


def test_thick_prediction_is_thinned_before_matching():
    gt = grid()
    thick = gt | np.roll(gt, 1, axis=0) | np.roll(gt, -1, axis=0)
    thick |= np.roll(thick, 1, axis=1) | np.roll(thick, -1, axis=1)
    s = boundary_prf(thick, gt, tolerance=2)  # (thinning shortens lines at the border by 1 px)
    assert s.f1 == 1.0
    assert s.n_pred <= s.n_gt * 1.05  # one skeleton pixel per boundary pixel, not three
    assert thin(thick).sum() == s.n_pred


def test_half_found_and_spurious_lines():
    gt = np.zeros((40, 40), bool)
    gt[20, :] = True
    half = gt.copy()
    half[20, 20:] = False
    assert eq1_accuracy(half, gt, tolerance=0) == pytest.approx(50.0)
    s = boundary_prf(half, gt, tolerance=0)
    assert s.precision == 1.0 and s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(2 * 0.5 / 1.5)
    spurious = gt.copy()
    spurious[5, :] = True  # a second, wrong line of the same length
    s = boundary_prf(spurious, gt, tolerance=2)
    assert s.recall == 1.0 and s.precision == pytest.approx(0.5)
    assert eq1_accuracy(spurious, gt, tolerance=2) == 100.0  # Eq. 1 ignores extra lines


def test_bad_inputs_raise_grains_error():
    gt = grid()
    with pytest.raises(GrainsError, match="same size"):
        boundary_prf(gt[:, :-1], gt)
    with pytest.raises(GrainsError, match="tolerance"):
        boundary_prf(gt, gt, tolerance=-1)
    with pytest.raises(GrainsError, match="2-D"):
        boundary_prf(np.zeros((2, 8, 8), bool), gt)


# ---- grain labelings ----------------------------------------------------------------------


def test_grains_are_four_connected():
    b = np.zeros((10, 10), bool)
    b[np.arange(10), 9 - np.arange(10)] = True  # an 8-connected anti-diagonal line
    raw = grain_labels(b, min_grain_area=1, fill_boundaries=False)
    assert raw.max() == 2  # 4-connectivity: the diagonal line separates two grains
    assert (raw[b] == 0).all()
    filled = grain_labels(b, min_grain_area=1)
    assert filled.min() >= 1 and set(np.unique(filled)) == {1, 2}
    assert filled.dtype == np.int32


def test_small_specks_are_dropped_and_absorbed():
    b = grid((32, 32), step=16, offset=8)
    b[1:4, 1:4] = True
    b[2, 2] = False  # a 1-px "grain" inside a speck of boundary
    labels = grain_labels(b, min_grain_area=4, fill_boundaries=False)
    assert labels[2, 2] == 0
    assert grain_labels(b, min_grain_area=1, fill_boundaries=False).max() == 10
    assert labels.max() == 9  # lines at 8 and 24: 3 x 3 grains


def test_ari_matches_known_value():
    # classic example (Hubert & Arabie ARI of these two labelings is 8/33)
    truth = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(pred, truth) == pytest.approx(8 / 33)
    assert adjusted_rand_index(truth, truth) == 1.0
    assert adjusted_rand_index(truth + 5, truth) == 1.0  # label values do not matter
    single = np.zeros(6, int)
    assert adjusted_rand_index(single, single) == 1.0


def test_vi_split_and_merge_in_bits():
    gt = np.array([0, 0, 0, 0])
    halves = np.array([0, 0, 1, 1])
    split, merge = variation_of_information(halves, gt)
    assert split == pytest.approx(1.0) and merge == pytest.approx(0.0)
    split, merge = variation_of_information(gt, halves)
    assert split == pytest.approx(0.0) and merge == pytest.approx(1.0)
    quarters = np.array([0, 1, 2, 3])
    assert sum(variation_of_information(quarters, halves)) == pytest.approx(1.0)


def test_vi_agrees_with_scikit_image():
    from skimage.metrics import variation_of_information as sk_vi

    rng = np.random.default_rng(3)
    a = rng.integers(1, 6, size=(30, 30))
    b = rng.integers(1, 4, size=(30, 30))
    ours = sum(variation_of_information(a, b))
    theirs = float(np.sum(sk_vi(a, b)))  # scikit-image also reports bits
    assert ours == pytest.approx(theirs, rel=1e-9)


# ---- Net2 iteration stacks ----------------------------------------------------------------


def test_score_iterations_tracks_each_map():
    gt = grid()
    half = gt.copy()
    half[:, : gt.shape[1] // 2] = False
    stack = np.stack([np.zeros(gt.shape, np.float32), half * 0.9, gt * 0.8]).astype(np.float32)
    s = score_iterations(stack, gt, tolerance=1, threshold=0.2)
    assert s.f1.shape == (3,)
    assert s.f1[0] == 0.0 and 0.0 < s.f1[1] < 1.0 and s.f1[2] == 1.0
    assert s.eq1_accuracy[2] == 100.0
    # ExtractResult.iterations are uint8 0..255: same scores
    u8 = score_iterations(np.round(stack * 255).astype(np.uint8), gt, tolerance=1)
    np.testing.assert_array_equal(u8.f1, s.f1)
    # maps at another size (network resolution) are resized to the ground truth
    small = np.kron(np.ones((1, 1)), gt.astype(np.float32))[::2, ::2]
    assert score_iterations([small], gt, tolerance=2).recall[0] > 0.8
    # a custom binarizer replaces the threshold
    inv = score_iterations(stack[2:], gt, binarize=lambda p: p < 0.2)
    assert inv.precision[0] < 0.5


def test_threshold_and_close_bridges_small_gaps():
    prob = np.zeros((20, 40), np.float32)
    prob[9:12, :] = 0.9  # a 3-px thick boundary, as Net2 draws them
    prob[:, 19:21] = 0.0  # a 2-px gap
    assert not threshold_and_close(0.2)(prob)[10, 19]
    closed = threshold_and_close(0.2, closing_radius=2)(prob)
    assert closed[10].all()  # the gap is bridged: one boundary again
    assert not closed[:9].any() and not closed[12:].any()  # nothing thickened


# ---- folders and the command ---------------------------------------------------------------


def _make_set(root, n=3, shape=(48, 64), dark_gt=False):
    rng = np.random.default_rng(0)
    gt_dir = "ground_truth" if dark_gt else "targets"  # tracings go in ground_truth/
    for sub in ("images", gt_dir):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        gt = grid(shape, step=16, offset=4 + i)
        img = (rng.random(shape) * 255).astype(np.uint8)
        write_image(root / "images" / f"{i:05d}.png", img)
        t = np.where(gt, 255, 0).astype(np.uint8)
        write_image(root / gt_dir / f"{i:05d}.png", 255 - t if dark_gt else t)
    return root


def test_find_pairs_matches_by_stem_and_finds_sets(tmp_path):
    bench = tmp_path / "bench"
    _make_set(bench / "a", n=2)
    _make_set(bench / "b", n=3)
    (bench / "a" / "images" / "00001.png").unlink()  # no image -> skipped with a model
    pairs = find_pairs(bench)
    assert [(p.set, p.name) for p in pairs] == [("a", "00000"), ("b", "00000"), ("b", "00001"),
                                                ("b", "00002")]
    assert len(find_pairs(bench / "b")) == 3
    with pytest.raises(GrainsError, match="ground truth"):
        find_pairs(tmp_path / "bench" / "a" / "images")


def test_evaluate_boundaries_folder_writes_csv_and_json(tmp_path):
    data = _make_set(tmp_path / "traced", n=3, dark_gt=True)  # traced dark-on-light
    preds = tmp_path / "preds"
    preds.mkdir()
    for i in range(3):
        gt = grid((48, 64), step=16, offset=4 + i)
        pred = gt if i < 2 else np.zeros_like(gt)  # two perfect, one empty
        write_image(preds / f"{i:05d}.png", np.where(pred, 255, 0).astype(np.uint8))
    res = evaluate(data, boundaries=preds, tolerance=2)
    assert list(res.table["f1"]) == [1.0, 1.0, 0.0]
    assert res.summary["overall"]["f1"] == pytest.approx(2 / 3)
    assert res.summary["sets"]["traced"]["n_images"] == 3
    csv_path, json_path = res.write(tmp_path / "out")
    back = pd.read_csv(csv_path)
    assert list(back["name"].astype(str).str.zfill(5)) == ["00000", "00001", "00002"]
    summary = json.loads(json_path.read_text())
    assert summary["settings"]["tolerance"] == 2.0
    assert summary["overall"]["eq1_accuracy"] == pytest.approx(200 / 3)
    assert "F1" in res.format_table()


def test_evaluate_refuses_mismatched_sizes(tmp_path):
    data = _make_set(tmp_path / "d", n=1)
    preds = tmp_path / "p"
    preds.mkdir()
    write_image(preds / "00000.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(GrainsError, match="must match"):
        evaluate(data, boundaries=preds)
    with pytest.raises(GrainsError, match="either a model"):
        evaluate(data)


def test_cli_evaluate_boundaries(tmp_path, capsys):
    data = _make_set(tmp_path / "d", n=2)
    out = tmp_path / "out"
    rc = main(["evaluate", "--boundaries", str(data / "targets"), "--data", str(data),
               "--out", str(out), "--quiet"])
    # scoring the ground truth against itself is refused: it is always a mistake
    assert rc == 2
    assert "ground truth itself" in capsys.readouterr().err
    preds = tmp_path / "copy"
    preds.mkdir()
    for p in (data / "targets").iterdir():
        (preds / p.name).write_bytes(p.read_bytes())
    rc = main(["evaluate", "--boundaries", str(preds), "--data", str(data), "--out", str(out),
               "--quiet", "--tolerance", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "1.000" in text and "metrics.json" in text
    assert json.loads((out / "metrics.json").read_text())["overall"]["f1"] == 1.0
    rc = main(["evaluate", "--data", str(data)])
    assert rc == 2
    assert "--model" in capsys.readouterr().err


# ---- the benchmark sets --------------------------------------------------------------------


def test_benchmark_is_regenerated_identically_from_seeds(tmp_path):
    from napari_grains import benchdata

    a = benchdata.make_benchmark(tmp_path / "a", sets=["paper96", "large-large"], n_images=2)
    b = benchdata.make_benchmark(tmp_path / "b", sets=["paper96"], n_images=2)
    assert set(a) == {"paper96", "large-large"}
    info = json.loads((tmp_path / "a" / "benchmark.json").read_text())
    fp = info["sets"]["paper96"]["fingerprint"]
    assert fp == benchdata.fingerprint(b["paper96"])  # same seeds -> same ground truth
    assert fp != info["sets"]["large-large"]["fingerprint"]
    assert info["sets"]["paper96"]["official"] is False  # 2 of 100 images
    assert info["sets"]["paper96"]["seed"] >= benchdata.SEED_BASE
    pairs = find_pairs(tmp_path / "a")
    assert [(p.set, p.name) for p in pairs] == [("large-large", "00000"), ("large-large", "00001"),
                                                ("paper96", "00000"), ("paper96", "00001")]
    from napari_grains.io import read_image

    assert read_image(pairs[0].image).data.shape == (512, 512)
    assert read_image(pairs[2].image).data.shape == (96, 496)
    with pytest.raises(GrainsError, match="overwrite"):
        benchdata.make_benchmark(tmp_path / "b", sets=["paper96"], n_images=2)
    with pytest.raises(GrainsError, match="unknown benchmark set"):
        benchdata.make_benchmark(tmp_path / "c", sets=["nope"])


def test_cli_make_benchmark_then_score_its_ground_truth(tmp_path, capsys):
    bench = tmp_path / "bench"
    rc = main(["evaluate", "--make-benchmark", str(bench), "--sets", "large-large", "--n", "1",
               "--quiet"])
    assert rc == 0
    assert "large-large" in capsys.readouterr().out
    # a copy of the (2-px thick) targets as predictions scores perfectly at 0 px
    preds = tmp_path / "preds" / "large-large"
    preds.mkdir(parents=True)
    for p in (bench / "large-large" / "targets").iterdir():
        (preds / p.name).write_bytes(p.read_bytes())
    res = evaluate(bench, boundaries=tmp_path / "preds", tolerance=0)
    row = res.table.iloc[0]
    assert (row["f1"], row["eq1_accuracy"], row["ari"], row["vi"]) == (1.0, 100.0, 1.0, 0.0)
    assert res.summary["settings"]["benchmark_version"] == "1"
    assert res.summary["settings"]["benchmark_official"] is False  # made with --n 1


# ---- with a model (the shipped paper weights) ----------------------------------------------


@pytest.mark.slow
def test_evaluate_runs_a_model_and_times_it(tmp_path):
    from napari_grains import benchdata

    bench = tmp_path / "bench"
    benchdata.make_benchmark(bench, sets=["paper96"], n_images=1)
    res = evaluate(bench, model="paper", mode="paper", max_iterations=2)
    row = res.table.iloc[0]
    assert row["seconds"] > 0
    assert row["n_iterations"] == 2  # the override reached the pipeline
    assert 0.0 <= row["precision"] <= 1.0 and 0.0 < row["recall"] <= 1.0
    assert res.summary["settings"]["model"] == "paper"
    assert res.summary["settings"]["mode"] == "paper"
    # every extraction setting is recorded, defaults included (the model card reads them)
    ran = res.summary["settings"]["extraction"]
    assert ran["mode"] == "paper" and ran["max_iterations"] == 2
    from napari_grains.extract import ExtractParams

    assert ran["split_concave"] == ExtractParams().split_concave
    assert ran["percentiles"] == list(ExtractParams().percentiles)
    json.dumps(res.summary)  # JSON-ready


def test_net2_fixed_point_scores_every_iteration():
    from napari_grains.evaluate import net2_fixed_point

    gt = grid((96, 160), step=24, offset=12)
    s = net2_fixed_point("paper", gt, n_iterations=3)
    assert s.f1.shape == (3,)
    assert np.all((s.f1 >= 0) & (s.f1 <= 1))
    assert s.f1[0] > 0.3  # one pass of the paper's Net2 keeps most of a clean map
    with pytest.raises(GrainsError, match="n_iterations"):
        net2_fixed_point("paper", gt, n_iterations=0)


def test_summary_means_per_set_and_overall():
    from napari_grains.evaluate import METRIC_COLUMNS, format_summary, summarize

    rows = []
    for set_name, f1s in (("a", [1.0, 0.5]), ("b", [0.0])):
        for i, f1 in enumerate(f1s):
            row = dict.fromkeys(METRIC_COLUMNS, 0.0)
            row.update(set=set_name, name=str(i), f1=f1, grain_count_error=-0.5 * (i + 1),
                       seconds=float("nan"))
            rows.append(row)
    summary = summarize(pd.DataFrame(rows), tolerance=2.0)
    assert summary["sets"]["a"]["f1"] == 0.75 and summary["sets"]["a"]["n_images"] == 2
    assert summary["overall"]["f1"] == pytest.approx(0.5)
    assert summary["sets"]["a"]["abs_grain_count_error"] == pytest.approx(0.75)  # |-0.5|, |-1|
    lines = format_summary(summary).splitlines()
    assert lines[0] == "tolerance=2.0"
    assert [ln.split()[0] for ln in lines[3:]] == ["a", "b", "all"]
    assert lines[3].split()[-1] == "-"  # seconds unknown, shown as '-'


def test_boundary_polarity_is_not_guessed_from_pixel_counts(tmp_path):
    from napari_grains.evaluate import read_boundary_map

    # grains of 3 px between 2-px boundaries: boundaries are most of the image
    b = np.zeros((40, 40), bool)
    b[np.arange(40) % 5 < 2, :] = True
    b[:, np.arange(40) % 5 < 2] = True
    assert b.mean() > 0.5
    write_image(tmp_path / "bright.png", np.where(b, 255, 0).astype(np.uint8))
    write_image(tmp_path / "dark.png", np.where(b, 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(read_boundary_map(tmp_path / "bright.png"), b)
    np.testing.assert_array_equal(read_boundary_map(tmp_path / "bright.png", "auto"), b)
    np.testing.assert_array_equal(read_boundary_map(tmp_path / "dark.png", "auto"), b)
    np.testing.assert_array_equal(read_boundary_map(tmp_path / "dark.png", "dark"), b)
    with pytest.raises(GrainsError, match="polarity"):
        read_boundary_map(tmp_path / "dark.png", "inverted")
    # a synthetic targets/ folder is read as drawn (bright), whatever the pixel counts
    (tmp_path / "set" / "targets").mkdir(parents=True)
    write_image(tmp_path / "set" / "targets" / "a.png", np.where(b, 255, 0).astype(np.uint8))
    (tmp_path / "set" / "images").mkdir()
    write_image(tmp_path / "set" / "images" / "a.png", np.zeros((40, 40), np.uint8))
    res = evaluate(tmp_path / "set", boundaries=_copy(tmp_path / "set" / "targets", tmp_path / "p"))
    assert res.table.iloc[0]["f1"] == 1.0


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_cli_evaluate_skips_a_corrupt_map_and_never_clobbers_results(tmp_path, capsys):
    data = _make_set(tmp_path / "d", n=2)
    preds = tmp_path / "maps"
    preds.mkdir()
    (preds / "00000.png").write_bytes((data / "targets" / "00000.png").read_bytes())
    (preds / "00001.png").write_bytes(b"not a png")  # corrupt: reported, the other is scored
    out = tmp_path / "out"
    args = ["evaluate", "--boundaries", str(preds), "--data", str(data), "--out", str(out),
            "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "FAILED d/00001" in captured.err and "Traceback" not in captured.err
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == 1 and table["f1"].iloc[0] == 1.0
    summary = json.loads((out / "metrics.json").read_text())
    assert [f["name"] for f in summary["failed"]] == ["00001"]
    before = (out / "metrics.csv").read_bytes()
    assert main(args) == 2  # earlier results: refused before any work, left as they were
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.csv").read_bytes() == before
    assert main([*args, "--overwrite"]) == 1
    (tmp_path / "afile").write_text("keep")
    assert main([*args[:-3], "--out", str(tmp_path / "afile"), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_grain_scores_close_gaps_like_measure():
    gt = grid((64, 64), step=32, offset=16)
    pred = gt.copy()
    pred[16, 40:42] = False  # a 2-px gap: two grains merge unless closed
    open_ = score_boundaries(pred, gt, close_gaps=0)
    closed = score_boundaries(pred, gt)  # default: closed as measure closes (3 px)
    assert open_.n_grains_pred == closed.n_grains_gt - 1
    assert closed.n_grains_pred == closed.n_grains_gt and closed.ari == pytest.approx(1.0)
    # boundary scores use the map as predicted
    assert closed.eq1_accuracy == open_.eq1_accuracy
    assert closed.boundary == open_.boundary
    with pytest.raises(GrainsError):
        grain_labels(pred, close_gaps=-1)


def test_net2_fixed_point_gives_a_conditioned_net2_the_net1_map_not_the_truth():
    from napari_grains.evaluate import net2_fixed_point

    class Spy:  # a conditioned Net2 that keeps its state and records the condition
        net2_channels = 2
        multiple = 16

        def __init__(self):
            self.cond = []

        def refine(self, x):
            self.cond.append(x[0, 1].clone())
            return x[:, :1]

    gt = np.zeros((32, 48), bool)
    gt[16, :] = True
    net1 = np.full(gt.shape, 0.25, np.float32)
    spy = Spy()
    s = net2_fixed_point(spy, gt, n_iterations=2, initial=net1)
    assert len(spy.cond) == 2 and all(float(c[:32, :48].max()) == 0.25 for c in spy.cond)
    assert s.f1[-1] == 1.0  # the state (the truth) kept
    spy = Spy()
    net2_fixed_point(spy, gt, n_iterations=1)  # no Net1 map given: the truth stands in
    assert float(spy.cond[0][16, 5]) == 1.0
    with pytest.raises(GrainsError, match="shape"):
        net2_fixed_point(Spy(), gt, n_iterations=1, initial=net1[:10])
