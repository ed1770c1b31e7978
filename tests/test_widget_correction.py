"""The correction dock: each tool edits the boundaries, changes the grains, and undoes."""

from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest

from napari_grains import sidecar
from napari_grains._widgets.correction import CorrectionWidget
from napari_grains.grains import label_grains

pytestmark = pytest.mark.gui


def grid(size=60, step=20):
    b = np.zeros((size, size), np.uint8)
    for k in range(step, size, step):
        b[k - 1 : k + 1, :] = 1
        b[:, k - 1 : k + 1] = 1
    b[[0, -1], :] = 1  # a 1-px frame closes the outer grains (label_grains thins boundaries)
    b[:, [0, -1]] = 1
    return b


def n_grains(layer):
    return int(label_grains(np.asarray(layer.data) != 0).max())


@pytest.fixture
def dock(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    img_path = tmp_path / "micrograph.png"
    image = (np.random.default_rng(0).random((60, 60)) * 255).astype(np.uint8)
    iio.imwrite(img_path, image)
    viewer.add_image(image, name="micrograph", metadata={"path": str(img_path)})
    viewer.add_labels(grid(), name="micrograph boundaries")
    w = CorrectionWidget(viewer)
    w.ask_question = lambda title, text: True
    w.ask_unsaved = lambda text, can_cancel: "discard"
    w._save_timer.setInterval(50)
    w._grains_timer.setInterval(10)
    viewer.window.add_dock_widget(w)
    w.boundaries_combo.setCurrentText("micrograph boundaries")
    w.image_combo.setCurrentText("micrograph")
    qtbot.waitUntil(lambda: not w.busy)
    yield w, viewer.layers["micrograph boundaries"], img_path
    w._save_timer.stop()


def settle(qtbot, w):
    qtbot.waitUntil(lambda: not w.busy, timeout=10000)


def test_delete_segment_merges_grains_and_undo_restores(dock, qtbot):
    w, layer, _ = dock
    before = layer.data.copy()
    assert n_grains(layer) == 9
    w.delete_at((30, 20))
    settle(qtbot, w)
    assert n_grains(layer) == 8
    assert not layer.data[25:35, 19:21].any()
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    layer.redo()
    assert n_grains(layer) == 8


def test_a_missed_click_gives_one_warning_and_changes_nothing(dock, qtbot, monkeypatch):
    from napari.utils.notifications import notification_manager

    w, layer, _ = dock
    seen = []
    monkeypatch.setattr(notification_manager, "dispatch",
                        lambda n: seen.append((str(n.severity), str(n.message))))
    before = layer.data.copy()
    w.pick_spin.setValue(3)
    w.delete_at((10, 10))  # the middle of a grain, far from any boundary
    settle(qtbot, w)
    qtbot.wait(50)
    # one warning that says what to do (napari used to add a red copy of it, and without a
    # handler given at the worker's creation superqt re-raised it)
    assert len(seen) == 1 and "boundary" in seen[0][1] and "warning" in seen[0][0].lower()
    np.testing.assert_array_equal(layer.data, before)


def test_delete_by_clicking_in_the_viewer(dock, qtbot):
    w, layer, _ = dock
    w.delete_btn.setChecked(True)
    assert w.tool == "delete" and layer.mode == "pan_zoom"
    click = SimpleNamespace(type="mouse_press", button=1, position=(30.0, 20.0))
    w._on_mouse(w.viewer, click)
    settle(qtbot, w)
    assert n_grains(layer) == 8
    layer.undo()
    assert n_grains(layer) == 9


def test_draw_boundary_splits_a_grain_and_undo_restores(dock, qtbot):
    w, layer, _ = dock
    before = layer.data.copy()
    w.draw_btn.setChecked(True)
    for x in (24.0, 35.0):
        w._on_mouse(w.viewer, SimpleNamespace(type="mouse_press", button=1, position=(30.0, x)))
    assert "draft boundary" in w.viewer.layers
    w._on_double_click(w.viewer, None)
    settle(qtbot, w)
    assert "draft boundary" not in w.viewer.layers
    assert n_grains(layer) == 10
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_close_gaps_preview_then_apply_then_undo(dock, qtbot):
    w, layer, _ = dock
    layer.data_setitem(np.nonzero(np.pad(np.ones((2, 6), bool), ((19, 39), (26, 28)))), 0)
    gapped = layer.data.copy()
    assert n_grains(layer) == 8
    w.preview_btn.click()
    settle(qtbot, w)
    assert len(w.viewer.layers["gap preview"].data) == 2
    assert w.apply_gaps_btn.isEnabled()
    np.testing.assert_array_equal(layer.data, gapped)  # a preview changes nothing
    w.apply_gaps_btn.click()
    settle(qtbot, w)
    assert "gap preview" not in w.viewer.layers
    assert n_grains(layer) == 9
    layer.undo()
    np.testing.assert_array_equal(layer.data, gapped)


def test_live_grain_view_follows_edits(dock, qtbot):
    w, layer, _ = dock
    qtbot.waitUntil(lambda: w.n_grains == 9, timeout=10000)
    grains = w.viewer.layers["micrograph boundaries grains"]
    assert grains.data.max() == 9
    w.delete_at((30, 20))
    qtbot.waitUntil(lambda: w.n_grains == 8, timeout=10000)
    assert grains.data.max() == 8
    layer.undo()  # undo emits no paint event; the view must still follow
    qtbot.waitUntil(lambda: w.n_grains == 9, timeout=10000)


def test_autosave_writes_sidecar_and_reopening_offers_it(dock, qtbot, make_napari_viewer):
    w, layer, img_path = dock
    w.delete_at((30, 20))
    settle(qtbot, w)
    qtbot.waitUntil(lambda: w.last_sidecar is not None and not w.dirty, timeout=10000)
    sc = sidecar.find_sidecar(img_path)
    np.testing.assert_array_equal(sc.boundaries, layer.data != 0)
    # open the same image in a fresh viewer: the dock offers the corrections back
    viewer2 = make_napari_viewer()
    w2 = CorrectionWidget(viewer2)
    asked = []
    w2.ask_question = lambda title, text: asked.append(text) or True
    image = iio.imread(img_path)
    viewer2.add_image(image, name="micrograph", metadata={"path": str(img_path)})
    qtbot.waitUntil(lambda: "micrograph boundaries" in viewer2.layers, timeout=10000)
    assert len(asked) == 1 and "micrograph" in asked[0]
    restored = viewer2.layers["micrograph boundaries"]
    np.testing.assert_array_equal(restored.data != 0, layer.data != 0)
    assert not w2.dirty


def test_closing_with_unsaved_edits_asks_and_can_cancel(dock, qtbot):
    w, _, _ = dock
    w._save_timer.setInterval(60_000)  # edits stay unsaved during this test
    w.delete_at((30, 20))
    settle(qtbot, w)
    assert w.dirty
    asked = []
    w.ask_unsaved = lambda text, can_cancel: asked.append(can_cancel) or "cancel"
    assert w.viewer.window._qt_window.close() is False  # the user cancelled
    assert asked == [True]
    w.ask_unsaved = lambda text, can_cancel: "save"
    assert w.confirm_discard(can_cancel=True) is True
    assert not w.dirty  # saving wrote the sidecar


def test_sample_data_edits_go_to_the_user_folder_not_the_package(
        make_napari_viewer, monkeypatch, tmp_path):
    from pathlib import Path

    import napari_grains

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    tem = Path(napari_grains.__file__).parent / "data" / "TEM.png"
    viewer = make_napari_viewer()
    viewer.add_image(iio.imread(tem), name="TEM", metadata={"path": str(tem)})
    viewer.add_image(np.zeros((5, 5)), name="other image")
    viewer.add_labels(grid(), name="TEM boundaries")
    w = CorrectionWidget(viewer)
    w.ask_unsaved = lambda text, can_cancel: "discard"
    assert w.boundaries_layer.name == "TEM boundaries"
    assert w.image_layer.name == "TEM"  # paired by the extraction dock's naming
    path = w.autosave(force=True)
    assert path == tmp_path / "napari-grains" / "edits" / "TEM.grains-edits.npz"
    assert not list(tem.parent.glob("*.grains-edits.npz"))


def test_live_grain_view_uses_the_measurement_docks_smallest_grain(dock, qtbot):
    from napari_grains._widgets.measurement import MeasurementWidget

    w, _, _ = dock
    qtbot.waitUntil(lambda: w.n_grains == 9, timeout=10000)
    assert "≥ 10 px" in w.grains_label.text()  # no measurement dock: the core's default
    m = MeasurementWidget(w.viewer)
    w.viewer.window.add_dock_widget(m, name="measure")
    w.update_grains()
    qtbot.waitUntil(lambda: "measurement dock" in w.grains_label.text(), timeout=10000)
    # from now on, changing the measurement dock's setting recounts the live view
    m.min_area.setValue(1000)  # larger than every grain of the 3x3 grid
    qtbot.waitUntil(lambda: w.n_grains == 0, timeout=10000)
    assert "≥ 1000 px" in w.grains_label.text()
    assert w.viewer.layers["micrograph boundaries grains"].data.max() == 0


def test_hashing_and_writing_run_off_the_gui_thread(dock, qtbot, monkeypatch):
    import threading

    from napari_grains._widgets._common import OUTPUT_KEY

    w, _, img_path = dock
    on_gui = []
    for name in ("file_sha256", "data_sha256", "save_sidecar", "find_sidecar"):
        real = getattr(sidecar, name)

        def spy(*a, _real=real, _name=name, **k):
            if threading.current_thread() is threading.main_thread():
                on_gui.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(sidecar, name, spy)
    hashed = []
    real_data_sha = sidecar.data_sha256
    monkeypatch.setattr(sidecar, "data_sha256", lambda a: hashed.append(a.shape) or
                        real_data_sha(a))
    # our docks' outputs are never fingerprinted; a user's image with no file is, on a worker
    w.viewer.add_image(np.zeros((60, 60)), name="micrograph edges")
    w.viewer.add_image(np.zeros((60, 60)), name="a map", metadata={OUTPUT_KEY: True})
    w.viewer.add_image(np.ones((7, 9)), name="pasted image")
    qtbot.waitUntil(lambda: not w.busy, timeout=10000)
    assert hashed == [(7, 9)]
    # a debounced autosave after an edit hashes the image file and writes on a worker
    w._fingerprints.clear()
    w.delete_at((30, 20))
    settle(qtbot, w)
    qtbot.waitUntil(lambda: w.last_sidecar is not None and not w.dirty, timeout=10000)
    assert on_gui == []
    assert sidecar.find_sidecar(img_path) is not None


def test_an_older_save_never_overwrites_a_newer_one(tmp_path):
    import threading

    from napari_grains._widgets.correction import _save_job

    img = tmp_path / "a.png"
    img.write_bytes(b"pixels")
    target = {"image_path": img, "folder": None, "name": "a", "image_sha256": None}
    lock, written = threading.Lock(), {"seq": 0}
    newer = np.eye(4, dtype=bool)
    path, sha = _save_job(newer, target, None, lock, 2, written)
    assert path is not None and sha == sidecar.file_sha256(img)
    stale, _ = _save_job(np.zeros((4, 4), bool), target, None, lock, 1, written)
    assert stale is None
    np.testing.assert_array_equal(sidecar.find_sidecar(img).boundaries, newer)


def test_removing_the_boundaries_while_grains_are_counted_does_not_crash(dock, qtbot):
    """The walk-through hit 'Cannot select item that is not in list' here."""
    w, layer, _ = dock
    qtbot.waitUntil(lambda: w.n_grains == 9, timeout=10000)
    w.viewer.layers.remove(w.viewer.layers["micrograph boundaries grains"])
    w.update_grains()  # a count starts on a worker ...
    w.viewer.layers.remove(layer)  # ... and its layer goes away before it finishes
    qtbot.waitUntil(lambda: not w._grains_pending, timeout=10000)
    assert "micrograph boundaries grains" not in w.viewer.layers
