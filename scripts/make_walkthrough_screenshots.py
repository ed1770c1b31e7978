"""Replay docs/walkthrough.md in a real napari window and print what each step shows.

Opens the TEM sample in a shown napari window (a virtual X display is started when there is
none), then drives the three docks the way the walk-through tells a new user to, pressing
their buttons programmatically and waiting for their workers:

1. *Grain boundary extraction*: default model and settings, **Run all** (timed);
2. *Grain measurement*: **Measure** on the uncorrected boundaries;
3. *Boundary correction*: live grain count, *Close gaps* preview (Max gap 10, 25, 50 px),
   **Delete segment** on a false boundary, **Draw boundary** along a missed one, undo / redo,
   autosave (the clicks go through the dock's own click handlers, ``delete_at`` and
   ``add_draft_point`` + ``finish_line``, at fixed image coordinates chosen by eye), and how
   the row the line starts on decides whether it splits its grain;
4. *Grain measurement* again, with a pixel size typed in, with and without the grains cut by
   the border; a grain selected;
5. every *Export* button into a temporary folder;
6. the sample opened again (the dock offers the autosaved corrections back).

It prints the counts, labels and timings the page quotes, and saves two pictures:
``walkthrough_extraction.png`` (the window after Run all) and ``walkthrough_corrected.png``
(the corrected boundaries, the grain view and the measurement dock). Run::

    .venv/bin/python scripts/make_walkthrough_screenshots.py [--out docs/img]

Timings depend on the machine (and on its load).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: A boundary the default model draws where the image shows none (the left side of the small
#: triangle at the top left): a click on it, (row, col) in image pixels.
FALSE_BOUNDARY_CLICK = (45.0, 112.0)
#: The thin straight dark line the model misses (col ≈ 806 − 0.48 row), clicked at three
#: points from the found boundary it meets near the top edge to the bottom edge. Starting the
#: line on that boundary at row >= 6 splits the grain; starting within ~5 rows of the top edge
#: fails for about a third of click positions (the edge's boundary pixels are thinned away when
#: grains are labelled, so the grains join round the line's end).
MISSED_BOUNDARY = [(10.0, 815.0), (75.0, 770.0), (153.0, 733.0)]
PIXEL_SIZE = (2.5, "nm")  # an example value, as the page says: the sample has no scale bar


def wait(app, condition, timeout: float = 600.0) -> float:
    """Run the Qt event loop until ``condition()``; return the seconds it took."""
    t0 = time.perf_counter()
    while not condition():
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the dock did not finish in time")
    return time.perf_counter() - t0


def settle(app, seconds: float = 1.0) -> None:
    """Run the event loop for ``seconds`` (debounce timers, redraws)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def close_toasts(viewer) -> None:
    """Close napari's notification pop-ups so they do not cover the screenshot."""
    from qtpy.QtWidgets import QWidget

    for w in viewer.window._qt_window.findChildren(QWidget):
        if type(w).__name__ == "NapariQtNotification":
            w.close()


def start_row_sensitivity(boundaries: np.ndarray) -> None:
    """Print how often the missed-boundary line splits its grain, by the row it starts on.

    The first point is moved along the found boundary near the top edge (every column from
    4 px left of it to its right side, at whole and half rows); the other points stay.
    """
    from napari_grains import edit
    from napari_grains.grains import label_grains

    n_before = int(label_grains(boundaries).max())
    for row in (0, 2, 4, 6, 8, 10, 12, 15):
        cols = np.flatnonzero(boundaries[row, 790:840]) + 790
        splits = []
        for col in np.arange(cols.min() - 4, cols.max() + 1, 1.0):
            for dr in (0.0, 0.5):
                r = edit.draw_boundary(boundaries, [(row + dr, col), *MISSED_BOUNDARY[1:]],
                                       snap_distance=6)
                splits.append(int(label_grains(r.boundaries).max()) > n_before)
        print(f"   line started on the boundary at row {row}: splits the grain for "
              f"{np.mean(splits):.0%} of {len(splits)} start points")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Replay the walk-through; save its pictures.")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "img"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1920, 1200))
        display.start()
    try:
        return _walk(out)
    finally:
        if display is not None:
            display.stop()


