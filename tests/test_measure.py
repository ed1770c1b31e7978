"""Measurement results: exports, atomic writes, the synthetic sample, the measure command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile
from _grain_shapes import square_grid

from napari_grains.cli import main
from napari_grains.errors import GrainsError
from napari_grains.measure import EXPORT_NAMES, MeasureParams, measure, measure_labels, provenance

DATA = Path(__file__).resolve().parents[1] / "napari_grains" / "data"


@pytest.fixture(scope="module")
def grid_measurement():
    b = square_grid(6, 12)
    image = np.where(b, 0.2, 0.8).astype(np.float32)
    return measure(b, pixel_size=2.0, unit="nm", image=image, close_gaps=0)


def test_measure_carries_units_and_pins_ecd(grid_measurement):
    m = grid_measurement
    t = m.table
    assert m.n_grains == 36
    assert np.allclose(t["equivalent_diameter"], 2 * np.sqrt(t["area"] / math.pi))
    assert np.allclose(t["equivalent_diameter_nm"], 2 * t["equivalent_diameter"])
    d, unit = m.diameters()
    assert unit == "nm"
    assert np.allclose(d, 2 * 2 * math.sqrt(121 / math.pi))  # inner cells only by default
    h = m.headline()
    assert h["unit"] == "nm" and h["n_grains"] == 36
    assert h["G_planimetric"] == pytest.approx(m.summary["astm_e112"]["planimetric"]["G"])


def test_csv_round_trip_equals_the_table(grid_measurement, tmp_path):
    p = grid_measurement.to_csv(tmp_path / "g.csv")
    back = pd.read_csv(p)
    pd.testing.assert_frame_equal(back, grid_measurement.table, check_dtype=False)


def test_json_has_summary_parameters_and_provenance(grid_measurement, tmp_path):
    src = tmp_path / "b.png"
    iio.imwrite(src, square_grid(2, 10).astype(np.uint8) * 255)
    prov = provenance(input_path=src, model={"name": "paper", "sha256": {"net1": "ab"}},
                      parameters={"measure": MeasureParams().to_dict()})
    m = measure_labels(grid_measurement.labels, pixel_size=2.0, unit="nm", provenance=prov)
    d = json.loads(m.to_json(tmp_path / "s.json").read_text(encoding="utf-8"))
    assert d["summary"]["n_grains"] == 36
    assert d["unit"] == "nm" and d["pixel_size"] == 2.0
    assert d["parameters"]["close_gaps"] == MeasureParams().close_gaps
    import hashlib

    assert d["provenance"]["input"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert d["provenance"]["model"]["name"] == "paper"
    assert d["provenance"]["versions"]["numpy"] == np.__version__
    assert d["provenance"]["parameters"]["measure"]["min_area"] == 10


def test_label_tiff_round_trip_keeps_labels_and_pixel_size(grid_measurement, tmp_path):
    from napari_grains.io import read_image

    p = grid_measurement.to_label_tiff(tmp_path / "l.tif")
    back = tifffile.imread(p)
    assert back.dtype == np.int32
    assert np.array_equal(back, grid_measurement.labels)
    mg = read_image(p)
    assert mg.unit == "µm" and mg.pixel_size == pytest.approx(0.002)


def test_figures_and_save_all(grid_measurement, tmp_path):
    paths = grid_measurement.save_all(tmp_path, "grid")
    assert set(paths) == set(EXPORT_NAMES)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    overlay = iio.imread(paths["overlay"])
    assert overlay.ndim == 3 and overlay.shape[0] >= grid_measurement.labels.shape[0]
    assert paths["histogram_svg"].read_text().lstrip().startswith("<?xml")
    # nothing is half replaced: a second save without overwrite refuses as a whole
    before = paths["csv"].read_bytes()
    paths["json"].unlink()
    with pytest.raises(GrainsError, match="exist"):
        grid_measurement.save_all(tmp_path, "grid")
    assert not paths["json"].exists()
    assert paths["csv"].read_bytes() == before
    grid_measurement.save_all(tmp_path, "grid", overwrite=True)
    assert paths["json"].exists()


def test_histogram_fixed_edges_log_bins_and_area_weights(grid_measurement):
    rng = np.random.default_rng(0)
    edges = [0.0, 10.0, 20.0, 40.0, 80.0]
    m = measure_labels(grid_measurement.labels)
    fig = m.histogram(bins=edges)
    ax = fig.axes[0]
    lefts = sorted(p.get_x() for p in ax.patches)
    assert lefts == edges[:-1]
    from napari_grains.plots import histogram_edges, histogram_figure
    from napari_grains.stats import lognormal_fit

    x = rng.lognormal(3, 0.5, 400)
    e = histogram_edges(x, bins=12, log=True)
    assert np.allclose(np.diff(np.log(e)), np.log(e[1] / e[0]))
    fig = histogram_figure(x, bins=12, log=True, weights="area", fit=lognormal_fit(x))
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sum(heights) == pytest.approx(100.0)
    with pytest.raises(GrainsError):
        histogram_figure(x, bins=[3.0, 2.0])


def test_an_interrupted_export_leaves_the_previous_file_intact(grid_measurement, tmp_path,
                                                               monkeypatch):
    target = tmp_path / "grains.csv"
    grid_measurement.to_csv(target)
    before = target.read_bytes()

    def broken_to_csv(self, path, *args, **kwargs):
        Path(path).write_text("label,area\n1,")  # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_to_csv)
    with pytest.raises(OSError):
        grid_measurement.to_csv(target, overwrite=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grains.csv"]
    with pytest.raises(GrainsError, match="exists"):
        grid_measurement.to_csv(target)  # and never replaced without being asked


def test_synthetic_sample_matches_its_ground_truth():
    """The measured mean ECD of the bundled synthetic sample's true boundary map agrees with
    its ground-truth labels: within 1 % when boundary pixels are given back to the grains,
    within 4 % with the 1-px boundaries left out of the grains."""
    gt = tifffile.imread(DATA / "synthetic_labels.tif").astype(np.int32)
    boundaries = iio.imread(DATA / "synthetic_boundaries.png") > 0
    truth = measure_labels(gt, pixel_size=1.5, unit="nm").summary
    filled = measure(boundaries, pixel_size=1.5, unit="nm", fill_boundaries=True).summary
    plain = measure(boundaries, pixel_size=1.5, unit="nm").summary
    t = truth["equivalent_diameter"]["nm"]["mean"]
    assert filled["equivalent_diameter"]["nm"]["mean"] == pytest.approx(t, rel=0.01)
    assert plain["equivalent_diameter"]["nm"]["mean"] == pytest.approx(t, rel=0.04)
    assert abs(filled["n_grains"] - truth["n_grains"]) <= 3


def test_line_mode_only_cuts_grains_at_the_ends():
    b = np.zeros((21, 180), bool)
    for c in (30, 60, 100, 150):
        b[:, c] = True
    m = measure(b, line_axis="x", close_gaps=0)
    assert m.table["touches_border"].all()
    assert int(m.table["cut_by_border"].sum()) == 2
    assert m.summary["interconnect"]["n_bamboo"] == 3


def test_bad_options_raise_grains_error():
    with pytest.raises(GrainsError, match="unknown measurement option"):
        measure(square_grid(2, 10), min_grain=3)
    with pytest.raises(GrainsError, match="line_axis"):
        measure(square_grid(2, 10), line_axis="z")
    with pytest.raises(GrainsError, match="same shape"):
        measure(square_grid(2, 10), image=np.zeros((5, 5)))


def test_measure_command(tmp_path, capsys):
    src = tmp_path / "map.png"
    iio.imwrite(src, square_grid(5, 16).astype(np.uint8) * 255)
    out = tmp_path / "out"
    args = ["measure", str(src), "--pixel-size", "0.25", "--unit", "um", "--out", str(out),
            "--close-gaps", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "25 grains" in text and "µm" in text
    summary = json.loads((out / "map" / "map_summary.json").read_text(encoding="utf-8"))
    assert summary["unit"] == "µm"
    assert summary["provenance"]["pixel_size_source"] == "given"
    assert main(args) == 2  # refuses to clobber
    assert "exist" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["measure", str(src), "--pixel-size", "2", "--out", str(out)]) == 2
    assert "--unit" in capsys.readouterr().err


def test_a_map_without_measurable_grains_still_exports(tmp_path):
    m = measure(np.zeros((40, 50), bool), pixel_size=1.0, unit="nm")
    assert m.n_grains == 1 and m.summary["n_measured"] == 0
    assert m.summary["lognormal"] is None and m.headline()["mean_ecd"] is None
    paths = m.save_all(tmp_path, "empty")
    d = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert d["summary"]["equivalent_diameter"]["nm"]["mean"] is None
