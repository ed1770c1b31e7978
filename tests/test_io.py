"""Reading micrographs into the core's convention and writing results all-or-nothing."""

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_grains.errors import GrainsError
from napari_grains.io import atomic_write, list_images, read_image, to_gray_float


def test_uint8_gray_scaled_to_unit_range(tmp_path):
    a = np.array([[0, 128], [255, 64]], dtype=np.uint8)
    iio.imwrite(tmp_path / "a.png", a)
    m = read_image(tmp_path / "a.png")
    assert m.data.dtype == np.float32
    np.testing.assert_allclose(m.data, a / 255.0, atol=1e-6)
    assert m.pixel_size is None and m.unit is None


def test_rgb_and_rgba_become_gray_with_matlab_weights():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    g = to_gray_float(rgb)
    assert g.shape == (4, 5)
    np.testing.assert_allclose(g, 0.2989, atol=1e-4)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(to_gray_float(rgba), g)


def test_16bit_keeps_its_range_and_float_is_rescaled(tmp_path):
    a = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a)
    m = read_image(tmp_path / "a.tif")
    np.testing.assert_allclose(m.data, a / 65535.0, atol=1e-6)
    f = np.array([[-2.0, 0.0], [2.0, 1.0]], dtype=np.float64)
    np.testing.assert_allclose(to_gray_float(f), (f + 2) / 4, atol=1e-6)


def test_imagej_tiff_pixel_size_is_read(tmp_path):
    a = np.zeros((8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "cal.tif", a, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"unit": "nm"})
    m = read_image(tmp_path / "cal.tif")
    assert m.unit == "nm"
    assert m.pixel_size == pytest.approx(0.5)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((3, 4, 5), np.uint8), "2-D"),
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.array([[np.nan, 1.0]]), "NaN"),
    ],
)
def test_bad_arrays_raise_project_error(array, words):
    with pytest.raises(GrainsError, match=words):
        to_gray_float(array)


def test_stack_tiff_is_refused_not_silently_cut(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(GrainsError, match="2-D"):
        read_image(tmp_path / "stack.tif")


def test_missing_corrupt_and_unsupported_files(tmp_path):
    with pytest.raises(GrainsError, match="no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(GrainsError, match="corrupt"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(GrainsError, match="unsupported"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(GrainsError, match="folder"):
        read_image(tmp_path)


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("old")

    def failing(tmp):
        tmp.write_text("half-writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.csv"]  # no debris

    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    with pytest.raises(GrainsError, match="exists"):
        atomic_write(target, lambda tmp: tmp.write_text("newer"), overwrite=False)
    assert target.read_text() == "new"


def test_list_images_expands_folders_and_skips_other_files(tmp_path):
    for name in ["b.png", "a.tif", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.tif", "b.png"]
    with pytest.raises(GrainsError):
        list_images([tmp_path / "missing"])


def test_atomic_write_gives_normal_permissions(tmp_path):
    import stat

    from napari_grains import io as ng_io

    p = atomic_write(tmp_path / "shared.csv", lambda tmp: tmp.write_text("x"))
    # readable by colleagues as open() would make it, not mkstemp's 0600
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~ng_io._UMASK


def test_a_colour_image_is_read_as_gray_with_a_note(tmp_path):
    import imageio.v3 as iio

    from napari_grains.io import color_note, read_image

    rng = np.random.default_rng(3)
    # two "grains" of the same brightness but different hue: gray cannot tell them apart
    colour = np.zeros((40, 60, 3), np.uint8)
    colour[:, :30] = (200, 60, 60)
    colour[:, 30:] = (60, 97, 205)
    iio.imwrite(tmp_path / "tint.png", colour)
    m = read_image(tmp_path / "tint.png")
    assert m.data.ndim == 2 and m.metadata["color"] == "color"
    note = color_note(m)
    assert note is not None and "tint.png" in note and "hue" in note
    # a gray micrograph stored as RGB (R = G = B, a little JPEG-like noise) gets no note
    gray = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.int16)
    rgb += rng.integers(-2, 3, rgb.shape, dtype=np.int16)
    iio.imwrite(tmp_path / "gray_rgb.png", np.clip(rgb, 0, 255).astype(np.uint8))
    g = read_image(tmp_path / "gray_rgb.png")
    assert g.metadata["color"] == "gray" and color_note(g) is None
    # a plain gray file has no colour entry at all
    iio.imwrite(tmp_path / "gray.png", gray)
    assert "color" not in read_image(tmp_path / "gray.png").metadata
    assert color_note(read_image(tmp_path / "gray.png")) is None
