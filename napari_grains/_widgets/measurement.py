"""Measurement dock: grain statistics of the current (corrected) boundaries, live.

Measuring runs :func:`napari_grains.measure.measure` on a worker, and the histogram is rendered
there too (matplotlib Agg to an RGBA buffer), so the GUI thread only swaps in results. The
per-grain table is a Qt model over the core's pandas table (no copy per cell); selecting a row
highlights its grain in a small ``<boundaries> selected grain`` layer (its bounding box only, so
the highlight never re-uploads a full-size image), and clicking a grain in the viewer selects
its row. The measurement reruns, debounced, after every edit of the
boundaries layer. Exports call the core's ``Measurement.to_*`` methods and never overwrite a
file without asking. *Run on folder* drives :func:`napari_grains.batch.iter_batch` with a
progress bar and Cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Import the scikit-image submodules the workers use here, on the GUI thread: their lazy
# loading is not thread-safe, and two workers importing at once fail ("partially initialized").
import skimage.measure
import skimage.morphology  # noqa: F401
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QAbstractTableModel, Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker as create_short_worker

from napari_grains._widgets._common import (
    if_alive,
    layer_named,
    pair_image_combo,
    scrolled_layout,
    stoppable,
    writable_home,
)
from napari_grains.errors import GrainsError

MEASURE_DEBOUNCE_MS = 800
UNITS = ("nm", "µm", "mm")

#: Export kind -> (button text, file filter, Measurement method, default file suffix)
EXPORTS = {
    "csv": ("CSV table", "CSV (*.csv)", "to_csv", "_grains.csv"),
    "json": ("JSON summary", "JSON (*.json)", "to_json", "_summary.json"),
    "histogram_png": ("Histogram PNG", "PNG (*.png)", "to_histogram_png", "_histogram.png"),
    "histogram_svg": ("Histogram SVG", "SVG (*.svg)", "to_histogram_svg", "_histogram.svg"),
    "overlay": ("Overlay PNG", "PNG (*.png)", "to_overlay_png", "_overlay.png"),
    "labels": ("Label TIFF", "TIFF (*.tif *.tiff)", "to_label_tiff", "_labels.tif"),
}


def render_histogram(measurement, *, bins: int, log: bool, weights: str,
                     size: tuple[int, int] = (460, 300)) -> np.ndarray:
    """The measurement's histogram (with lognormal fit) as an RGBA array (off the GUI thread).

    ``size`` is (width, height) in screen pixels, so the picture fits the dock unscaled.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = measurement.histogram(bins=bins, log=log, weights=weights)
    fig.set_dpi(80)
    fig.set_size_inches(max(size[0], 240) / 80, max(size[1], 180) / 80)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _measure_job(boundaries, image, pixel_size, unit, params, hist):
    """Worker: measure, render the histogram, and find each grain's bounding box.

    The boxes (``scipy.ndimage.find_objects``, index ``label - 1``) let the GUI highlight a
    selected grain by looking at its box only, never at the whole label image.
    """
    from scipy import ndimage

    from napari_grains.io import to_gray_float
    from napari_grains.measure import measure

    gray = to_gray_float(image) if image is not None else None
    m = measure(boundaries, pixel_size=pixel_size, unit=unit, image=gray, params=params)
    rgba = render_histogram(m, **hist) if m.n_grains else None
    return m, rgba, ndimage.find_objects(m.labels)


def _batch_events(paths, out_dir, stop: threading.Event, **kwargs):
    """Iterate :func:`napari_grains.batch.iter_batch` until done or ``stop`` is set."""
    from napari_grains.batch import iter_batch

    yield from stoppable(lambda: iter_batch(paths, out_dir, **kwargs), stop)


def summary_text(measurement) -> str:
    """Count, mean/median ECD and ASTM E112 G numbers, as the dock shows them."""
    s = measurement.summary
    unit = measurement.unit or "px"
    ecd = s["equivalent_diameter"].get(unit, s["equivalent_diameter"]["px"])
    e = s["astm_e112"]
    g_p = (e.get("planimetric") or {}).get("G")
    g_i = (e.get("intercept") or {}).get("G")

    def g(v):
        return "— (needs a pixel size)" if v is None else f"{v:.2f}"

    def size(v):  # None when no grain is measurable (e.g. every grain cut by the border)
        return "—" if v is None else f"{v:.4g} {unit}"

    return (f"Grains: {s['n_grains']} ({s['n_cut_by_border']} cut by the border)\n"
            f"ECD mean {size(ecd.get('mean'))}, median {size(ecd.get('median'))}\n"
            f"ASTM E112 G: planimetric {g(g_p)}, intercept {g(g_i)}")


