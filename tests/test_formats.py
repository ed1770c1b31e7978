"""Microscope formats: calibration carried into the Micrograph, clear errors for bad files.

MRC files here are written by hand from the MRC2014 specification (a 1024-byte header and the
raw array), so the test knows the exact values the file holds. Real instrument files: the
sdist of ``mrcfile`` (BSD, on PyPI) ships two, a Thermo Fisher EPU image and an FEI image with
an extended header. Point ``NAPARI_GRAINS_MRCFILE_TESTDATA`` at its ``tests/test_data`` folder
to run those tests (``pip download --no-deps --no-binary :all: mrcfile==1.5.4`` and unpack);
they are skipped otherwise, because the files are 30 MB each.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _microscope_files import write_dm, write_dm3, write_emd, write_mrc

from napari_grains import formats, io
from napari_grains.errors import GrainsError


@pytest.fixture
def image16() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 60000, (40, 60)).astype(np.uint16)


def test_handles_by_extension_any_case():
    assert formats.handles("a/b/scan.dm3")
    assert formats.handles("scan.DM4")
    assert formats.handles(Path("x.mrc"))
    assert formats.handles("x.emd") and formats.handles("x.ser")
    assert not formats.handles("x.png")
    assert not formats.handles("x.tif")
    assert not formats.handles("noext")


def test_mrc_pixel_size_and_data(tmp_path, image16):
    path = write_mrc(tmp_path / "a.mrc", image16, pixel_size_angstrom=2.5)
    m = io.read_image(path)  # io hands microscope formats to formats.read
    assert m.data.shape == (40, 60) and m.data.dtype == np.float32
    np.testing.assert_allclose(m.data, io.to_gray_float(image16), atol=1e-6)
    assert m.pixel_size == pytest.approx(0.25)
    assert m.unit == "nm"
    assert m.path == path
    assert m.metadata["format"] == "MRC"
    assert m.metadata["dtype"] == "uint16"
    assert m.metadata["pixel_size_yx"] == pytest.approx((0.25, 0.25))


def test_mrc_float_image_keeps_orientation(tmp_path):
    ramp = np.tile(np.arange(30, dtype=np.float32), (20, 1))  # brighter to the right
    ramp[0, 0] = 100.0  # a marker in the top-left corner
    m = formats.read(write_mrc(tmp_path / "f.mrc", ramp, 10.0))
    assert m.data.shape == (20, 30)
    assert m.data[0, 0] == pytest.approx(1.0)
    assert m.data[5, 29] > m.data[5, 1]
    assert m.pixel_size == pytest.approx(1.0) and m.unit == "nm"


def test_uncalibrated_mrc_has_no_pixel_size(tmp_path, image16):
    m = formats.read(write_mrc(tmp_path / "u.mrc", image16, pixel_size_angstrom=None))
    assert m.pixel_size is None and m.unit is None


def test_truncated_mrc_gives_clear_error(tmp_path, image16):
    good = write_mrc(tmp_path / "a.mrc", image16, 2.5).read_bytes()
    bad = tmp_path / "cut.mrc"
    bad.write_bytes(good[:1500])
    with pytest.raises(GrainsError, match="cut.mrc.*corrupt, truncated"):
        io.read_image(bad)


@pytest.mark.parametrize("ext", [".dm3", ".dm4", ".ser", ".emd"])
def test_garbage_in_a_claimed_format_gives_clear_error(tmp_path, ext):
    bad = tmp_path / f"junk{ext}"
    bad.write_bytes(b"this is not a micrograph\n" * 40)
    with pytest.raises(GrainsError, match=f"could not read junk{ext}"):
        formats.read(bad)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(GrainsError, match="no such file"):
        formats.read(tmp_path / "nothing.dm3")
    with pytest.raises(GrainsError, match="not a microscope format"):
        formats.read(tmp_path / "x.png")


def test_stack_is_refused_with_advice(tmp_path):
    stack = np.zeros((3, 16, 16), dtype=np.int16)
    ny, nx = 16, 16
    path = write_mrc(tmp_path / "s.mrc", stack.reshape(48, 16), 1.0)
    raw = bytearray(path.read_bytes())
    raw[0:12] = np.array([nx, ny, 3], dtype="<i4").tobytes()  # make it a 3-slice volume
    path.write_bytes(bytes(raw))
    with pytest.raises(GrainsError, match="no single 2-D image.*pick one frame"):
        formats.read(path)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (2.5, "Å", (0.25, "nm")),
        (0.5, "um", (500.0, "nm")),
        (0.5, "µm", (500.0, "nm")),
        (250.0, "µm", (250.0, "µm")),
        (1.5e-7, "m", (150.0, "nm")),
        (3.0, "1/nm", (None, None)),
        (1.0, "px", (None, None)),
        (0.0, "nm", (None, None)),
        (1.0, None, (None, None)),
    ],
)
def test_normalize_length(value, unit, expected):
    got = formats.normalize_length(value, unit)
    assert got[1] == expected[1]
    if expected[0] is None:
        assert got[0] is None
    else:
        assert got[0] == pytest.approx(expected[0])


REAL = os.environ.get("NAPARI_GRAINS_MRCFILE_TESTDATA")


@pytest.mark.skipif(not REAL, reason="set NAPARI_GRAINS_MRCFILE_TESTDATA to mrcfile's test_data")
@pytest.mark.parametrize(
    ("name", "shape", "pixel_nm"),
    [("epu2.9_example.mrc", (4096, 4096), 0.0666551), ("fei-extended.mrc", (3838, 3710), 0.0853775)],
)
def test_real_instrument_mrc(name, shape, pixel_nm):
    m = io.read_image(Path(REAL) / name)
    assert m.data.shape == shape
    assert m.unit == "nm"
    assert m.pixel_size == pytest.approx(pixel_nm, rel=1e-5)
    assert 0.0 <= m.data.min() < m.data.max() <= 1.0


def test_emd_written_by_rosettasciio(tmp_path, image16):
    pytest.importorskip("h5py")
    path = write_emd(tmp_path / "scan.emd", image16, pixel_size=0.002, unit="µm")
    m = io.read_image(path)
    np.testing.assert_allclose(m.data, io.to_gray_float(image16), atol=1e-6)
    assert m.pixel_size == pytest.approx(2.0) and m.unit == "nm"
    assert m.metadata["format"].startswith("EMD")


@pytest.mark.parametrize("version", [3, 4])
def test_dm_pixel_size_and_data(tmp_path, image16, version):
    path = write_dm(tmp_path / f"grains.dm{version}", image16, pixel_size=0.5, unit="µm",
                    version=version)
    m = io.read_image(path)
    np.testing.assert_allclose(m.data, io.to_gray_float(image16), atol=1e-6)
    assert m.pixel_size == pytest.approx(500.0) and m.unit == "nm"
    assert m.metadata["format"] == f"Gatan DigitalMicrograph (DM{version})"
    assert m.metadata["title"] == "grains"


def test_dm3_float_image_in_angstrom(tmp_path):
    ramp = np.tile(np.linspace(-1.0, 3.0, 24, dtype=np.float32), (16, 1))
    m = formats.read(write_dm3(tmp_path / "f.dm3", ramp, pixel_size=4.0, unit="Å"))
    assert m.data.shape == (16, 24)
    assert m.data[0, 0] == pytest.approx(0.0) and m.data[0, -1] == pytest.approx(1.0)
    assert m.pixel_size == pytest.approx(0.4) and m.unit == "nm"


def test_truncated_dm3_gives_clear_error(tmp_path, image16):
    good = write_dm3(tmp_path / "a.dm3", image16, 1.0).read_bytes()
    bad = tmp_path / "cut.dm3"
    bad.write_bytes(good[:200])
    with pytest.raises(GrainsError, match="cut.dm3"):
        io.read_image(bad)


def test_missing_formats_extra_says_how_to_install(tmp_path, image16, monkeypatch):
    """Without the 'formats' extra (RosettaSciIO), a DM/MRC file gets install advice, not a crash."""
    write_mrc(tmp_path / "a.mrc", image16, pixel_size_angstrom=5.0)
    real_import = formats.importlib.import_module

    def no_rsciio(name, *args, **kwargs):
        if name.startswith("rsciio"):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(formats.importlib, "import_module", no_rsciio)
    with pytest.raises(GrainsError, match=r"napari-grains\[formats\]"):
        io.read_image(tmp_path / "a.mrc")
