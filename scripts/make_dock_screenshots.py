"""Screenshots of the correction, measurement and training docks in use (docs/img/dock_*.png).

Opens the TEM sample in a shown napari window (a virtual X display is started when there is
none), extracts its boundaries with the core pipeline, then, for each dock:

* correction: the live grain view, a gap-closing preview and a boundary being drawn;
* measurement: the grains measured, a table row selected (its grain highlighted), histogram;
* training: a short training run on synthetic data (preview pair shown), finished.

Run::

    .venv/bin/python scripts/make_dock_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def wait(app, condition, timeout: float = 300.0) -> bool:
    t0 = time.perf_counter()
    while not condition():
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > timeout:
            return False
    return True


def settle(app, seconds: float = 1.0) -> None:
    wait(app, lambda: False, timeout=seconds)


def close_toasts(viewer) -> None:
    """Close napari's notification pop-ups so they do not cover the screenshot."""
    from qtpy.QtWidgets import QWidget

    for w in viewer.window._qt_window.findChildren(QWidget):
        if type(w).__name__ == "NapariQtNotification":
            w.close()


def zoom_left(viewer, image, fraction: float = 0.4) -> None:
    """Show the left ``fraction`` of the (wide) TEM strip, where its grains are."""
    viewer.reset_view()
    rows, cols = np.shape(image.data)[-2:]
    sy, sx = image.scale[-2:]
    viewer.camera.center = (rows * sy / 2, cols * sx * fraction / 2)
    viewer.camera.zoom = viewer.camera.zoom / fraction


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Screenshots of the docks in use.")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "img"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        return _shoot(out)
    finally:
        if display is not None:
            display.stop()


def _shoot(out: Path) -> int:
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_grains._widgets.correction import CorrectionWidget
    from napari_grains._widgets.measurement import MeasurementWidget
    from napari_grains._widgets.training import TrainingWidget
    from napari_grains.extract import extract

    torch.set_num_threads(2)
    os.environ.setdefault("XDG_DATA_HOME", tempfile.mkdtemp(prefix="dock_shots_"))
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1500, 900)
    viewer.open_sample("napari-grains", "tem")
    image = viewer.layers[-1]
    boundaries = extract(np.asarray(image.data)).boundaries.astype(np.uint8)
    layer = viewer.add_labels(boundaries, name=f"{image.name} boundaries",
                              scale=image.scale, opacity=0.8)
    settle(app)

    # correction dock ---------------------------------------------------------------------
    corr = CorrectionWidget(viewer)
    corr.ask_unsaved = lambda text, can_cancel: "discard"
    dock = viewer.window.add_dock_widget(corr, name="Boundary correction")
    wait(app, lambda: corr.n_grains is not None and not corr.busy)
    corr.gap_spin.setValue(25)
    corr.preview_btn.click()
    wait(app, lambda: not corr.busy)
    corr.draw_btn.setChecked(True)
    rows, cols = boundaries.shape
    for c in (0.30, 0.36):
        corr.add_draft_point((rows * 0.5, cols * c))
    viewer.layers.selection.active = layer
    zoom_left(viewer, image)
    close_toasts(viewer)
    settle(app, 2)
    viewer.window.screenshot(str(out / "dock_correction.png"), canvas_only=False)
    corr.cancel_line()
    corr.draw_btn.setChecked(False)
    corr._remove_layer("gap preview")
    viewer.window.remove_dock_widget(dock)

    # measurement dock --------------------------------------------------------------------
    # (on the synthetic sample's true boundaries: the TEM strip has only a few whole grains)
    for lay in list(viewer.layers):
        lay.visible = False
    viewer.open_sample("napari-grains", "synthetic")
    truth = next(lay for lay in viewer.layers if lay.name.endswith("ground truth"))
    meas = MeasurementWidget(viewer)
    dock = viewer.window.add_dock_widget(meas, name="Grain measurement")
    meas.boundaries_combo.setCurrentText(truth.name)
    meas.image_combo.setCurrentText("synthetic TEM")
    meas.measure()
    wait(app, lambda: meas.measurement is not None and not meas.busy)
    table = meas.measurement.table  # highlight the grain nearest the image centre
    rows, cols = meas.measurement.labels.shape
    d2 = (table["centroid-0"] - rows / 2) ** 2 + (table["centroid-1"] - cols / 2) ** 2
    meas.select_grain(int(table["label"].iloc[int(np.argmin(d2.to_numpy()))]))
    viewer.reset_view()
    close_toasts(viewer)
    settle(app, 2)
    viewer.window.screenshot(str(out / "dock_measurement.png"), canvas_only=False)
    viewer.window.remove_dock_widget(dock)

    # training dock -----------------------------------------------------------------------
    for lay in list(viewer.layers):
        viewer.layers.remove(lay)
    train = TrainingWidget(viewer)
    dock = viewer.window.add_dock_widget(train, name="Train a model")
    train.n_pairs.setValue(32)
    train.net1_epochs.setValue(2)
    train.net2_epochs.setValue(2)
    train.batch.setValue(8)
    train.out_edit.setText(str(Path(tempfile.mkdtemp(prefix="dock_shots_model_")) / "model"))
    train.update_preview()
    wait(app, lambda: "synthetic target" in viewer.layers)
    train.start()
    wait(app, lambda: not train.running, timeout=900)
    viewer.reset_view()
    close_toasts(viewer)
    settle(app, 2)
    viewer.window.screenshot(str(out / "dock_training.png"), canvas_only=False)
    viewer.close()
    settle(app, 0.5)
    for name in ("correction", "measurement", "training"):
        print(out / f"dock_{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
