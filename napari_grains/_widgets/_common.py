"""Small pieces the docks share: layer lookup, derived-layer geometry, errors, a plot canvas."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFrame,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_grains.errors import GrainsError


class _VerticalScroll(QScrollArea):
    """A scroll area that scrolls vertically only and is as wide as its content wants."""

    def _width(self, content_width: int) -> int:
        return content_width + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    #: the least height a dock keeps when docks share the window, so none is squeezed down
    #: to one row: at most this, and at most a fifth of the screen (three docks fit)
    MIN_HEIGHT = 220

    def minimumSizeHint(self) -> QSize:
        hint, w = super().minimumSizeHint(), self.widget()
        if w is None:
            return hint
        screen = QApplication.primaryScreen()
        cap = self.MIN_HEIGHT if screen is None else min(
            self.MIN_HEIGHT, screen.availableGeometry().height() // 5)
        h = min(w.minimumSizeHint().height(), cap)
        return QSize(self._width(w.minimumSizeHint().width()), max(hint.height(), h))

    def sizeHint(self) -> QSize:
        hint, w = super().sizeHint(), self.widget()
        return hint if w is None else QSize(self._width(w.sizeHint().width()), hint.height())


def scrolled_layout(widget: QWidget) -> QVBoxLayout:
    """The vertical layout of a dock's content, inside a scroll area filling ``widget``.

    Without it a tall dock sets the dock area's minimum height, and with two or three docks
    open napari's window grew taller than the screen (a walk-through finding); now the dock
    scrolls instead.
    """
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _VerticalScroll(widget)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setFrameShape(QFrame.Shape.NoFrame)
    inner = QWidget(area)
    area.setWidget(inner)
    outer.addWidget(area)
    widget.scroll_area = area
    return QVBoxLayout(inner)


def if_alive(widget, slot: Callable) -> Callable:
    """Wrap ``slot`` so it does nothing once ``widget``'s Qt object is deleted.

    A worker may finish after its dock (or the whole viewer) was closed; touching the
    deleted widgets would raise in the Qt event loop.
    """

    def call(*args):
        try:
            widget.objectName()
        except RuntimeError:  # wrapped C/C++ object has been deleted
            return None
        return slot(*args)

    return call


def layer_named(viewer, name: str):
    """The layer called ``name``, or None (napari's LayerList has no ``get``)."""
    return viewer.layers[name] if name and name in viewer.layers else None


def pair_image_combo(image_combo: QComboBox, boundaries_name: str) -> None:
    """Select image ``X`` for boundaries layer ``X boundaries`` (the extraction dock's naming)."""
    suffix = " boundaries"
    boundaries_name = re.sub(r" \[\d+\]$", "", boundaries_name)  # "X boundaries [2]" too
    if boundaries_name.endswith(suffix):
        image = boundaries_name[: -len(suffix)]
        if image_combo.findText(image) >= 0:
            image_combo.setCurrentText(image)


def image_source_path(layer) -> Path | None:
    """The file an Image layer was read from, if napari or our reader recorded it."""
    if layer is None:
        return None
    p = getattr(getattr(layer, "source", None), "path", None) or layer.metadata.get("path")
    return Path(p) if p and Path(p).is_file() else None


#: Metadata key set on the layers our docks make (edges, Net1 map, iterations, previews).
OUTPUT_KEY = "napari_grains_output"
#: Name endings of those layers, for ones made before the key existed.
OUTPUT_SUFFIXES = (" edges", " initial guess", " iterations", " grains", " highlight",
                   " selected grain")


def is_dock_output(layer) -> bool:
    """Whether ``layer`` is an output of one of our docks (not an image the user opened)."""
    meta = getattr(layer, "metadata", None) or {}
    return bool(meta.get(OUTPUT_KEY)) or str(layer.name).endswith(OUTPUT_SUFFIXES)


def stoppable(gen_fn: Callable[[], Generator], stop: threading.Event) -> Generator:
    """Iterate the generator ``gen_fn()`` makes until it ends or ``stop`` is set.

    Meant to run in a napari generator worker: each event is yielded on, and ``stop`` is
    checked after each one. The core generator is always closed here, in the worker thread,
    so its ``finally`` clean-up (writing a checkpoint, shutting a pool) runs off the GUI.

    Parameters
    ----------
    gen_fn : callable
        Makes the generator, e.g. ``functools.partial(iter_batch, paths, out)``.
    stop : threading.Event
        Set from the GUI thread to stop after the current event.

    Returns
    -------
    object
        The generator's return value when it ran to its end; None when stopped.
    """
    gen = gen_fn()
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as end:
                return end.value
            yield event
            if stop.is_set():
                return None
    finally:
        gen.close()


def image_layer_names(viewer) -> list[str]:
    """Names of the viewer's 2-D image layers (gray, or RGB), top layer last."""
    from napari.layers import Image

    out = []
    for layer in viewer.layers:
        if isinstance(layer, Image) and (layer.ndim == 2 or (layer.rgb and layer.ndim == 2)):
            out.append(layer.name)
    return out


def refill_combo(combo: QComboBox, names: list[str], keep: str | None = None) -> None:
    """Replace a combo box's items, keeping ``keep`` (or the current text) selected if present."""
    keep = keep if keep is not None else combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if keep in names:
        combo.setCurrentText(keep)
    combo.blockSignals(False)


def layer_image(layer) -> np.ndarray:
    """The full-resolution 2-D array of an image layer (level 0 of a multiscale one).

    Raises
    ------
    GrainsError
        When the layer is not one 2-D (gray or RGB) image.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    arr = np.asarray(data)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise GrainsError(
            f"layer '{layer.name}' has shape {arr.shape}; pick a single 2-D image layer "
            "(for a stack, copy one plane to its own layer first)."
        )
    return arr


def fingerprint(arr: np.ndarray) -> str:
    """A cheap content fingerprint (shape, dtype and a ≤256×256 subsample)."""
    step = max(1, max(arr.shape[:2]) // 256)
    sample = np.ascontiguousarray(arr[::step, ::step])
    h = hashlib.blake2b(sample.tobytes(), digest_size=12)
    h.update(repr((arr.shape, str(arr.dtype))).encode())
    return h.hexdigest()


def geometry_of(layer, leading: int = 0) -> dict[str, Any]:
    """``scale``, ``translate`` and ``units`` that put a derived layer on top of ``layer``.

    Parameters
    ----------
    layer : napari layer (2-D)
    leading : int
        Number of extra leading axes the derived layer has (1 for an iteration stack).
    """
    scale = tuple(float(s) for s in layer.scale[-2:])
    translate = tuple(float(t) for t in layer.translate[-2:])
    units = tuple(str(u) for u in layer.units[-2:])
    return {
        "scale": (1.0,) * leading + scale,
        "translate": (0.0,) * leading + translate,
        "units": ("pixel",) * leading + units,
    }


def calibration_of(layer) -> dict[str, Any]:
    """The ``pixel_size`` / ``unit`` / ``path`` metadata a derived layer carries on."""
    meta = getattr(layer, "metadata", {}) or {}
    return {k: meta.get(k) for k in ("pixel_size", "unit", "path")}


def notify_error(exc: BaseException, doing: str) -> None:
    """Show a worker's error as a napari notification (never a console traceback).

    A :class:`GrainsError` is the user's to fix, so its message is shown as it is; anything
    else is a bug, shown with its type so it can be reported.
    """
    if isinstance(exc, GrainsError):
        show_error(f"{doing}: {exc}")
    else:
        show_error(f"{doing} failed unexpectedly ({type(exc).__name__}: {exc}). "
                   "Please report this with the image and settings used.")


class ConvergencePlot:
    """A small matplotlib canvas: Net2's change per iteration against the tolerance.

    The axes and lines are made once and only their data change, with a fixed layout (no
    constrained/tight layout pass), so an update costs a few milliseconds of GUI time.

    Attributes
    ----------
    canvas : FigureCanvasQTAgg
        The Qt widget to put in a layout.
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import (
            LogFormatterSciNotation,
            LogLocator,
            MaxNLocator,
            NullFormatter,
        )

        self.figure = Figure(figsize=(3.2, 1.9), dpi=90)
        self.figure.subplots_adjust(left=0.25, right=0.97, bottom=0.24, top=0.95)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.canvas.setFixedHeight(170)
        ax = self.ax = self.figure.add_subplot()
        ax.set_xlabel("Net2 iteration", fontsize=8)
        ax.set_ylabel("mean |change|", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(1e-4, 1.0)
        ax.set_autoscale_on(False)  # limits are set from the data in set()
        (self._curve,) = ax.plot([], [], "o-", ms=3, lw=1.2, color="tab:blue", label="change")
        self._tol = ax.axhline(1e-3, ls="--", lw=1, color="tab:red", label="tolerance")
        self._tol.set_visible(False)
        ax.legend(handles=[self._curve, Line2D([], [], ls="--", lw=1, color="tab:red")],
                  labels=["change", "tolerance"], fontsize=7, loc="upper right")
        self.changes: list[float] = []
        self.tolerance: float | None = None
        self.set([], None)

    def set(self, changes: list[float] | np.ndarray, tolerance: float | None) -> None:
        """Show these changes (one per iteration) and the tolerance line."""
        self.changes = [float(c) for c in changes]
        self.tolerance = tolerance
        k = np.arange(1, len(self.changes) + 1)
        y = np.maximum(np.asarray(self.changes, float), 1e-9)
        self._curve.set_data(k, y)
        values = list(y)
        if tolerance:
            self._tol.set_ydata([tolerance, tolerance])
            values.append(float(tolerance))
        self._tol.set_visible(bool(tolerance))
        self.ax.set_xlim(0.5, max(len(self.changes), 2) + 0.5)
        if values:
            lo, hi = min(values), max(values)
            self.ax.set_ylim(lo / 2, hi * 2)
        self.canvas.draw_idle()


def writable_home(image_path: Path) -> bool:
    """Whether files may go next to this image: not inside our package data, folder writable.

    The bundled samples live in the installed package; nothing of the user's belongs there.
    """
    import os

    import napari_grains

    package = Path(napari_grains.__file__).resolve().parent
    folder = Path(image_path).resolve().parent
    return package not in (folder, *folder.parents) and os.access(folder, os.W_OK)
