"""Extraction dock on the small synthetic sample (96×496), under Xvfb.

The nets run for real (the paper model), with few Net2 iterations so each test stays short.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_grains import extract as core
from napari_grains._sample_data import SYNTHETIC_SEED, synthetic_sample
from napari_grains._widgets.extraction import ExtractionWidget
from napari_grains.nets import load_model

TIMEOUT = 60_000


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    # the small 96×496 sample, given a nominal calibration to check that outputs inherit it
    data, kwargs, _ = synthetic_sample(seed=SYNTHETIC_SEED)[0]
    kwargs["metadata"].update(pixel_size=2.0, unit="nm", path="/data/sample.tif")
    viewer.add_image(data, scale=(2.0, 2.0), units=("nm", "nm"), **kwargs)
    widget = ExtractionWidget(viewer)
    qtbot.addWidget(widget)
    widget.live.setChecked(False)
    widget.mode.setCurrentText("native")
    widget.scale.setValue(1.0)
    widget.max_iter.setValue(3)
    widget.tolerance.setValue(0.0)  # never converges: exactly max_iter iterations
    return viewer, widget


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)


def _notifications(monkeypatch) -> list[str]:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    monkeypatch.setattr(notification_manager, "dispatch", lambda n: seen.append(str(n.message)))
    return seen


def test_run_all_creates_layers_matching_the_core(dock, qtbot):
    viewer, widget = dock
    assert widget.image_combo.currentText() == "synthetic TEM"
    widget.all_btn.click()
    _wait_idle(qtbot, widget)
    name = "synthetic TEM"
    edges = viewer.layers[f"{name} edges"]
    initial = viewer.layers[f"{name} initial guess"]
    iters = viewer.layers[f"{name} iterations"]
    bounds = viewer.layers[f"{name} boundaries"]
    assert edges.rgb and edges.data.shape == (96, 496, 3)
    assert initial.data.shape == (96, 496)
    assert iters.data.shape == (4, 96, 496)  # Net1's guess, then the 3 Net2 iterations
    # the network maps are added onto the micrograph, not painted over it
    assert initial.blending == "additive" and iters.blending == "additive"
    assert edges.blending == "additive"
    assert bounds.data.shape == (96, 496) and bounds.data.dtype == np.uint8
    assert set(np.unique(bounds.data)) <= {0, 1}
    # the dock computes what the core's one-shot extract() computes with the same settings
    params = widget.params()
    # ... with the model picked in the dock (the shipped default once models/default exists)
    reference = core.extract(viewer.layers[name].data,
                             load_model(widget.model_combo.currentText()), params)
    np.testing.assert_array_equal(bounds.data.astype(bool), reference.boundaries)
    np.testing.assert_array_equal(iters.data[1:], reference.iterations)
    np.testing.assert_array_equal(
        iters.data[0], np.clip(reference.initial * 255 + 0.5, 0, 255).astype(np.uint8))
    np.testing.assert_allclose(widget.session.result.changes, reference.changes)
    assert viewer.dims.current_step[0] == 3  # the slider's number is the newest iteration
    assert len(widget.plot.changes) == 3
    assert bounds.metadata["napari_grains"]["iteration"] == 3
    # outputs lie on the image and carry its calibration on to the measurement dock
    for layer in (edges, initial, bounds):
        np.testing.assert_allclose(layer.scale, (2.0, 2.0))
    np.testing.assert_allclose(iters.scale[1:], (2.0, 2.0))
    assert bounds.metadata["pixel_size"] == 2.0 and bounds.metadata["unit"] == "nm"
    assert bounds.metadata["path"] == "/data/sample.tif"


def test_slider_picks_the_iteration_to_use(dock, qtbot):
    viewer, widget = dock
    widget.net1_btn.click()
    _wait_idle(qtbot, widget)
    assert "synthetic TEM initial guess" in viewer.layers
    assert "synthetic TEM iterations" not in viewer.layers
    widget.net2_btn.click()
    _wait_idle(qtbot, widget)
    iters = viewer.layers["synthetic TEM iterations"]
    assert iters.data.shape[0] == 4  # slider 0 = Net1's guess, k = Net2 iteration k
    viewer.dims.set_current_step(0, 0)
    assert widget.current_iteration() == -1
    viewer.dims.set_current_step(0, 1)
    assert widget.current_iteration() == 0
    # the layer shows the first iteration now
    np.testing.assert_array_equal(np.asarray(iters._slice.image.raw), iters.data[1])
    widget.use_btn.click()
    qtbot.waitUntil(lambda: "synthetic TEM boundaries" in viewer.layers, timeout=TIMEOUT)
    bounds = viewer.layers["synthetic TEM boundaries"]
    assert bounds.metadata["napari_grains"]["iteration"] == 1
    s = widget.session
    expected = core.finalize(s.work[0].astype(np.float32) / 255, s.pre, s.params)
    np.testing.assert_array_equal(bounds.data.astype(bool), expected)
    # the dock's final settings now, not the run's, finish the picked iteration
    widget.extend_ends.setValue(0.0)
    widget.split_concave.setValue(0.0)
    widget.threshold.setValue(0.5)
    widget.use_btn.click()
    qtbot.waitUntil(lambda: bounds.metadata["napari_grains"]["params"]["extend_ends"] == 0.0,
                    timeout=TIMEOUT)
    assert bounds.metadata["napari_grains"]["params"]["split_concave"] == 0.0
    assert bounds.metadata["napari_grains"]["threshold"] == 0.5
    from dataclasses import replace
    want = core.finalize(s.work[0].astype(np.float32) / 255, s.pre,
                         replace(s.params, threshold=0.5, extend_ends=0.0, split_concave=0.0))
    np.testing.assert_array_equal(bounds.data.astype(bool), want)


def test_changed_threshold_reuses_the_nets(dock, qtbot, monkeypatch):
    viewer, widget = dock
    widget.all_btn.click()
    _wait_idle(qtbot, widget)
    first = viewer.layers["synthetic TEM boundaries"].data.copy()
    calls = []
    resize = core._to_original

    def resize_spy(*a, **k):  # a resize of the full image must never run on the GUI thread
        if threading.current_thread() is threading.main_thread():
            calls.append("resize on the GUI thread")
        return resize(*a, **k)

    monkeypatch.setattr(core, "_to_original", resize_spy)
    monkeypatch.setattr(core, "run_net1", lambda *a, **k: calls.append("net1"))
    monkeypatch.setattr(core, "iter_net2", lambda *a, **k: calls.append("net2") or iter(()))
    widget.threshold.setValue(0.6)
    widget.extend_ends.setValue(0.0)
    widget.all_btn.click()
    _wait_idle(qtbot, widget)
    assert calls == []
    second = viewer.layers["synthetic TEM boundaries"].data
    assert second.sum() < first.sum()  # a higher threshold keeps fewer boundary pixels
    np.testing.assert_array_equal(second.astype(bool),
                                  widget.session.result.boundaries_at(0.6))
    # the result's Net1 map is the one the worker resized once and the layer shows
    np.testing.assert_array_equal(widget.session.result.initial,
                                  viewer.layers["synthetic TEM initial guess"].data)


def test_cancel_stops_the_worker(dock, qtbot):
    viewer, widget = dock
    widget.max_iter.setValue(200)
    widget.net2_btn.click()
    qtbot.waitUntil(lambda: "synthetic TEM iterations" in viewer.layers, timeout=TIMEOUT)
    with qtbot.waitSignal(widget.worker.finished, timeout=TIMEOUT):
        widget.cancel_btn.click()
    _wait_idle(qtbot, widget)
    n = viewer.layers["synthetic TEM iterations"].data.shape[0]
    assert 1 <= n < 200
    assert not widget.session.complete
    assert widget.all_btn.isEnabled() and not widget.cancel_btn.isEnabled()


def test_edge_preview_is_debounced_and_shown(dock, qtbot):
    viewer, widget = dock
    widget.live.setChecked(True)
    for sigma in (1.5, 2.5, 3.0):  # three quick changes: one preview
        widget.log_sigma.setValue(sigma)
    qtbot.waitUntil(lambda: "synthetic TEM edges" in viewer.layers, timeout=TIMEOUT)
    assert widget._preview_id == 1
    layer = viewer.layers["synthetic TEM edges"]
    assert layer.rgb and set(np.unique(layer.data)) <= {0, 255}
    assert "sobel" in widget.thresholds_label.text()


def test_errors_become_notifications(dock, qtbot, monkeypatch):
    viewer, widget = dock
    seen = _notifications(monkeypatch)
    widget.all_btn.click()  # a good run first: its figures must not linger after a failure
    _wait_idle(qtbot, widget)
    assert widget.progress.value() == 100 and widget.plot.changes
    widget.add_model_folder("/nonexistent/model")
    widget.net1_btn.click()
    _wait_idle(qtbot, widget)
    assert any("model folder" in m and "does not exist" in m for m in seen)
    assert widget.progress.value() == 0 and "failed" in widget.status.text()
    # (the thresholds label is not checked: the edge preview of the current settings, which
    # the model change schedules, may fill it again after the error -- rightly)
    assert not widget.plot.changes
    viewer.layers.clear()
    seen.clear()
    widget.all_btn.click()
    assert widget.worker is None
    assert any("open an image first" in m for m in seen)


def test_gui_command_opens_the_dock_with_the_image(make_napari_viewer, tmp_path):
    import tifffile

    from napari_grains.cli import _gui, main

    path = tmp_path / "cal.tif"
    tifffile.imwrite(path, np.zeros((40, 50), np.uint16), imagej=True,
                     resolution=(1 / 0.25, 1 / 0.25), metadata={"unit": "um"})
    viewer, widget = _gui.build_viewer(path, model="paper", viewer=make_napari_viewer())
    assert "Grain boundary extraction" in viewer.window.dock_widgets
    layer = viewer.layers["cal"]
    np.testing.assert_allclose(layer.scale, (0.25, 0.25))
    assert widget.image_combo.currentText() == "cal"
    assert widget.model_key() == "paper"
    bad = tmp_path / "bad.dm3"
    bad.write_bytes(b"nope" * 50)
    assert main(["gui", str(bad)]) == 2  # clear message, no window


def test_untouched_dock_extracts_like_the_command_line(make_napari_viewer, qtbot):
    """A fresh dock's settings are the library's defaults, exactly (no rounding in a box)."""
    from dataclasses import fields

    viewer = make_napari_viewer()
    data, kwargs, _ = synthetic_sample(seed=SYNTHETIC_SEED)[0]
    viewer.add_image(data, **kwargs)
    widget = ExtractionWidget(viewer)
    qtbot.addWidget(widget)
    widget.live.setChecked(False)
    p, d = widget.params(), core.ExtractParams()
    differ = {f.name: (getattr(p, f.name), getattr(d, f.name)) for f in fields(d)
              if getattr(p, f.name) != getattr(d, f.name)}
    assert differ == {}


def test_settings_become_extract_params(dock):
    _, widget = dock
    widget.mode.setCurrentText("paper")
    widget.rule.setCurrentText("script")
    widget.scale.setValue(0.0)
    widget.log_t.setValue(0.002)
    widget.canny_sigma.setValue(2.0)
    p = widget.params()
    assert (p.mode, p.convergence, p.scale) == ("paper", "script", "auto")
    assert p.log_threshold == pytest.approx(0.002) and p.sobel_threshold is None
    assert p.canny_sigma == pytest.approx(2.0) and p.canny_thresholds is None
    assert p.max_iterations == 3 and p.tolerance == 0.0
    # the loose-end prolongation: the library's default, and 0 turns it off
    assert p.extend_ends == pytest.approx(core.ExtractParams().extend_ends)
    widget.extend_ends.setValue(0.0)
    assert widget.params().extend_ends == 0.0 and widget.extend_ends.text() == "off"
    # the split of concave grains likewise
    assert p.split_concave > 0
    assert p.split_concave == pytest.approx(core.ExtractParams().split_concave)
    widget.split_concave.setValue(0.0)
    assert widget.params().split_concave == 0.0 and widget.split_concave.text() == "off"


def test_dock_opens_from_napari_plugin_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-grains", "Grain boundary extraction")
    assert isinstance(widget, ExtractionWidget)
    assert widget.model_combo.count() >= 2  # shipped models + "Browse folder…"


def test_a_new_run_never_overwrites_edited_boundaries(dock, qtbot, monkeypatch):
    from napari_grains._widgets._common import pair_image_combo

    viewer, widget = dock
    seen = _notifications(monkeypatch)
    widget.all_btn.click()
    _wait_idle(qtbot, widget)
    edited = viewer.layers["synthetic TEM boundaries"]
    edited.data_setitem((np.full(40, 50), np.arange(100, 140)), 1)  # a hand-drawn line
    mine = np.asarray(edited.data).copy()
    widget.threshold.setValue(0.5)
    widget.all_btn.click()
    _wait_idle(qtbot, widget)
    # the edits stay; the new result goes beside them, and the user is told where
    np.testing.assert_array_equal(np.asarray(viewer.layers["synthetic TEM boundaries"].data),
                                  mine)
    new = viewer.layers["synthetic TEM boundaries [2]"]
    np.testing.assert_array_equal(new.data.astype(bool),
                                  widget.session.result.boundaries_at(0.5))
    assert any("is kept" in m for m in seen)
    # 'Use this iteration' and later runs go on writing into the unedited [2]
    widget.threshold.setValue(0.3)
    widget.use_btn.click()
    qtbot.waitUntil(lambda: new.metadata["napari_grains"]["threshold"] == 0.3, timeout=TIMEOUT)
    assert "synthetic TEM boundaries [3]" not in viewer.layers
    np.testing.assert_array_equal(np.asarray(viewer.layers["synthetic TEM boundaries"].data),
                                  mine)
    # the other docks pair "X boundaries [2]" with image X
    from qtpy.QtWidgets import QComboBox

    combo = QComboBox()
    combo.addItems(["other", "synthetic TEM"])
    pair_image_combo(combo, "synthetic TEM boundaries [2]")
    assert combo.currentText() == "synthetic TEM"


def test_colour_layer_gets_a_note_once(make_napari_viewer, qtbot, monkeypatch):
    import napari_grains._widgets.extraction as dock_module

    seen = []
    monkeypatch.setattr(dock_module, "show_info", seen.append)
    viewer = make_napari_viewer()
    data = synthetic_sample(seed=SYNTHETIC_SEED)[0][0]
    colour = np.stack([data, data * 0.5, 1 - data], axis=-1).astype(np.float32)
    viewer.add_image(colour, name="tinted", rgb=True)
    widget = ExtractionWidget(viewer)
    qtbot.addWidget(widget)
    widget.live.setChecked(False)
    widget.max_iter.setValue(1)
    widget.net1_btn.click()
    _wait_idle(qtbot, widget)
    widget.net1_btn.click()
    _wait_idle(qtbot, widget)
    notes = [s for s in seen if "colour image" in s]
    assert len(notes) == 1 and "tinted" in notes[0]
