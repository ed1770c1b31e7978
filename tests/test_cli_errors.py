"""Bad input as users meet it: every command gives one clear error line or a per-image failure.

The project's rule: a corrupt or unsupported file, a 16-bit, float, RGB or 3-D image, an empty or
constant image, a wrong path or a corrupt model gets a clear message and loses nothing. These
tests run the command line in-process (``napari_grains.cli.main``) on tiny images, so each takes
at most a few seconds.
"""

from __future__ import annotations

import json
import re
import shutil

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_grains.cli import main
from napari_grains.errors import GrainsError
from napari_grains.io import read_image
from napari_grains.measure import measure
from napari_grains.nets import MODELS_DIR, load_model

FAST = ["--mode", "paper", "--max-iterations", "1", "--quiet", "--workers", "1"]


def _grid_boundaries(rows: int = 64, cols: int = 96, cell: int = 16) -> np.ndarray:
    """A boundary map of square grains ``cell`` px apart (bright lines on black)."""
    b = np.zeros((rows, cols), np.uint8)
    b[::cell, :] = 255
    b[:, ::cell] = 255
    return b


def _micrograph(rows: int = 48, cols: int = 96) -> np.ndarray:
    """A small gray image with grain-like blocks and soft edges (8-bit)."""
    rng = np.random.default_rng(7)
    levels = rng.uniform(0.2, 0.8, size=(rows // 12 + 1, cols // 12 + 1))
    img = np.kron(levels, np.ones((12, 12)))[:rows, :cols]
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _error_line(capsys, command: str) -> str:
    """The one stderr line a failing command printed; checks there is no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"napari-grains {command}: error: "), lines[0]
    return lines[0]


def _files(folder) -> dict:
    """Every file under ``folder`` with its bytes, to prove nothing changed."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def bad_files(tmp_path):
    """Files a user might hand us by mistake, by name."""
    d = tmp_path / "bad"
    d.mkdir()
    good = _micrograph()
    iio.imwrite(d / "good.png", good)
    (d / "text.png").write_text("this is a text file, not a picture\n")
    (d / "zero.png").write_bytes(b"")
    raw = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(raw[: len(raw) // 2])
    tifffile.imwrite(d / "stack.tif", np.stack([good] * 3))
    tifffile.imwrite(d / "empty.tif", np.zeros((0, 0), np.uint8))
    iio.imwrite(d / "constant.png", np.full((32, 32), 128, np.uint8))
    iio.imwrite(d / "black.png", np.zeros((32, 32), np.uint8))
    (d / "good.png").unlink()  # only the bad ones here
    return d


# --- reading: what works and what is refused, with what message ------------------------------


@pytest.mark.parametrize("kind", ["uint16", "float32_out_of_range", "rgb", "rgba"])
def test_16bit_float_and_colour_files_are_read_as_gray_in_unit_range(tmp_path, kind):
    g = _micrograph().astype(np.float32) / 255
    if kind == "uint16":
        path, arr = tmp_path / "a.tif", (g * 60000).astype(np.uint16)
        tifffile.imwrite(path, arr)
    elif kind == "float32_out_of_range":
        path = tmp_path / "a.tif"
        tifffile.imwrite(path, g * 500 - 100)
    else:
        path = tmp_path / "a.png"
        chans = [g] * 3 + ([np.ones_like(g)] if kind == "rgba" else [])
        iio.imwrite(path, (np.stack(chans, -1) * 255).astype(np.uint8))
    data = read_image(path).data
    assert data.shape == g.shape and data.dtype == np.float32
    assert 0.0 <= data.min() < data.max() <= 1.0
    # the same picture whatever the encoding: correlated with the original gray
    assert np.corrcoef(data.ravel(), g.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("name, words", [
    ("text.png", "not a PNG file"),
    ("zero.png", "empty file"),
    ("truncated.png", "corrupt"),
    ("stack.tif", "single 2-D images"),
    ("empty.tif", "empty"),
])
def test_unreadable_files_raise_one_line_grains_error(bad_files, name, words):
    with pytest.raises(GrainsError, match=words) as info:
        read_image(bad_files / name)
    msg = str(info.value)
    assert "\n" not in msg and name in msg
    assert "pip install" not in msg  # imageio's plugin advice is not what the user needs


def test_api_refuses_nan_boundary_maps_and_absurd_pixel_sizes():
    b = _grid_boundaries() > 0
    with pytest.raises(GrainsError, match="NaN"):
        measure(np.full((16, 16), np.nan))
    with pytest.raises(GrainsError, match="outside what any microscope"):
        measure(b, pixel_size=1e-300, unit="nm")  # areas would underflow to 0
    with pytest.raises(GrainsError, match="check the number and its unit"):
        measure(b, pixel_size=1e5, unit="mm")
    # a large but possible pixel size (1 mm, a low-magnification optical image) works
    h = measure(b, pixel_size=1.0, unit="mm", close_gaps=0).headline()
    assert h["n_grains"] > 0 and np.isfinite(h["G_planimetric"])


def test_tiny_grains_dropped_by_min_area_are_warned_about(tmp_path, capsys):
    # with the default min_area (10 px) the 9-px grains vanish and the rest is mostly
    # boundary: the numbers would describe a tenth of the image, so the user is told
    iio.imwrite(tmp_path / "tiny.png", _grid_boundaries(cell=4))
    args = ["measure", str(tmp_path / "tiny.png"), "--close-gaps", "0"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "warning: tiny.png:" in err and "--min-area" in err
    summary = json.loads((tmp_path / "a" / "tiny" / "tiny_summary.json").read_text())
    assert "min_area" in summary["summary"]["warnings"][0]
    assert main([*args, "--min-area", "1", "--out", str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_tiny_grains_are_measured_when_min_area_allows():
    # 3x3-px grains on a 4-px grid: 16 x 24 cells; inside ones have area 9, ECD sqrt(4 * 9 / pi)
    # (at the border the grid line at row/column 0 separates nothing and joins its grain)
    m = measure(_grid_boundaries(cell=4) > 0, close_gaps=0, min_area=1)
    assert len(m.table) == 16 * 24
    assert set(m.table.loc[~m.table["touches_border"], "area"]) == {9.0}
    assert m.headline()["mean_ecd"] == pytest.approx(np.sqrt(36 / np.pi))
    json.dumps(m.summary)  # JSON-ready even for hundreds of tiny grains


# --- models ----------------------------------------------------------------------------------


def _model_copy(tmp_path, name="m"):
    dst = tmp_path / name
    shutil.copytree(MODELS_DIR / "paper", dst)
    return dst


@pytest.mark.parametrize("damage, words", [
    ("truncate_weights", "sha256 does not match"),
    ("garbage_card", "card.json is corrupt"),
    ("card_not_object", "not a JSON object"),
    ("card_without_nets", "does not describe the nets"),
    ("files_not_object", "'files' entry"),
])
def test_corrupt_model_folders_raise_grains_error(tmp_path, damage, words):
    m = _model_copy(tmp_path)
    card = json.loads((m / "card.json").read_text())
    if damage == "truncate_weights":
        (m / "net1.safetensors").write_bytes((m / "net1.safetensors").read_bytes()[:4000])
    elif damage == "garbage_card":
        (m / "card.json").write_text("{garbage")
    elif damage == "card_not_object":
        (m / "card.json").write_text("[1, 2]")
    elif damage == "card_without_nets":
        (m / "card.json").write_text(json.dumps({"name": "x"}))
    else:
        card["files"] = "x"
        (m / "card.json").write_text(json.dumps(card))
    with pytest.raises(GrainsError, match=words):
        load_model(m)


def test_unusable_device_is_a_grains_error_and_the_model_stays_usable(tmp_path):
    model = load_model("paper")
    for device in ("banana", "cuda:99"):
        with pytest.raises(GrainsError, match="cannot use device"):
            model.to(device)
    assert model.device.type == "cpu"
    assert next(model.net2.parameters()).device.type == "cpu"


def test_load_model_none_is_default_and_other_types_are_refused():
    assert load_model(None).name == load_model("default").name
    with pytest.raises(GrainsError, match="string or a folder path"):
        load_model(3)


# --- napari-grains measure -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text.png", "truncated.png", "stack.tif", "empty.tif",
                                  "constant.png", "missing.png"])
def test_measure_bad_single_input_is_one_error_line_and_writes_nothing(
        bad_files, tmp_path, capsys, name):
    out = tmp_path / "out"
    assert main(["measure", str(bad_files / name), "--out", str(out)]) == 2
    line = _error_line(capsys, "measure")
    assert name in line
    assert not out.exists() or _files(out) == {}


def test_measure_out_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    iio.imwrite(tmp_path / "b.png", _grid_boundaries())
    target = tmp_path / "results"
    target.write_text("my notes")
    assert main(["measure", str(tmp_path / "b.png"), "--out", str(target)]) == 2
    assert "is a file" in _error_line(capsys, "measure")
    assert target.read_text() == "my notes"


def test_measure_refuses_existing_results_without_overwrite_and_keeps_them(tmp_path, capsys):
    iio.imwrite(tmp_path / "b.png", _grid_boundaries())
    args = ["measure", str(tmp_path / "b.png"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    before = _files(tmp_path / "out")
    assert any(str(p).endswith("_summary.json") for p in before)
    capsys.readouterr()
    assert main(args + ["--pixel-size", "2", "--unit", "nm"]) == 2
    assert "--overwrite" in _error_line(capsys, "measure")
    assert _files(tmp_path / "out") == before
    assert main(args + ["--pixel-size", "2", "--unit", "nm", "--overwrite"]) == 0
    summary = json.loads(next((tmp_path / "out").rglob("*_summary.json")).read_text())
    assert summary["pixel_size"] == 2.0


def test_measure_folder_with_corrupt_files_measures_the_rest(bad_files, tmp_path, capsys):
    iio.imwrite(bad_files / "a_good.png", _grid_boundaries())
    out = tmp_path / "out"
    assert main(["measure", str(bad_files), "--out", str(out)]) == 1  # some failed
    err = capsys.readouterr().err
    assert "Traceback" not in err and "skipped text.png" in err
    table = pd.read_csv(out / "summary.csv")
    assert set(table["status"]) == {"done", "failed"}
    done = table[table["status"] == "done"]
    assert list(done["stem"]) == ["a_good"] and done["n_grains"].iloc[0] > 0
    assert table[table["status"] == "failed"]["error"].str.len().min() > 10
    assert (out / "a_good" / "a_good_summary.json").is_file()


@pytest.mark.parametrize("ps", ["0", "-3", "nan", "1e-300"])
def test_measure_rejects_impossible_pixel_sizes(tmp_path, capsys, ps):
    iio.imwrite(tmp_path / "b.png", _grid_boundaries())
    rc = main(["measure", str(tmp_path / "b.png"), "--out", str(tmp_path / "o"),
               "--pixel-size", ps, "--unit", "nm"])
    assert rc == 2
    assert re.search("pixel.size", _error_line(capsys, "measure"))
    assert not (tmp_path / "o").exists() or _files(tmp_path / "o") == {}


# --- napari-grains run / extract -------------------------------------------------------------


def test_run_single_corrupt_image_is_one_error_line(bad_files, tmp_path, capsys):
    rc = main(["run", str(bad_files / "text.png"), "--out", str(tmp_path / "o"), *FAST])
    assert rc == 2
    assert "not a PNG file" in _error_line(capsys, "run")


def test_run_with_corrupt_model_fails_before_any_work(bad_files, tmp_path, capsys):
    m = _model_copy(tmp_path)
    (m / "net2.safetensors").write_bytes(b"\0" * 100)
    iio.imwrite(bad_files / "g.png", _micrograph())
    rc = main(["run", str(bad_files), "--model", str(m), "--out", str(tmp_path / "o"), *FAST])
    assert rc == 2
    assert "net2.safetensors is corrupt" in _error_line(capsys, "run")
    assert not (tmp_path / "o").exists()


def test_run_folder_mix_finishes_the_good_images(bad_files, tmp_path, capsys):
    iio.imwrite(bad_files / "g.png", _micrograph())
    out = tmp_path / "o"
    assert main(["run", str(bad_files), "--out", str(out), *FAST]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 8
    assert list(table.loc[table["status"] == "done", "stem"]) == ["g"]
    assert (table["status"] == "failed").sum() == 7
    assert (out / "g" / "g_summary.json").is_file() and (out / "g" / "g_boundaries.png").is_file()
    # each failure is listed once on stderr, starting with the file's name
    for name in ["text.png", "zero.png", "truncated.png", "stack.tif", "constant.png"]:
        assert captured.err.count(f"FAILED {name}") == 1, captured.err


def test_run_refuses_out_that_is_a_file_or_holds_results(tmp_path, capsys):
    iio.imwrite(tmp_path / "g.png", _micrograph())
    f = tmp_path / "file"
    f.write_text("keep")
    assert main(["run", str(tmp_path / "g.png"), "--out", str(f), *FAST]) == 2
    assert "is a file" in _error_line(capsys, "run")
    assert f.read_text() == "keep"
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.csv").write_text("earlier results\n")
    assert main(["run", str(tmp_path / "g.png"), "--out", str(out), *FAST]) == 2
    assert "--overwrite" in _error_line(capsys, "run")
    assert _files(out) == {out.relative_to(out) / "summary.csv": b"earlier results\n"}
    assert main(["run", "--demo", "--out", str(f), "--quiet"]) == 2
    assert "is a file" in _error_line(capsys, "run")


@pytest.mark.parametrize("option", [["--bins", "0"], ["--bin-edges", "3,2,1"],
                                    ["--log-bins", "--bin-edges", "0,1,2"]])
def test_bad_histogram_options_fail_before_any_image_is_processed(tmp_path, capsys, option):
    iio.imwrite(tmp_path / "g.png", _micrograph())
    rc = main(["run", str(tmp_path / "g.png"), "--out", str(tmp_path / "o"), *FAST, *option])
    assert rc == 2
    assert "histogram bin" in _error_line(capsys, "run")
    assert not (tmp_path / "o").exists()


def test_odd_size_image_keeps_its_shape_through_run(tmp_path, capsys):
    rng = np.random.default_rng(3)
    img = (rng.random((97, 501)) * 40 + _micrograph(97, 501) * 0.8).astype(np.uint8)
    iio.imwrite(tmp_path / "odd.png", img)
    out = tmp_path / "o"
    assert main(["run", str(tmp_path / "odd.png"), "--out", str(out), *FAST]) == 0
    labels = tifffile.imread(out / "odd" / "odd_labels.tif")
    assert labels.shape == (97, 501)
    assert iio.imread(out / "odd" / "odd_boundaries.png").shape == (97, 501)


@pytest.mark.parametrize("command", ["run", "extract"])
def test_missing_path_is_one_error_line(tmp_path, capsys, command):
    rc = main([command, str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o"),
               "--mode", "paper"])
    assert rc == 2
    assert "no such file" in _error_line(capsys, command)


# --- synth, evaluate, train ------------------------------------------------------------------


def test_synth_refuses_a_file_as_out_and_an_existing_data_set(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep")
    assert main(["synth", "--count", "1", "--size", "32", "48", "--out", str(f), "--quiet"]) == 2
    assert "is a file" in _error_line(capsys, "synth")
    assert f.read_text() == "keep"
    d = tmp_path / "pairs"
    assert main(["synth", "--count", "1", "--size", "32", "48", "--out", str(d), "--quiet",
                 "--workers", "1"]) == 0
    before = _files(d)
    capsys.readouterr()
    assert main(["synth", "--count", "1", "--size", "32", "48", "--seed", "5", "--out", str(d),
                 "--quiet", "--workers", "1"]) == 2
    assert "already holds a data set" in _error_line(capsys, "synth")
    assert _files(d) == before


def test_evaluate_missing_data_and_file_out_are_one_error_line(tmp_path, capsys):
    assert main(["evaluate", "--model", "paper", "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no such data folder" in _error_line(capsys, "evaluate")


def test_train_help_works(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    assert "usage: napari-grains train" in capsys.readouterr().out


EXTRACT_FAST = FAST[:-2]  # extract has no --workers


def test_extract_refuses_a_file_as_out_and_survives_an_unexpected_error(tmp_path, capsys,
                                                                         monkeypatch):
    iio.imwrite(tmp_path / "g.png", _micrograph())
    iio.imwrite(tmp_path / "h.png", _micrograph())
    f = tmp_path / "file"
    f.write_text("keep")
    assert main(["extract", str(tmp_path / "g.png"), "--out", str(f), *EXTRACT_FAST]) == 2
    assert "is a file" in _error_line(capsys, "extract")
    assert f.read_text() == "keep"

    import napari_grains.extract as core_extract

    real = core_extract.extract

    def flaky(mg, *a, **k):  # a bug hitting one image must not end the batch
        if mg.path.name == "g.png":
            raise RuntimeError("boom")
        return real(mg, *a, **k)

    monkeypatch.setattr(core_extract, "extract", flaky)
    out = tmp_path / "o"
    assert main(["extract", str(tmp_path / "g.png"), str(tmp_path / "h.png"), "--out", str(out),
                 *EXTRACT_FAST]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected RuntimeError: boom" in err
    assert (out / "h_boundaries.png").is_file() and not (out / "g_boundaries.png").exists()


@pytest.mark.parametrize("params", ['{"realism": [1, 2]}', '{"config": 5}',
                                    '{"realism": {"twins": "lots"}}'])
def test_synth_bad_params_file_is_one_error_line(tmp_path, capsys, params):
    f = tmp_path / "p.json"
    f.write_text(params)
    rc = main(["synth", "--count", "1", "--size", "32", "48", "--params", str(f),
               "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    assert "p.json" in (line := _error_line(capsys, "synth")) or "wrong type" in line
    assert not (tmp_path / "o").exists()


def test_extract_names_same_stem_inputs_apart_like_run(tmp_path, capsys):
    iio.imwrite(tmp_path / "a.png", _micrograph())
    tifffile.imwrite(tmp_path / "a.tif", _micrograph())
    out = tmp_path / "o"
    assert main(["extract", str(tmp_path / "a.png"), str(tmp_path / "a.tif"), "--out", str(out),
                 *EXTRACT_FAST]) == 0
    assert (out / "a_boundaries.png").is_file() and (out / "a-2_boundaries.png").is_file()


def test_extend_ends_and_split_options_reach_the_pipeline_and_are_checked(tmp_path, capsys,
                                                                         monkeypatch):
    iio.imwrite(tmp_path / "g.png", _micrograph())
    assert main(["extract", str(tmp_path / "g.png"), "--out", str(tmp_path / "o"),
                 "--extend-ends", "-1", *EXTRACT_FAST]) == 2
    assert "extend_ends" in _error_line(capsys, "extract")
    assert main(["extract", str(tmp_path / "g.png"), "--out", str(tmp_path / "o"),
                 "--split-concave", "2", *EXTRACT_FAST]) == 2
    assert "split_concave" in _error_line(capsys, "extract")

    import napari_grains.extract as core_extract

    seen = []
    real = core_extract.extract

    def spy(mg, model, params, *a, **k):
        seen.append((params.extend_ends, params.split_concave))
        return real(mg, model, params, *a, **k)

    monkeypatch.setattr(core_extract, "extract", spy)
    default = (core_extract.ExtractParams.extend_ends, core_extract.ExtractParams.split_concave)
    for extra, want in ([], default), (["--extend-ends", "0"], (0.0, default[1])), (
            ["--split-concave", "0.2"], (default[0], 0.2)), (
            ["--mode", "paper", "--convergence", "script"], (0.0, 0.0)):
        out = tmp_path / f"o{len(seen)}"
        assert main(["extract", str(tmp_path / "g.png"), "--out", str(out), *extra,
                     *EXTRACT_FAST]) == 0
        assert seen[-1] == want


def test_colour_image_gets_a_note_from_extract_and_run(tmp_path, capsys):
    import json

    g = _micrograph()
    colour = np.stack([g, g // 2, 255 - g], axis=-1).astype(np.uint8)
    iio.imwrite(tmp_path / "tint.png", colour)
    assert main(["extract", str(tmp_path / "tint.png"), "--out", str(tmp_path / "e"),
                 *EXTRACT_FAST]) == 0
    assert "note: tint.png is a colour image" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "tint.png"), "--out", str(tmp_path / "r"), *FAST]) == 0
    out = capsys.readouterr()
    assert "tint.png is a colour image" in out.out + out.err
    summary = json.loads(next((tmp_path / "r").rglob("*_summary.json")).read_text())
    assert any("colour image" in w for w in summary["summary"]["warnings"])
