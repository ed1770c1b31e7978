"""napari reader, manifest and sample data: layers with the right scale, clear errors."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import tifffile
import yaml
from _microscope_files import write_dm3, write_mrc

from napari_grains import _napari_reader as _reader
from napari_grains import _sample_data
from napari_grains.io import to_gray_float


def _notifications(monkeypatch) -> list[str]:
    """Collect the messages napari's notification manager receives."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    monkeypatch.setattr(notification_manager, "dispatch",
                        lambda n: seen.append(str(n.message)))
    return seen


@pytest.fixture
def calibrated_tiff(tmp_path):
    data = (np.arange(32 * 48, dtype=np.uint16).reshape(32, 48) * 40)
    path = tmp_path / "cal.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"unit": "um"})
    return path, data


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    assert _reader.napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert _reader.napari_get_reader(str(tmp_path)) is None  # a folder
    assert _reader.napari_get_reader([str(tmp_path / "a.png"), str(tmp_path / "b.csv")]) is None
    assert _reader.napari_get_reader([]) is None
    assert callable(_reader.napari_get_reader(str(tmp_path / "a.dm4")))
    assert callable(_reader.napari_get_reader([str(tmp_path / "a.png"), str(tmp_path / "b.TIF")]))


def test_manifest_lists_every_reader_extension():
    manifest = yaml.safe_load((resources.files("napari_grains") / "napari.yaml").read_text())
    patterns = manifest["contributions"]["readers"][0]["filename_patterns"]
    assert sorted(p.removeprefix("*") for p in patterns) == sorted(_reader.READER_EXTENSIONS)


def test_reader_function_gives_scale_units_and_metadata(calibrated_tiff):
    path, data = calibrated_tiff
    [(arr, kwargs, kind)] = _reader.napari_get_reader(str(path))(str(path))
    assert kind == "image"
    np.testing.assert_allclose(arr, to_gray_float(data))
    assert kwargs["name"] == "cal"
    assert kwargs["scale"] == pytest.approx((0.5, 0.5))
    assert kwargs["units"] == ("µm", "µm")
    assert kwargs["metadata"]["pixel_size"] == pytest.approx(0.5)
    assert kwargs["metadata"]["unit"] == "µm"
    assert kwargs["metadata"]["path"] == str(path)


def test_viewer_open_mrc_and_tiff_with_scale(make_napari_viewer, tmp_path, calibrated_tiff):
    viewer = make_napari_viewer()
    mrc = write_mrc(tmp_path / "GRID.MRC", np.arange(600, dtype=np.int16).reshape(20, 30), 4.0)
    [layer] = viewer.open(str(mrc), plugin="napari-grains")  # upper-case extension
    assert layer.data.shape == (20, 30)
    np.testing.assert_allclose(layer.scale, (0.4, 0.4))
    assert str(layer.units[0]) == "nanometer"
    assert layer.metadata["unit"] == "nm" and layer.metadata["path"] == str(mrc)
    [tif] = viewer.open(str(calibrated_tiff[0]), plugin="napari-grains")
    np.testing.assert_allclose(tif.scale, (0.5, 0.5))
    assert str(tif.units[0]) == "micrometer"


def test_uncalibrated_png_has_unit_scale(make_napari_viewer, tmp_path):
    import imageio.v3 as iio

    path = tmp_path / "plain.png"
    iio.imwrite(path, np.full((10, 12, 3), 200, dtype=np.uint8))
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-grains")
    assert layer.data.shape == (10, 12) and layer.data.dtype == np.float32
    np.testing.assert_allclose(layer.scale, (1.0, 1.0))
    assert layer.metadata["pixel_size"] is None


def test_bad_file_gives_a_notification_and_no_layer(make_napari_viewer, tmp_path, monkeypatch):
    seen = _notifications(monkeypatch)
    bad = tmp_path / "broken.dm3"
    bad.write_bytes(b"not a Gatan file" * 20)
    viewer = make_napari_viewer()
    added = viewer.open(str(bad), plugin="napari-grains")
    assert added == [] and len(viewer.layers) == 0
    assert len(seen) == 1
    assert "broken.dm3" in seen[0] and "corrupt" in seen[0]


