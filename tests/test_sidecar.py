"""Autosave sidecars: written atomically, found again only for the same image."""

import numpy as np
import pytest

from napari_grains import sidecar
from napari_grains.errors import GrainsError


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "grains.png"
    p.write_bytes(b"not really a png, but bytes to fingerprint")
    return p


def boundaries(seed=0, shape=(37, 53)):
    return np.random.default_rng(seed).random(shape) > 0.7


def test_roundtrip_next_to_image(image):
    b = boundaries()
    p = sidecar.save_sidecar(b, image_path=image)
    assert p == image.parent / "grains.grains-edits.npz"
    sc = sidecar.find_sidecar(image)
    assert sc is not None
    np.testing.assert_array_equal(sc.boundaries, b)
    assert sc.shape == b.shape and sc.image_sha256 == sidecar.file_sha256(image)
    assert sc.saved_at  # a timestamp is recorded


def test_chosen_folder_and_image_without_file(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    fp = sidecar.data_sha256(data)
    b = boundaries(shape=(3, 4))
    p = sidecar.save_sidecar(b, image_sha256=fp, folder=tmp_path / "edits", name="TEM sample")
    assert p.parent == tmp_path / "edits" and p.name == "TEM_sample.grains-edits.npz"
    sc = sidecar.find_sidecar(image_sha256=fp, folder=tmp_path / "edits", name="TEM sample")
    np.testing.assert_array_equal(sc.boundaries, b)


def test_no_file_and_no_folder_asks_for_a_folder():
    with pytest.raises(GrainsError, match="choose an autosave folder"):
        sidecar.save_sidecar(boundaries(), image_sha256="x" * 64, name="layer")


def test_changed_image_does_not_get_old_edits(image):
    sidecar.save_sidecar(boundaries(), image_path=image)
    image.write_bytes(b"a different image under the same name")
    assert sidecar.find_sidecar(image) is None


def test_crash_mid_write_keeps_previous_sidecar(image, monkeypatch):
    first = boundaries(1)
    sidecar.save_sidecar(first, image_path=image)

    def crash(fh, **kw):
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(GrainsError, match="could not autosave"):
        sidecar.save_sidecar(boundaries(2), image_path=image)
    monkeypatch.undo()
    sc = sidecar.find_sidecar(image)
    np.testing.assert_array_equal(sc.boundaries, first)
    leftovers = [p.name for p in image.parent.iterdir() if p.name.endswith(".part.npz")]
    assert leftovers == []


def test_corrupt_sidecar_is_reported_and_ignored(image):
    p = sidecar.sidecar_path(image)
    p.write_bytes(b"garbage")
    with pytest.raises(GrainsError, match="not a readable"):
        sidecar.load_sidecar(p)
    assert sidecar.find_sidecar(image) is None
