"""The training dock: preview, a short run in the background, stop, and the model picker."""

import errno

import pytest
import torch

from napari_grains import train
from napari_grains._widgets.training import TrainingWidget, describe_error
from napari_grains.errors import GrainsError

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(make_napari_viewer, tmp_path):
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    w = TrainingWidget(viewer)
    viewer.window.add_dock_widget(w, name="training")
    w.rows.setValue(32)
    w.cols.setValue(32)
    w.dmin.setValue(6)
    w.dmax.setValue(12)
    w.n_pairs.setValue(8)
    w.batch.setValue(4)
    w.net1_epochs.setValue(1)
    w.net2_epochs.setValue(1)
    w.out_edit.setText(str(tmp_path / "model"))
    yield w
    if w.running:
        w.stop()


def test_device_is_shown(dock):
    expected = "CUDA" if torch.cuda.is_available() else "CPU"
    assert dock.device.text().startswith(expected)


def test_preview_shows_a_generated_pair_and_follows_parameters(dock, qtbot):
    dock.update_preview()
    qtbot.waitUntil(lambda: "synthetic target" in dock.viewer.layers, timeout=20000)
    img = dock.viewer.layers["synthetic image"]
    assert img.data.shape == (32, 32)
    first = img.data.copy()
    dock.rows.setValue(48)  # a parameter change regenerates the pair after a debounce
    qtbot.waitUntil(lambda: img.data.shape == (48, 32), timeout=20000)
    assert dock.viewer.layers["synthetic target"].data.shape == (48, 32)
    assert first.shape != img.data.shape


def test_short_run_yields_progress_and_its_model_reaches_the_picker(dock, qtbot):
    from napari_grains._widgets.extraction import ExtractionWidget

    dock._preview_timer.stop()  # no preview layers: the extraction dock would start on them
    picker = ExtractionWidget(dock.viewer)
    dock.viewer.window.add_dock_widget(picker, name="extraction")
    with qtbot.waitSignal(dock.model_saved, timeout=60000) as sig:
        dock.start_btn.click()
        assert dock.running and not dock.start_btn.isEnabled()
    qtbot.waitUntil(lambda: not dock.running, timeout=10000)
    kinds = {type(e).__name__ for e in dock.events}
    assert {"Step", "Epoch", "Validation", "Done"} <= kinds
    assert dock.progress.value() == 1000
    assert sig.args == [str(dock.model_path)]
    # the extraction dock's model picker lists the new model and has it selected
    assert picker.model_combo.findText(str(dock.model_path)) >= 0
    assert picker.model_key() == str(dock.model_path)
    assert (dock.model_path / "card.json").is_file()
    curves = dock.curve_data()["net1"]
    assert len(curves["loss"]) >= 1 and len(curves["val_error"]) == 1
    assert set(dock.curves.data) == {"net1", "net2"}  # what the plot shows
    dock.curves.grab()  # paints without error


def test_stop_keeps_best_model_and_resume_continues(dock, qtbot, monkeypatch):
    dock.net1_epochs.setValue(3)
    dock.net2_epochs.setValue(3)
    stopped = []

    def stop_on_first_step(ev):
        if isinstance(ev, train.Step) and not stopped:
            stopped.append(ev)
            dock.stop()

    dock.start()
    dock.worker.yielded.connect(stop_on_first_step)
    qtbot.waitUntil(lambda: not dock.running, timeout=60000)
    assert stopped
    assert not any(isinstance(e, train.Done) for e in dock.events)
    assert (dock.model_path / "net1.safetensors").is_file()  # best model kept
    assert (dock.model_path / "checkpoint").is_dir()
    steps_before = sum(isinstance(e, train.Step) for e in dock.events)
    assert steps_before < 6  # stopped within a step, not at the end
    # Start again in the same folder would mix two runs: refused, the checkpoint untouched
    shown = []
    monkeypatch.setattr("napari_grains._widgets.training.show_warning", shown.append)
    state = (dock.model_path / "checkpoint" / "state.json").read_bytes()
    dock.start_btn.click()
    assert not dock.running and "press Resume" in shown[0]
    assert (dock.model_path / "checkpoint" / "state.json").read_bytes() == state
    dock.net1_epochs.setValue(1)
    dock.net2_epochs.setValue(1)
    dock.resume_btn.click()
    qtbot.waitUntil(lambda: not dock.running, timeout=60000)
    assert any(isinstance(e, train.Done) for e in dock.events)


def test_bad_parameters_are_reported_not_run(dock, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_grains._widgets.training.show_warning", shown.append)
    dock.dmin.setValue(40)
    dock.dmax.setValue(10)
    dock.start()
    assert not dock.running and "smallest grain diameter" in shown[0]
    dock.dmin.setValue(6)
    dock.resume_btn.click()  # nothing to resume yet
    assert not dock.running and "no checkpoint" in shown[1]


def test_errors_become_messages_that_say_what_to_do(tmp_path):
    assert "batch size" in describe_error(RuntimeError("CUDA out of memory. Tried"), tmp_path)
    assert str(tmp_path) in describe_error(RuntimeError("CUDA out of memory"), tmp_path)
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "disk is full" in describe_error(full, tmp_path)
    assert describe_error(GrainsError("n_pairs=2: need 4"), None) == "n_pairs=2: need 4"



def test_stoppable_stops_after_the_current_event_and_closes_the_generator():
    import threading

    from napari_grains._widgets._common import stoppable

    closed = []

    def events():
        try:
            yield from range(5)
            return "done"
        finally:
            closed.append(True)

    stop = threading.Event()
    seen = []
    gen = stoppable(events, stop)
    for k in gen:
        seen.append(k)
        if k == 1:
            stop.set()  # as the Stop button does, between two events
    assert seen == [0, 1] and closed == [True]
    # run to its end, the core generator's return value comes through
    out = []

    def drain():
        out.append((yield from stoppable(events, threading.Event())))

    assert list(drain()) == [0, 1, 2, 3, 4] and out == ["done"]