def test_one_bad_file_among_good_ones(tmp_path, monkeypatch):
    seen = _notifications(monkeypatch)
    good = write_mrc(tmp_path / "good.mrc", np.ones((8, 8), dtype=np.float32), 1.0)
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(good.read_bytes()[:1100])
    layers = _reader.read_micrographs([str(good), str(bad)])
    assert [kw["name"] for _, kw, _ in layers] == ["good"]
    assert len(seen) == 1 and "bad.mrc" in seen[0]


def test_sample_data_load(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grains", "tem")
    tem = viewer.layers["TEM (Saleh et al.)"]
    assert tem.data.ndim == 2 and tem.data.dtype == np.float32
    assert tem.data.shape[0] < tem.data.shape[1]  # a line imaged lengthwise
    assert "CC0" in tem.metadata["credit"]
    viewer.open_sample("napari-grains", "synthetic")
    image = viewer.layers["synthetic TEM"]
    truth = viewer.layers["synthetic TEM ground truth"]
    grains = viewer.layers["synthetic TEM grains"]
    assert image.data.ndim == 2 and image.data.shape == truth.data.shape == grains.data.shape
    assert set(np.unique(truth.data)) == {0, 1}
    assert grains.data.min() >= 1 and not grains.visible
    # the bundled sample is calibrated; its truth layers lie exactly on the image
    assert image.metadata["pixel_size"] == pytest.approx(image.scale[0])
    np.testing.assert_allclose(truth.scale, image.scale)
    # the truth is the grains' boundaries: wherever the grain label changes, a truth pixel lies
    g, t = grains.data, truth.data.astype(bool)
    across_x = g[:, :-1] != g[:, 1:]
    across_y = g[:-1] != g[1:]
    assert across_x.any() and across_y.any()
    assert not (across_x & ~(t[:, :-1] | t[:, 1:])).any()
    assert not (across_y & ~(t[:-1] | t[1:])).any()


def test_synthetic_sample_is_reproducible():
    a = _sample_data.synthetic_sample(seed=_sample_data.SYNTHETIC_SEED)
    b = _sample_data.synthetic_sample(seed=_sample_data.SYNTHETIC_SEED)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][0], b[1][0])
    c = _sample_data.synthetic_sample(seed=1)
    assert not np.array_equal(a[0][0], c[0][0])


def test_manifest_commands_are_unique_and_importable():
    import importlib

    manifest = yaml.safe_load((resources.files("napari_grains") / "napari.yaml").read_text())
    commands = manifest["contributions"]["commands"]
    ids = [c["id"] for c in commands]
    assert len(ids) == len(set(ids))
    widgets = [w["command"] for w in manifest["contributions"]["widgets"]]
    assert len(widgets) == len(set(widgets)) and set(widgets) <= set(ids)
    for c in commands:
        module, attr = c["python_name"].split(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_dm3_layer_scale(tmp_path):
    path = write_dm3(tmp_path / "scan.dm3", np.arange(30 * 40, dtype=np.uint16).reshape(30, 40),
                     pixel_size=2.5, unit="nm")
    [(data, kwargs, kind)] = _reader.napari_get_reader(str(path))(str(path))
    assert data.shape == (30, 40) and kind == "image"
    assert kwargs["scale"] == pytest.approx((2.5, 2.5)) and kwargs["units"] == ("nm", "nm")


def test_colour_file_opens_gray_with_a_notice(tmp_path, monkeypatch):
    import imageio.v3 as iio

    seen = _notifications(monkeypatch)
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[:, :16] = (200, 60, 60)
    colour[:, 16:] = (60, 97, 205)
    iio.imwrite(tmp_path / "tint.png", colour)
    layers = _reader.read_micrographs(str(tmp_path / "tint.png"))
    assert len(layers) == 1 and layers[0][0].ndim == 2
    assert len(seen) == 1 and "tint.png is a colour image" in seen[0]
