"""Screenshots of the real napari window with the extraction dock, for the README and docs.

Opens napari (shown, on a virtual X display when there is none) exactly as
``napari-grains gui --sample tem`` does, runs the whole pipeline with the dock's default
settings (native mode, automatic scale, the default model) and saves, in ``docs/img/``:

* ``gui_edges.png``: the live edge-stack preview (Sobel red, LoG green, Canny blue);
* ``gui_iterations.png``: the Net2 iterations layer with the dims slider on an early
  iteration, and the convergence plot in the dock;
* ``gui_boundaries.png``: the final boundaries as an editable Labels layer on the image.

Run::

    .venv/bin/python scripts/make_gui_screenshots.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def _wait(app, condition, timeout: float = 900.0) -> None:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        app.processEvents()
        if condition():
            return
        time.sleep(0.01)
    raise TimeoutError("the dock did not finish in time")


def _settle(app, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _close_toasts(viewer) -> None:
    """Close napari's notification pop-ups (e.g. its PyQt5 deprecation notice)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def main() -> int:
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1920, 1200))
        display.start()
    try:
        import imageio.v3 as iio
        import torch
        from qtpy.QtWidgets import QApplication

        from napari_grains.cli._gui import build_viewer

        torch.set_num_threads(2)
        OUT.mkdir(parents=True, exist_ok=True)
        viewer, dock = build_viewer(sample="tem", show=True)
        app = QApplication.instance()
        viewer.window._qt_window.resize(1800, 1080)
        name = "TEM (Saleh et al.)"
        _wait(app, lambda: dock.previews_shown > 0)
        viewer.reset_view()
        _settle(app)

        def shot(filename: str) -> None:
            _settle(app, 1.5)
            _close_toasts(viewer)
            _settle(app, 0.5)
            path = OUT / filename
            iio.imwrite(path, viewer.screenshot(canvas_only=False, flash=False))
            print(f"wrote {path}")

        shot("gui_edges.png")

        dock.all_btn.click()
        _wait(app, lambda: dock.worker is None and f"{name} boundaries" in viewer.layers)
        n = viewer.layers[f"{name} iterations"].data.shape[0]
        viewer.layers[f"{name} edges"].visible = False
        viewer.layers[f"{name} initial guess"].visible = False
        viewer.layers[f"{name} boundaries"].visible = False
        iters = viewer.layers[f"{name} iterations"]
        iters.opacity = 0.85
        viewer.layers.selection.active = iters
        viewer.dims.set_current_step(0, min(2, n - 1))
        shot("gui_iterations.png")

        iters.visible = False
        bounds = viewer.layers[f"{name} boundaries"]
        bounds.visible = True
        viewer.layers.selection.active = bounds
        viewer.dims.set_current_step(0, n - 1)
        shot("gui_boundaries.png")
        print(f"{n - 1} Net2 iterations, converged: {dock.session.converged}, "
              f"scale {dock.session.params.scale:.3g}")
        viewer.close()
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