_PIXEL_HEADERS = {
    "centroid-0": "centroid row (px)", "centroid-1": "centroid col (px)", "area": "area (px²)",
    "equivalent_diameter": "ECD (px)", "perimeter": "perimeter (px)",
    "axis_major_length": "major axis (px)", "axis_minor_length": "minor axis (px)",
    "aspect_ratio": "aspect ratio", "orientation": "orientation (rad)",
    "feret_diameter_max": "Feret max (px)", "feret_diameter_min": "Feret min (px)",
    "n_neighbors": "neighbours", "touches_border": "touches border",
    "cut_by_border": "cut by border",
}
_UNITS = {"nm": "nm", "um": "µm", "mm": "mm"}


def column_header(name: str) -> str:
    """What the table shows for a column of the measurement table: its meaning and unit
    (``centroid-0`` → ``centroid row (px)``, ``area_nm2`` → ``area (nm²)``). Exports keep the
    column names."""
    if name in _PIXEL_HEADERS:
        return _PIXEL_HEADERS[name]
    for u, shown in _UNITS.items():
        if name.endswith(f"_{u}2"):
            base = column_header(name[: -len(u) - 2])
            return base.replace("(px²)", f"({shown}²)")
        if name.endswith(f"_{u}"):
            base = column_header(name[: -len(u) - 1])
            return base.replace("(px)", f"({shown})")
    return name


class GrainTableModel(QAbstractTableModel):
    """A read-only Qt model over a pandas per-grain table, sorted with numpy.

    Sorting is done here with one ``argsort`` of the column (``sort`` is what
    ``QTableView.setSortingEnabled`` calls); a ``QSortFilterProxyModel`` would call
    :meth:`data` from Python for every comparison, which takes seconds at 5,000 grains.
    ``order[view_row]`` is the table row shown at ``view_row``.
    """

    def __init__(self, table=None):
        super().__init__()
        self._sort = (0, Qt.AscendingOrder)
        self.set_table(table)

    def set_table(self, table) -> None:
        """Show ``table`` (a DataFrame, or None for empty), keeping the current sort."""
        self.beginResetModel()
        self.table = table
        self._columns = [str(c) for c in table.columns] if table is not None else []
        self._arrays = [table[c].to_numpy() for c in table.columns] if table is not None else []
        self.order = np.arange(len(table) if table is not None else 0)
        self._apply_sort(*self._sort)
        self.endResetModel()

    def _apply_sort(self, column: int, order) -> None:
        if not self._arrays or column < 0 or column >= len(self._arrays):
            return
        key = self._arrays[column]
        idx = np.argsort(key, kind="stable")
        self.order = idx[::-1] if order == Qt.DescendingOrder else idx

    def sort(self, column, order=Qt.AscendingOrder):  # Qt API
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        self._apply_sort(column, order)
        self.layoutChanged.emit()

    def table_row(self, view_row: int) -> int:
        """The table row shown at ``view_row``."""
        return int(self.order[view_row])

    def view_row(self, table_row: int) -> int:
        """Where table row ``table_row`` is shown."""
        return int(np.flatnonzero(self.order == table_row)[0])

    def rowCount(self, parent=None):  # Qt API name
        return 0 if parent is not None and parent.isValid() else len(self.order)

    def columnCount(self, parent=None):  # Qt API name
        return 0 if parent is not None and parent.isValid() else len(self._columns)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid() or role != Qt.DisplayRole:
            return None
        v = self._arrays[index.column()][self.order[index.row()]]
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return str(v)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # Qt API name
        if role != Qt.DisplayRole:
            return None
        if orientation == Qt.Horizontal:
            return column_header(self._columns[section]) if section < len(self._columns) else None
        return str(section + 1)


