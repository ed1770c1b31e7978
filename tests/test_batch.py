"""Batches: one bad image never ends the batch; local pool, Dask cluster, cancel, the run command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_grains.batch import iter_batch, process_image, run_batch
from napari_grains.cli import main
from napari_grains.errors import GrainsError

DATA = Path(__file__).resolve().parents[1] / "napari_grains" / "data"
#: Small and quick: native resolution, two Net2 iterations.
FAST = {"scale": 1.0, "max_iterations": 2}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two small crops of the synthetic sample (with its pixel size) and one corrupt file."""
    d = tmp_path_factory.mktemp("images")
    img = tifffile.imread(DATA / "synthetic_image.tif")
    for name, (r, c) in {"a": (0, 0), "b": (96, 160)}.items():
        tifffile.imwrite(d / f"{name}.tif", img[r:r + 96, c:c + 160], imagej=True,
                         resolution=(1 / 1.5, 1 / 1.5), metadata={"unit": "nm"})
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    return d


def test_process_image_writes_everything(folder, tmp_path):
    res = process_image(folder / "a.tif", tmp_path, "a", extract_params=FAST,
                        measure_params={"min_area": 5})
    assert res["ok"], res["error"]
    row = res["row"]
    assert row["unit"] == "nm" and row["pixel_size_source"] == "file"
    assert row["n_grains"] > 0 and row["G_planimetric"] is not None
    out = tmp_path / "a"
    for suffix in ("grains.csv", "summary.json", "labels.tif", "histogram.png",
                   "histogram.svg", "overlay.png", "boundaries.png"):
        assert (out / f"a_{suffix}").exists(), suffix
    prov = json.loads((out / "a_summary.json").read_text(encoding="utf-8"))["provenance"]
    assert prov["model"]["name"] and prov["model"]["sha256"]
    assert prov["parameters"]["extract"]["max_iterations"] == 2
    assert len(prov["input"]["sha256"]) == 64


def test_bad_image_is_reported_and_the_rest_goes_on(folder, tmp_path):
    events = list(iter_batch([folder], tmp_path, workers=1, extract_params=FAST))
    kinds = {e.path.name: e.kind for e in events}
    assert kinds == {"a.tif": "done", "b.tif": "done", "broken.png": "failed"}
    bad = next(e for e in events if e.kind == "failed")
    assert "broken.png" in bad.error and "corrupt" in bad.error
    table = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(table["stem"]) == ["a", "b", "broken"]
    assert table.set_index("stem").loc["broken", "status"] == "failed"
    fs = json.loads((tmp_path / "field_statistics.json").read_text(encoding="utf-8"))
    assert fs["n_fields"] == 2 and fs["grains_per_mm2"]["relative_accuracy_pct"] is not None


def test_existing_results_are_not_clobbered(folder, tmp_path):
    (tmp_path / "summary.csv").write_text("old")
    with pytest.raises(GrainsError, match="overwrite"):
        next(iter_batch([folder / "a.tif"], tmp_path, workers=1, extract_params=FAST))
    assert (tmp_path / "summary.csv").read_text() == "old"


def test_cancel_by_closing_the_generator(folder, tmp_path):
    gen = iter_batch([folder / "a.tif", folder / "b.tif"], tmp_path, workers=1,
                     extract_params=FAST)
    first = next(gen)
    gen.close()
    assert first.n_total == 2
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_local_process_pool(folder, tmp_path):
    res = run_batch([folder / "a.tif", folder / "broken.png"], tmp_path, workers=2,
                    progress=False, extract_params=FAST)
    assert [r["status"] for r in res.rows] == ["done", "failed"]
    assert (tmp_path / "a" / "a_grains.csv").exists()


def test_dask_cluster(folder, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        events = list(iter_batch([folder], tmp_path, scheduler=cluster.scheduler_address,
                                 extract_params=FAST))
    assert sorted(e.kind for e in events) == ["done", "done", "failed"]
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 3


def test_run_command_on_a_folder(folder, tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", str(folder), "--out", str(out), "--workers", "1", "--quiet",
                 "--scale", "1", "--max-iterations", "2", "--bin-edges", "0,20,40,80,160"])
    assert code == 1  # one image failed, the others are there
    captured = capsys.readouterr()
    assert "FAILED broken.png" in captured.err
    assert "a.tif:" in captured.out and "field statistics over 2 images" in captured.out
    assert len(pd.read_csv(out / "summary.csv")) == 3
    assert main(["run", str(folder), "--out", str(out), "--quiet"]) == 2  # no clobbering
    assert main(["run", "--out", str(out)]) == 2


def test_demo_inputs_are_bundled():
    from napari_grains.cli._run import demo_inputs

    for s in demo_inputs().values():
        assert s["image"].exists()
    assert np.asarray(tifffile.imread(demo_inputs()["synthetic"]["labels"])).max() > 50