def _walk(out: Path) -> int:
    import napari
    import torch
    from napari.utils.notifications import notification_manager
    from qtpy.QtWidgets import QApplication

    from napari_grains._widgets.correction import CorrectionWidget
    from napari_grains._widgets.extraction import ExtractionWidget
    from napari_grains._widgets.measurement import MeasurementWidget

    torch.set_num_threads(2)
    # sidecars of the sample go to $XDG_DATA_HOME/napari-grains/edits: keep them out of $HOME
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="walkthrough_xdg_")
    notices: list[str] = []
    notification_manager.notification_ready.connect(lambda n: notices.append(str(n.message)))

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1800, 1000)

    # 1. the sample ------------------------------------------------------------------------
    viewer.open_sample("napari-grains", "tem")
    image = viewer.layers[-1]
    print(f"1. layer {image.name!r}: shape {np.shape(image.data)}, "
          f"pixel size {image.metadata.get('pixel_size')} {image.metadata.get('unit')}")

    # 2. extraction ------------------------------------------------------------------------
    ext = ExtractionWidget(viewer)
    edock = viewer.window.add_dock_widget(ext, name="Grain boundary extraction")
    wait(app, lambda: ext.previews_shown > 0)
    print(f"2. model {ext.model_key()!r}, mode {ext.mode.currentText()!r}; "
          f"{ext.thresholds_label.text()}")
    t0 = time.perf_counter()
    ext.all_btn.click()
    settle(app, 0.1)
    wait(app, lambda: ext.worker is None)
    s = ext.session
    print(f"   Run all: {time.perf_counter() - t0:.1f} s; {len(s.changes)} Net2 iterations, "
          f"converged {s.converged}, last change {s.changes[-1]:.4f}")
    print(f"   status: {ext.status.text()}")
    print(f"   layers: {[lay.name for lay in viewer.layers]}")
    name = f"{image.name} boundaries"
    boundaries = viewer.layers[name]
    settle(app, 1)
    close_toasts(viewer)
    viewer.window.screenshot(str(out / "walkthrough_extraction.png"), canvas_only=False)

    # measurement of the uncorrected boundaries (the page quotes it in step 4)
    meas = MeasurementWidget(viewer)
    mdock = viewer.window.add_dock_widget(meas, name="Grain measurement")
    print(f"   measurement dock: boundaries {meas.boundaries_combo.currentText()!r}, image "
          f"{meas.image_combo.currentText()!r}, pixel size {meas.pixel_spin.text()!r}; "
          f"warning: {meas.pixel_warning.text()!r}")
    meas.measure_btn.click()
    wait(app, lambda: meas.measurement is not None and not meas.busy)
    print(f"   before the fixes: {meas.summary.text()!r}")
    mdock.hide()  # the page opens it only in step 4

    # 3. correction ------------------------------------------------------------------------
    corr = CorrectionWidget(viewer)
    corr.ask_unsaved = lambda text, can_cancel: "discard"
    asked: list[str] = []
    corr.ask_question = lambda title, text: asked.append(title) or True
    cdock = viewer.window.add_dock_widget(corr, name="Boundary correction")
    wait(app, lambda: corr.n_grains is not None and not corr.busy)
    print(f"3. correction dock: boundaries {corr.boundaries_combo.currentText()!r}, image "
          f"{corr.image_combo.currentText()!r}; {corr.grains_label.text()}")
    for gap in (10, 25, 50):
        corr.gap_spin.setValue(gap)
        corr.preview_btn.click()
        settle(app, 0.1)
        wait(app, lambda: not corr.busy)
        print(f"   Close gaps preview, Max gap {gap} px: {len(corr._proposal)} proposal(s), "
              f"Apply enabled {corr.apply_gaps_btn.isEnabled()}")

    def edited(before: int) -> int:
        wait(app, lambda: corr.n_grains != before and not corr.busy, timeout=30)
        settle(app, 0.5)  # the grain view is debounced: let it settle
        wait(app, lambda: not corr.busy)
        return corr.n_grains

    n0 = corr.n_grains
    corr.delete_btn.click()
    print(f"   Delete segment: checked {corr.delete_btn.isChecked()}, "
          f"layer mode {boundaries.mode!r}")
    corr.delete_at(FALSE_BOUNDARY_CLICK)
    n1 = edited(n0)
    print(f"   deleted the segment at {FALSE_BOUNDARY_CLICK}: {viewer.status!r}; grains {n1}")
    before_line = np.asarray(boundaries.data) != 0
    corr.draw_btn.click()
    for p in MISSED_BOUNDARY:
        corr.add_draft_point(p)
    corr.finish_line()
    n2 = edited(n1)
    print(f"   drew {MISSED_BOUNDARY}: {viewer.status!r}; grains {n2}")
    corr.draw_btn.click()  # tool off
    start_row_sensitivity(before_line)
    boundaries.undo()
    n_undo = edited(n2)
    boundaries.redo()
    n_redo = edited(n_undo)
    print(f"   Ctrl+Z: grains {n_undo}; Shift+Ctrl+Z: grains {n_redo}")
    wait(app, lambda: not corr.dirty, timeout=10)
    print(f"   autosave: {corr.save_label.text()!r}")

    # 4. measurement -----------------------------------------------------------------------
    mdock.show()
    wait(app, lambda: not meas.busy and meas.measurement is not None
         and meas.measurement.n_grains != 0)
    settle(app, 1.5)  # 'update after edits' reruns 0.8 s after the last edit
    wait(app, lambda: not meas.busy)
    size = viewer.window._qt_window.size()
    print(f"   window with the three docks: {size.width()} x {size.height()} px "
          f"(asked for 1800 x 1000)")
    print(f"4. after the fixes (update after edits): {meas.summary.text()!r}")
    meas.pixel_spin.setValue(PIXEL_SIZE[0])
    meas.unit_combo.setCurrentText(PIXEL_SIZE[1])
    t0 = time.perf_counter()
    meas.measure_btn.click()
    settle(app, 0.05)
    wait(app, lambda: not meas.busy)
    print(f"   with {PIXEL_SIZE[0]} {PIXEL_SIZE[1]}: {time.perf_counter() - t0:.1f} s; "
          f"{meas.summary.text()!r}")
    meas.include_border.setChecked(True)
    meas.measure_btn.click()
    settle(app, 0.05)
    wait(app, lambda: not meas.busy)
    print(f"   with 'include grains cut by the border': {meas.summary.text()!r}; "
          f"lognormal fit {meas.measurement.summary['lognormal'] is not None}")
    meas.include_border.setChecked(False)
    meas.measure_btn.click()
    settle(app, 0.05)
    wait(app, lambda: not meas.busy)
    table = meas.measurement.table
    print(f"   table: {len(table)} rows; columns {list(table.columns)}")
    whole = table[~table["cut_by_border"]] if "cut_by_border" in table else table
    biggest = int(whole.sort_values("area", ascending=False)["label"].iloc[0]) \
        if "area" in whole else int(table["label"].iloc[0])
    meas.select_grain(biggest)
    settle(app, 0.5)
    print(f"   selected grain {biggest}; layers: {[lay.name for lay in viewer.layers]}")

    # 5. export ----------------------------------------------------------------------------
    folder = Path(tempfile.mkdtemp(prefix="walkthrough_export_"))
    from napari_grains._widgets.measurement import EXPORTS

    defaults = {}
    meas.ask_save_path = lambda kind, default, filt: defaults.setdefault(kind, default) and \
        str(folder / Path(default).name)
    for kind, (text, *_rest) in EXPORTS.items():
        meas.export_buttons[kind].click()
    wait(app, lambda: not meas.busy)
    print(f"5. default names: {sorted(Path(p).name for p in defaults.values())} "
          f"in {Path(defaults['csv']).parent}")
    for p in sorted(folder.iterdir()):
        print(f"   {p.name}: {p.stat().st_size} bytes")
    replaced: list[Path] = []
    meas.ask_overwrite = lambda path: replaced.append(path) or False
    meas.export_buttons["csv"].click()
    print(f"   exporting the CSV again asks before replacing: {bool(replaced)}")

    # reopening the image offers the autosaved corrections back
    viewer.open_sample("napari-grains", "tem")
    settle(app, 1.0)
    wait(app, lambda: not corr.busy)  # its grain view: removing the layer earlier crashes
    print(f"6. reopened the sample: asked {asked}; layers {[lay.name for lay in viewer.layers]}")
    print(f"   notices: {notices}")
    for lay in [lay for lay in viewer.layers if "[1]" in lay.name]:
        viewer.layers.remove(lay)  # back to the one image for the picture
    meas.select_grain(biggest)
    for lay in viewer.layers:  # show the micrograph under the boundaries
        if lay.name.endswith(("edges", "initial guess", "iterations")):
            lay.visible = False
    viewer.layers.selection.active = boundaries
    # three docks stacked make the window taller than the screen: show only the measurement
    viewer.window.remove_dock_widget(edock)
    viewer.window.remove_dock_widget(cdock)
    settle(app, 1.0)
    viewer.window._qt_window.resize(1800, 1000)
    settle(app, 1.0)
    size = viewer.window._qt_window.size()
    print(f"   window with the measurement dock only: {size.width()} x {size.height()} px")
    viewer.reset_view()
    close_toasts(viewer)
    settle(app, 2)
    viewer.window.screenshot(str(out / "walkthrough_corrected.png"), canvas_only=False)

    viewer.close()
    settle(app, 0.5)
    print(out / "walkthrough_extraction.png")
    print(out / "walkthrough_corrected.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
