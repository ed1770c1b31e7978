"""The measurement dock: same table as the core, two-way selection, live updates, exports."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_grains._widgets.measurement import MeasurementWidget
from napari_grains.measure import MeasureParams, measure

pytestmark = pytest.mark.gui


def grid(size=121, step=20):
    """Boundaries of a 6x6 grid of grains, closed by a 1-px frame."""
    b = np.zeros((size, size), np.uint8)
    b[::step, :] = 1
    b[:, ::step] = 1
    b[-1, :] = 1
    b[:, -1] = 1
    return b


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = np.random.default_rng(1).random((121, 121)).astype(np.float32)
    viewer.add_image(image, name="micrograph", metadata={"pixel_size": 2.5, "unit": "nm"})
    viewer.add_labels(grid(), name="boundaries")
    w = MeasurementWidget(viewer)
    w._timer.setInterval(20)
    viewer.window.add_dock_widget(w)
    w.boundaries_combo.setCurrentText("boundaries")
    w.image_combo.setCurrentText("micrograph")
    return w


def measured(qtbot, w):
    w.measure()
    qtbot.waitUntil(lambda: not w.busy and w.measurement is not None, timeout=20000)
    return w.measurement


def test_pixel_size_comes_from_metadata_and_warns_when_missing(dock):
    assert dock.pixel_size() == (2.5, "nm")
    assert dock.pixel_warning.text() == ""
    dock.pixel_spin.setValue(0)
    assert dock.pixel_size() == (None, None)
    assert "No pixel size" in dock.pixel_warning.text()
    # a value the user types survives layers being added (e.g. the measured grains layer)
    dock.pixel_spin.setValue(1.25)
    dock.viewer.add_labels(np.zeros((4, 4), np.uint8), name="another layer")
    assert dock.pixel_size() == (1.25, "nm")
    # choosing another image reads that image's pixel size
    dock.viewer.add_image(np.zeros((4, 4)), name="uncalibrated")
    dock.image_combo.setCurrentText("uncalibrated")
    assert dock.pixel_size() == (None, None)


def test_table_matches_the_core_for_the_same_boundaries(dock, qtbot):
    m = measured(qtbot, dock)
    core = measure(grid() != 0, pixel_size=2.5, unit="nm", params=MeasureParams())
    pd.testing.assert_frame_equal(dock.model.table, core.table)
    assert dock.model.rowCount() == len(core.table) == 36
    assert dock.model.columnCount() == core.table.shape[1]
    col = list(core.table.columns).index("area_nm2")
    shown = dock.model.data(dock.model.index(4, col))
    assert shown == f"{core.table['area_nm2'].iloc[4]:.4g}"
    # headers say what each column is and its unit (the table keeps the column names)
    from qtpy.QtCore import Qt

    header = [dock.model.headerData(i, Qt.Horizontal) for i in range(dock.model.columnCount())]
    assert header[col] == "area (nm²)"
    assert header[list(core.table.columns).index("centroid-0")] == "centroid row (px)"
    assert header[list(core.table.columns).index("equivalent_diameter_nm")] == "ECD (nm)"
    assert "Grains: 36" in dock.summary.text() and "nm" in dock.summary.text()
    assert m.summary["astm_e112"]["intercept"]["G"] is not None
    assert dock.hist_label.pixmap() is not None and not dock.hist_label.pixmap().isNull()


def highlighted(dock, shape):
    """The full-size mask the highlight layer shows (it holds only the grain's box)."""
    hl = dock.highlight_layer
    r0, c0 = (np.asarray(hl.translate) / np.asarray(hl.scale)).round().astype(int)
    full = np.zeros(shape, bool)
    full[r0 : r0 + hl.data.shape[0], c0 : c0 + hl.data.shape[1]] = hl.data != 0
    return full


def test_row_selection_highlights_grain_and_click_selects_row(dock, qtbot):
    m = measured(qtbot, dock)
    dock.table_view.selectRow(7)
    label = int(m.table["label"].iloc[7])  # rows start in the core's order
    assert dock.selected_labels() == [label]
    np.testing.assert_array_equal(highlighted(dock, m.labels.shape), m.labels == label)
    # the highlight holds only the grain's bounding box, found once by the measure worker
    rows, cols = np.nonzero(m.labels == label)
    assert dock.highlight_layer.data.shape == (np.ptp(rows) + 1, np.ptp(cols) + 1)
    # click inside another grain: its row becomes the selection and its grain is highlighted
    target = int(m.labels[50, 90])
    click = SimpleNamespace(type="mouse_press", position=(50.0, 90.0))
    dock._on_click(dock.viewer, click)
    assert dock.selected_labels() == [target]
    np.testing.assert_array_equal(highlighted(dock, m.labels.shape), m.labels == target)
    # no selection: no highlight; while painting, clicks are left to the brush
    dock.table_view.clearSelection()
    assert not dock.highlight_layer.visible
    dock.viewer.layers["boundaries"].mode = "paint"
    dock._on_click(dock.viewer, click)
    assert dock.selected_labels() == []


def test_sorting_keeps_selection_mapping(dock, qtbot):
    m = measured(qtbot, dock)
    col = list(m.table.columns).index("centroid-1")
    dock.table_view.sortByColumn(col, 1)  # descending
    first = dock.model.data(dock.model.index(0, col))
    assert first == f"{m.table['centroid-1'].max():.4g}"
    dock.select_grain(int(m.table["label"].iloc[0]))
    assert dock.selected_labels() == [int(m.table["label"].iloc[0])]


def test_measurement_follows_edits(dock, qtbot):
    measured(qtbot, dock)
    layer = dock.viewer.layers["boundaries"]
    layer.data_setitem(np.nonzero(np.pad(np.ones((19, 1), bool), ((1, 101), (20, 100)))), 0)
    qtbot.waitUntil(lambda: dock.measurement.n_grains == 35, timeout=20000)
    assert dock.model.rowCount() == 35


def test_exports_never_overwrite_without_asking(dock, qtbot, tmp_path):
    m = measured(qtbot, dock)
    target = tmp_path / "out.csv"
    dock.ask_save_path = lambda kind, default, filt: str(target)
    dock.export("csv")
    qtbot.waitUntil(lambda: target.exists() and not dock.busy, timeout=10000)
    pd.testing.assert_frame_equal(pd.read_csv(target), m.table.reset_index(drop=True),
                                  check_dtype=False)
    target.write_text("keep me")
    asked = []
    dock.ask_overwrite = lambda p: asked.append(p) or False
    dock.export("csv")
    qtbot.wait(50)
    assert asked == [target] and target.read_text() == "keep me"
    dock.ask_overwrite = lambda p: True
    dock.export("csv")
    qtbot.waitUntil(lambda: target.read_text() != "keep me" and not dock.busy, timeout=10000)
    for kind, name in (("json", "s.json"), ("histogram_png", "h.png"),
                       ("histogram_svg", "h.svg"), ("labels", "l.tif"), ("overlay", "o.png")):
        dock.export(kind, path=str(tmp_path / name))
    qtbot.waitUntil(lambda: not dock.busy, timeout=20000)
    assert all((tmp_path / n).stat().st_size > 0
               for n in ("s.json", "h.png", "h.svg", "l.tif", "o.png"))


def test_bin_controls_redraw_histogram(dock, qtbot):
    measured(qtbot, dock)
    before = dock._hist_rgba.copy()
    dock.bins_spin.setValue(5)
    qtbot.waitUntil(lambda: not dock.busy, timeout=10000)
    assert not np.array_equal(before, dock._hist_rgba)


def test_run_on_folder_shows_progress_and_cancels(dock, qtbot, tmp_path):
    import imageio.v3 as iio
    import torch

    from napari_grains import synth

    torch.set_num_threads(1)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        pair = synth.generate_pair(synth.SynthParams(height=64, width=64), seed=i)
        iio.imwrite(src / f"img{i}.png", (pair.image * 255).astype(np.uint8))
    dock.batch_progress.setValue(0)
    dock.batch_events = []

    def cancel_on_first(ev):
        dock.cancel_batch()

    dock.run_folder((str(src), str(tmp_path / "out")), workers=1)
    assert dock.batch_running and not dock.batch_btn.isEnabled()
    dock._batch_worker.yielded.connect(cancel_on_first)
    qtbot.waitUntil(lambda: not dock.batch_running, timeout=60000)
    # Cancel takes effect once the image in progress is finished: never all three
    n = len(dock.batch_events)
    assert 1 <= n < 3 and all(ev.kind == "done" for ev in dock.batch_events)
    assert dock.batch_progress.maximum() == 3 and dock.batch_progress.value() == n
    assert "cancelled" in dock.batch_status.text()
    rows = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(rows) == n  # finished images are saved, the rest never started


def test_summary_text_when_no_grain_is_measurable():
    """Every grain cut by the border: no mean size, and the dock says so instead of crashing."""
    import numpy as np

    from napari_grains._widgets.measurement import summary_text
    from napari_grains.measure import measure

    b = np.zeros((40, 40), bool)
    b[:, 20] = True  # two grains, both cut by the border
    text = summary_text(measure(b))
    assert text.startswith("Grains: ")
    assert "ECD mean —, median —" in text


def test_export_of_a_bundled_sample_proposes_home_not_the_package(dock, qtbot, tmp_path):
    """The sample lives inside the installed package: the save dialog must not start there."""
    from pathlib import Path

    import napari_grains

    measured(qtbot, dock)
    package_data = Path(napari_grains.__file__).parent / "data"
    dock.image_layer.metadata["path"] = str(package_data / "TEM.png")
    proposed = []
    dock.ask_save_path = lambda kind, default, filt: proposed.append(default)  # cancel
    dock.export("csv")
    assert Path(proposed[0]).parent == Path.home()
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"")
    dock.image_layer.metadata["path"] = str(mine)
    dock.export("csv")
    assert Path(proposed[1]).parent == tmp_path