class MeasurementWidget(QWidget):
    """Dock widget that measures the grains of a boundaries layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.measurement = None
        self._grain_boxes: list = []  # find_objects of the measured labels (label - 1)
        #: Injectable dialogs (tests replace them).
        self.ask_save_path: Callable[[str, str, str], str | None] = self._dialog_save_path
        self.ask_overwrite: Callable[[Path], bool] = self._dialog_overwrite
        self.ask_folders: Callable[[], tuple[str, str] | None] = self._dialog_folders
        self._busy = 0
        self._seq = 0
        self._watched: set[int] = set()
        self._batch_worker = None
        self._batch_stop = threading.Event()
        self.batch_events: list = []
        self._pixel_source: str | None = None
        self._measured_layer = None
        self._build()
        self._timer = QTimer(self, singleShot=True, interval=MEASURE_DEBOUNCE_MS)
        self._timer.timeout.connect(self.measure)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self._refresh_layers()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = scrolled_layout(self)
        form = QFormLayout()
        self.boundaries_combo = QComboBox()
        self.image_combo = QComboBox()
        form.addRow("Boundaries", self.boundaries_combo)
        form.addRow("Image", self.image_combo)
        self.pixel_spin = QDoubleSpinBox(decimals=6, minimum=0.0, maximum=1e9, value=0.0)
        self.pixel_spin.setSpecialValueText("unknown")
        self.unit_combo = QComboBox()
        self.unit_combo.addItems(UNITS)
        row = QHBoxLayout()
        row.addWidget(self.pixel_spin)
        row.addWidget(self.unit_combo)
        form.addRow("Pixel size", row)
        self.pixel_warning = QLabel()
        self.pixel_warning.setWordWrap(True)
        self.pixel_warning.setStyleSheet("color: #e0a030")
        form.addRow(self.pixel_warning)
        self.min_area = QSpinBox(minimum=0, maximum=100000, value=10, suffix=" px")
        self.include_border = QCheckBox("include grains cut by the border in statistics")
        form.addRow("Smallest grain", self.min_area)
        form.addRow(self.include_border)
        lay.addLayout(form)

        row = QHBoxLayout()
        self.measure_btn = QPushButton("Measure")
        self.auto_check = QCheckBox("update after edits", checked=True)
        self.pick_check = QCheckBox("click selects grain", checked=True)
        row.addWidget(self.measure_btn)
        row.addWidget(self.auto_check)
        row.addWidget(self.pick_check)
        lay.addLayout(row)
        self.summary = QLabel("Not measured yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.summary)

        self.model = GrainTableModel()
        self.table_view = QTableView()
        self.table_view.setModel(self.model)
        self.table_view.setSortingEnabled(True)
        self.table_view.sortByColumn(0, Qt.AscendingOrder)  # by label, as the core lists them
        self.table_view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table_view.setMinimumHeight(160)
        lay.addWidget(self.table_view)

        hist = QGroupBox("Histogram")
        hl = QVBoxLayout(hist)
        row = QHBoxLayout()
        self.bins_spin = QSpinBox(minimum=3, maximum=200, value=20, prefix="bins ")
        self.log_check = QCheckBox("log")
        self.weights_combo = QComboBox()
        self.weights_combo.addItems(["count", "area"])
        for wdg in (self.bins_spin, self.log_check, self.weights_combo):
            row.addWidget(wdg)
        hl.addLayout(row)
        self.hist_label = QLabel()
        self.hist_label.setMinimumHeight(220)
        self.hist_label.setAlignment(Qt.AlignCenter)
        hl.addWidget(self.hist_label)
        lay.addWidget(hist)

        exp = QGroupBox("Export")
        grid = QGridLayout(exp)
        self.export_buttons = {}
        for i, (kind, (text, *_)) in enumerate(EXPORTS.items()):
            btn = QPushButton(text)
            btn.setEnabled(False)
            btn.clicked.connect(lambda _=False, k=kind: self.export(k))
            grid.addWidget(btn, i // 3, i % 3)
            self.export_buttons[kind] = btn
        lay.addWidget(exp)

        batch = QGroupBox("Run on folder")
        bl = QVBoxLayout(batch)
        row = QHBoxLayout()
        self.batch_btn = QPushButton("Run on folder…")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        row.addWidget(self.batch_btn)
        row.addWidget(self.cancel_btn)
        bl.addLayout(row)
        self.batch_progress = QProgressBar()
        self.batch_status = QLabel("")
        self.batch_status.setWordWrap(True)
        bl.addWidget(self.batch_progress)
        bl.addWidget(self.batch_status)
        lay.addWidget(batch)

        self.measure_btn.clicked.connect(self.measure)
        self.image_combo.currentIndexChanged.connect(self._pixel_from_image)
        self.boundaries_combo.currentIndexChanged.connect(self._watch_boundaries)
        self.pixel_spin.valueChanged.connect(self._update_warning)
        for sig in (self.bins_spin.valueChanged, self.log_check.toggled,
                    self.weights_combo.currentIndexChanged):
            sig.connect(lambda *a: self.rerender_histogram())
        self.table_view.selectionModel().selectionChanged.connect(self._on_rows_selected)
        self.batch_btn.clicked.connect(self.run_folder)
        self.cancel_btn.clicked.connect(self.cancel_batch)

    # -------------------------------------------------------------- layers
    def _refresh_layers(self, event=None) -> None:
        for combo, kind in ((self.boundaries_combo, "Labels"), (self.image_combo, "Image")):
            current = combo.currentText()
            names = [lay.name for lay in self.viewer.layers if type(lay).__name__ == kind
                     and not lay.name.endswith((" grains", " highlight"))]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self.image_combo.currentText() != self._pixel_source:
            self._pixel_from_image()  # only for a new image: keep a pixel size the user typed
        self._watch_boundaries()

    def _layer(self, combo):
        return layer_named(self.viewer, combo.currentText())

    @property
    def boundaries_layer(self):
        """The Labels layer measured (nonzero = boundary), or None."""
        return self._layer(self.boundaries_combo)

    @property
    def image_layer(self):
        """The micrograph layer (pixel size, overlays), or None."""
        return self._layer(self.image_combo)

    def _pixel_from_image(self, *args) -> None:
        self._pixel_source = self.image_combo.currentText()
        image = self.image_layer
        meta = image.metadata if image is not None else {}
        ps, unit = meta.get("pixel_size"), meta.get("unit")
        self.pixel_spin.setValue(float(ps) if ps else 0.0)
        if unit:
            from napari_grains.grains import normalize_unit

            u = normalize_unit(unit)
            if u in UNITS:
                self.unit_combo.setCurrentText(u)
        self._update_warning()

    def _update_warning(self, *args) -> None:
        self.pixel_warning.setText(
            "" if self.pixel_spin.value() > 0 else
            "No pixel size known for this image: sizes stay in pixels and the ASTM grain "
            "size numbers need one. Enter it from the scale bar."
        )

    def _watch_boundaries(self, *args) -> None:
        layer = self.boundaries_layer
        if layer is None:
            return
        pair_image_combo(self.image_combo, layer.name)
        if id(layer) in self._watched:
            return
        self._watched.add(id(layer))
        for ev in (layer.events.paint, layer.events.set_data, layer.events.data):
            ev.connect(self._on_edited)

    def _on_edited(self, event=None) -> None:
        if self.auto_check.isChecked() and self.measurement is not None:
            self._timer.start()

    # ------------------------------------------------------------- measure
    @property
    def busy(self) -> bool:
        """True while a measurement, histogram or export runs on a worker."""
        return self._busy > 0

    def pixel_size(self) -> tuple[float | None, str | None]:
        """The pixel size and unit the dock will use (None, None when unknown)."""
        ps = self.pixel_spin.value()
        return (ps, self.unit_combo.currentText()) if ps > 0 else (None, None)

    def _hist_kwargs(self, size: bool = True) -> dict:
        kw = {"bins": self.bins_spin.value(), "log": self.log_check.isChecked(),
              "weights": self.weights_combo.currentText()}
        if size:
            w = self.hist_label.contentsRect().width()
            kw["size"] = (w, int(w * 0.62))
        return kw

    def _start(self, fn, *args, on_done=None):
        # one message per error: see correction.CorrectionWidget._start
        worker = create_short_worker(fn, *args, _start_thread=False,
                                     _connect={"errored": if_alive(self, self._on_error)})
        self._busy += 1
        if on_done is not None:
            worker.returned.connect(if_alive(self, on_done))
        worker.finished.connect(lambda: setattr(self, "_busy", self._busy - 1))
        worker.start()
        return worker

    def measure(self) -> None:
        """Measure the current boundaries on a worker; results replace the shown ones."""
        from napari_grains.measure import MeasureParams

        self._timer.stop()
        layer = self.boundaries_layer
        if layer is None:
            show_warning("Choose a boundaries layer first (run the extraction dock).")
            return
        boundaries = np.asarray(layer.data) != 0
        image = self.image_layer
        img = None
        if image is not None and np.shape(image.data)[-2:] == boundaries.shape:
            img = np.asarray(image.data)  # converted to gray float on the worker
        ps, unit = self.pixel_size()
        params = MeasureParams(min_area=self.min_area.value(),
                               include_border=self.include_border.isChecked())
        self._seq += 1
        seq = self._seq
        self.summary.setText("Measuring…")
        self._start(_measure_job, boundaries, img, ps, unit, params, self._hist_kwargs(),
                    on_done=lambda res: self._show(seq, layer, *res))

    def _show(self, seq: int, layer, measurement, rgba, boxes) -> None:
        if seq != self._seq:
            return  # an older run finished after a newer one started
        self.measurement = measurement
        self._grain_boxes = boxes
        self.summary.setText(summary_text(measurement))
        self.model.set_table(measurement.table)
        self._set_histogram(rgba)
        self._measured_layer = layer
        self._on_rows_selected()  # the old highlight belongs to the old labels
        for btn in self.export_buttons.values():
            btn.setEnabled(measurement.n_grains > 0)

    @property
    def highlight_layer(self):
        """The small Labels layer outlining the selected grain, or None."""
        layer = self._measured_layer
        return layer_named(self.viewer, f"{layer.name} selected grain") if layer else None

    def _set_histogram(self, rgba) -> None:
        if rgba is None:
            self.hist_label.setText("no grains to plot")
            return
        h, w = rgba.shape[:2]
        self._hist_rgba = np.ascontiguousarray(rgba)
        qimg = QImage(self._hist_rgba.data, w, h, 4 * w, QImage.Format_RGBA8888)
        pix = QPixmap.fromImage(qimg)
        if w > self.hist_label.contentsRect().width() > 0:  # the dock got narrower
            pix = pix.scaledToWidth(self.hist_label.contentsRect().width(),
                                    Qt.SmoothTransformation)
        self.hist_label.setPixmap(pix)

    def rerender_histogram(self) -> None:
        """Redraw the histogram with the current bin controls (on a worker)."""
        if self.measurement is None or self.measurement.n_grains == 0:
            return
        m, seq = self.measurement, self._seq
        self._start(lambda: render_histogram(m, **self._hist_kwargs()),
                    on_done=lambda rgba: seq == self._seq and self._set_histogram(rgba))

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, GrainsError):
            show_warning(str(exc))
        else:
            show_error(f"{type(exc).__name__}: {exc}")

    # ----------------------------------------------------------- selection
    def selected_labels(self) -> list[int]:
        """Grain labels of the selected table rows."""
        if self.measurement is None:
            return []
        rows = {self.model.table_row(i.row())
                for i in self.table_view.selectionModel().selectedRows()}
        labels = self.measurement.table["label"].to_numpy()
        return [int(labels[r]) for r in sorted(rows)]

    def _on_rows_selected(self, *args) -> None:
        """Show the selected grain as a small layer: only its bounding box is sent to napari
        (re-colouring a full-size label image for a highlight stalls the GUI)."""
        layer, labels = self._measured_layer, self.selected_labels()
        hl = self.highlight_layer
        if layer is None or not labels:
            if hl is not None:
                hl.visible = False
            return
        boxes = self._grain_boxes
        box = boxes[labels[0] - 1] if 0 < labels[0] <= len(boxes) else None
        if box is None:  # no such grain in the labels (cannot happen for a listed row)
            if hl is not None:
                hl.visible = False
            return
        r0, c0 = box[0].start, box[1].start
        crop = (self.measurement.labels[box] == labels[0]).astype(np.uint8)
        scale = np.asarray(layer.scale[-2:], float)
        translate = np.asarray(layer.translate[-2:], float) + scale * (r0, c0)
        if hl is None:
            from napari.utils.colormaps import DirectLabelColormap

            hl = self.viewer.add_labels(
                crop, name=f"{layer.name} selected grain", scale=scale, translate=translate,
                opacity=0.7,
                colormap=DirectLabelColormap(color_dict={None: "transparent", 1: "yellow"}))
            self.viewer.layers.selection.active = layer
        else:
            hl.data = crop
            hl.translate = translate
            hl.visible = True

    def select_grain(self, label: int) -> bool:
        """Select the table row of grain ``label``; False when no such grain is listed."""
        if self.measurement is None or label <= 0:
            return False
        hits = np.flatnonzero(self.measurement.table["label"].to_numpy() == label)
        if hits.size == 0:
            return False
        index = self.model.index(self.model.view_row(int(hits[0])), 0)
        self.table_view.selectRow(index.row())
        self.table_view.scrollTo(index)
        return True

    def _on_click(self, viewer, event) -> None:
        """A click on the image selects the grain's row (not while painting or filling)."""
        layer = self._measured_layer
        if (event.type != "mouse_press" or self.measurement is None or layer is None
                or not self.pick_check.isChecked()
                or getattr(layer, "mode", "pan_zoom") not in ("pan_zoom", "transform")):
            return
        r, c = (round(v) for v in np.asarray(layer.world_to_data(event.position))[-2:])
        labels = self.measurement.labels
        if 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]:
            self.select_grain(int(labels[r, c]))

    # -------------------------------------------------------------- export
    def _stem(self) -> str:
        image = self.image_layer
        if image is not None and image.metadata.get("path"):
            return Path(image.metadata["path"]).stem
        return (image.name if image is not None else "grains").replace(" ", "_")

    def _dialog_save_path(self, kind: str, default: str, filt: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {EXPORTS[kind][0]}", default, filt,
                                              options=QFileDialog.DontConfirmOverwrite)
        return path or None

    def _dialog_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(self, "Replace file?", f"{path} exists. Replace it?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def export(self, kind: str, path: str | None = None) -> None:
        """Export one result (see :data:`EXPORTS`), asking before replacing a file."""
        if self.measurement is None:
            show_warning("Measure first, then export.")
            return
        _, filt, method, suffix = EXPORTS[kind]
        image = self.image_layer
        source = Path(image.metadata["path"]) if (
            image is not None and image.metadata.get("path")) else None
        # next to the micrograph, unless that is the package's sample data or read-only
        folder = source.parent if source is not None and writable_home(source) else Path.home()
        if path is None:
            path = self.ask_save_path(kind, str(folder / f"{self._stem()}{suffix}"), filt)
        if not path:
            return
        target = Path(path)
        if target.exists() and not self.ask_overwrite(target):
            return
        kwargs = self._hist_kwargs(size=False) if kind.startswith("histogram") else {}
        fn = getattr(self.measurement, method)
        self._start(lambda: fn(target, overwrite=True, **kwargs),
                    on_done=lambda p: show_info(f"Saved {p}"))

    # --------------------------------------------------------------- batch
    def _dialog_folders(self) -> tuple[str, str] | None:
        src = QFileDialog.getExistingDirectory(self, "Folder of micrographs")
        if not src:
            return None
        out = QFileDialog.getExistingDirectory(self, "Folder for the results")
        return (src, out) if out else None

    def run_folder(self, folders: tuple[str, str] | None = None, *,
                   workers: int | None = None) -> None:
        """Extract and measure every image of a folder (as ``napari-grains run``), with Cancel.

        Results go to ``<output folder>/<image stem>/`` plus ``summary.csv``; an output folder
        that already holds results is refused (choose another) rather than overwritten.
        """
        folders = folders or self.ask_folders()
        if not folders:
            return
        src, out = folders
        ps, unit = self.pixel_size()
        self._batch_stop = threading.Event()
        self.batch_progress.setValue(0)
        self.batch_status.setText(f"running on {src}…")
        worker = create_worker(_batch_events, [src], out, self._batch_stop, pixel_size=ps,
                               unit=unit, workers=workers, _start_thread=False,
                               _connect={"errored": if_alive(self, self._on_error)})
        worker.yielded.connect(if_alive(self, self._on_batch_event))
        worker.finished.connect(if_alive(self, self._on_batch_finished))
        self._batch_worker = worker
        self.batch_events: list = []
        self.batch_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        worker.start()

    @property
    def batch_running(self) -> bool:
        """True while a folder run is in progress."""
        return self._batch_worker is not None

    def _on_batch_event(self, ev) -> None:
        self.batch_events.append(ev)
        self.batch_progress.setMaximum(int(ev.n_total))
        self.batch_progress.setValue(int(ev.n_finished))
        state = "done" if ev.kind == "done" else f"FAILED ({ev.error})"
        self.batch_status.setText(f"{ev.n_finished}/{ev.n_total}: {Path(ev.path).name} {state}")

    def cancel_batch(self) -> None:
        """Stop the folder run once the image in progress is finished."""
        if self._batch_worker is not None:
            self._batch_stop.set()
            self.batch_status.setText("cancelling after the current image…")

    def _on_batch_finished(self) -> None:
        worker, self._batch_worker = self._batch_worker, None
        self.batch_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if worker is not None and self._batch_stop.is_set():
            self.batch_status.setText("cancelled; finished images are saved")
        else:
            self.batch_status.setText("folder done")
