"""Correction dock: grain-aware editing of a boundaries layer, live grains, autosave.

The dock edits a napari Labels layer of boundaries (nonzero = boundary). Every tool computes
its result with :mod:`napari_grains.edit` on a worker thread and writes only the changed
pixels back with ``Labels.data_setitem`` inside ``Labels.block_history()``, so one tool use is
one step of napari's own undo/redo (Ctrl+Z / Shift+Ctrl+Z), exactly like a brush stroke.

After each edit (tool, brush, eraser, fill, undo or redo) two debounced timers run: the grain
labels are recomputed on a worker and shown in a ``<boundaries> grains`` layer, and the map is
autosaved with :mod:`napari_grains.sidecar`, also on a worker. Opening an image that has a
sidecar offers it back (the image is fingerprinted on a worker; our docks' own output layers
are never fingerprinted); closing napari or removing the layer with unsaved edits asks first,
and saves on the spot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Import the scikit-image submodules the workers use here, on the GUI thread: their lazy
# loading is not thread-safe, and two workers importing at once fail ("partially initialized").
import skimage.measure
import skimage.morphology  # noqa: F401
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker as create_short_worker

from napari_grains import edit, sidecar
from napari_grains._widgets._common import (
    if_alive,
    image_source_path,
    is_dock_output,
    layer_named,
    pair_image_combo,
    scrolled_layout,
    writable_home,
)
from napari_grains.errors import GrainsError

GRAINS_DEBOUNCE_MS = 300
AUTOSAVE_DEBOUNCE_MS = 2000


def default_edits_folder() -> Path:
    """Where sidecars go for images that have no file (e.g. sample data)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "napari-grains" / "edits"


def label_boundaries(boundaries: np.ndarray, min_area: int = 10) -> np.ndarray:
    """Grain labels of a boundary map, through the core's ``grains.label_grains``.

    ``min_area`` (pixels) is the smallest grain kept, as in the measurement dock.
    """
    from napari_grains.grains import label_grains

    return label_grains(np.asarray(boundaries) != 0, min_area=int(min_area))


def _pixels_if_no_file(image_layer):
    """The image's pixels when it has no file to fingerprint.

    The layer's own array (level 0 of a multiscale one), not a copy: it is read on the worker.
    """
    if image_source_path(image_layer) is not None:
        return None
    data = image_layer.data
    return data[0] if getattr(image_layer, "multiscale", False) else data


def _image_sha256(target: dict, pixels: np.ndarray | None) -> str:
    """Worker: the image's fingerprint (known already, or hashed from its file or pixels)."""
    if target.get("image_sha256"):
        return target["image_sha256"]
    if target.get("image_path") is not None:
        return sidecar.file_sha256(target["image_path"])
    return sidecar.data_sha256(np.asarray(pixels))


def _lookup_job(target: dict, pixels: np.ndarray | None):
    """Worker: ``(sha256, sidecar or None)`` for an image that was just opened."""
    sha = _image_sha256(target, pixels)
    return sha, sidecar.find_sidecar(**{**target, "image_sha256": sha})


def _save_job(boundaries: np.ndarray, target: dict, pixels, lock: threading.Lock,
              seq: int, written: dict) -> tuple[Path | None, str]:
    """Write the sidecar (on a worker, or on the GUI thread when closing).

    Writes are serialised by ``lock`` and numbered: a save started earlier than the last one
    written (``written["seq"]``) is skipped, so an older map never overwrites a newer one.

    Returns
    -------
    (path or None, sha256)
        The sidecar written (None when skipped as stale) and the image's fingerprint.
    """
    sha = _image_sha256(target, pixels)
    with lock:
        if written["seq"] > seq:
            return None, sha
        path = sidecar.save_sidecar(boundaries, **{**target, "image_sha256": sha})
        written["seq"] = seq
    return path, sha


def _ask_question(title: str, text: str) -> bool:
    answer = QMessageBox.question(None, title, text, QMessageBox.Yes | QMessageBox.No)
    return answer == QMessageBox.Yes


def _ask_unsaved(text: str, can_cancel: bool) -> str:
    buttons = QMessageBox.Save | QMessageBox.Discard
    if can_cancel:
        buttons |= QMessageBox.Cancel
    answer = QMessageBox.warning(None, "Unsaved corrections", text, buttons)
    return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")


class _CloseGuard(QObject):
    """Event filter on napari's main window: ask before closing with unsaved edits."""

    def __init__(self, dock: CorrectionWidget):
        super().__init__()
        self._dock = dock

    def eventFilter(self, obj, event):  # Qt API name
        if (event.type() == QEvent.Close and self._dock.dirty
                and not self._dock.confirm_discard(can_cancel=True)):
            event.ignore()
            return True
        return False


class CorrectionWidget(QWidget):
    """Dock widget with the correction tools for a boundaries Labels layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        #: Injectable dialogs (tests replace them): question(title, text) -> bool and
        #: unsaved(text, can_cancel) -> "save" | "discard" | "cancel".
        self.ask_question: Callable[[str, str], bool] = _ask_question
        self.ask_unsaved: Callable[[str, bool], str] = _ask_unsaved
        self.autosave_folder: Path | None = None
        self.tool: str | None = None
        self.draft: list[tuple[float, float]] = []
        self.n_grains: int | None = None
        self.last_sidecar: Path | None = None
        self._busy = 0
        self._proposal: edit.GapProposal | None = None
        self._proposal_of: np.ndarray | None = None
        self._saved: dict[int, np.ndarray] = {}  # id(layer) -> map last written
        self._watched: set[int] = set()
        self._offered: set[str] = set()
        self._fingerprints: dict[int, str] = {}  # id(image layer) -> sha256 (worker-made)
        self._looking: set[int] = set()  # image layers whose sidecar lookup is running
        self._write_lock = threading.Lock()  # one sidecar write at a time, in order
        self._save_worker = None
        self._save_again = False
        self._save_seq = 0  # saves started
        self._save_seq_applied = 0  # newest save whose result is applied
        self._written = {"seq": 0}  # newest save on disk (shared with the workers)
        self._followed: set[int] = set()  # measurement docks whose min area we follow
        self._grains_pending = False
        self._build()
        self._grains_timer = QTimer(self, singleShot=True, interval=GRAINS_DEBOUNCE_MS)
        self._grains_timer.timeout.connect(self.update_grains)
        self._save_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_DEBOUNCE_MS)
        self._save_timer.timeout.connect(self.autosave_in_background)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._forget)
        self.viewer.layers.events.removing.connect(self._on_removing)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.viewer.mouse_double_click_callbacks.append(self._on_double_click)
        self._guard = _CloseGuard(self)
        qt_window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if qt_window is not None:
            qt_window.installEventFilter(self._guard)
        self._refresh_layers()
        for layer in list(self.viewer.layers):
            self._offer_sidecar(layer)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = scrolled_layout(self)
        form = QFormLayout()
        self.boundaries_combo = QComboBox()
        self.image_combo = QComboBox()
        form.addRow("Boundaries", self.boundaries_combo)
        form.addRow("Image", self.image_combo)
        lay.addLayout(form)
        self.boundaries_combo.currentIndexChanged.connect(self._on_layer_choice)

        tools = QGroupBox("Tools (each is one undo step: Ctrl+Z)")
        tl = QFormLayout(tools)
        self.delete_btn = QPushButton("Delete segment", checkable=True)
        self.delete_btn.setToolTip("Click a boundary segment to remove it and merge its grains.")
        self.draw_btn = QPushButton("Draw boundary", checkable=True)
        self.draw_btn.setToolTip("Click points; double-click or 'Finish' lays the line, "
                                 "its ends snapped to the nearest boundary or the image edge.")
        row = QHBoxLayout()
        row.addWidget(self.delete_btn)
        row.addWidget(self.draw_btn)
        tl.addRow(row)
        self.finish_btn = QPushButton("Finish line")
        self.cancel_btn = QPushButton("Cancel line")
        row = QHBoxLayout()
        row.addWidget(self.finish_btn)
        row.addWidget(self.cancel_btn)
        tl.addRow(row)
        self.pick_spin = QDoubleSpinBox(minimum=1, maximum=100, value=6, suffix=" px")
        self.pick_spin.setToolTip("How far a click may be from a boundary (pick and snap).")
        self.thick_spin = QSpinBox(minimum=0, maximum=25, value=0, suffix=" px")
        self.thick_spin.setSpecialValueText("auto")
        tl.addRow("Pick / snap distance", self.pick_spin)
        tl.addRow("Line thickness", self.thick_spin)
        lay.addWidget(tools)

        gaps = QGroupBox("Close gaps")
        gl = QFormLayout(gaps)
        self.gap_spin = QDoubleSpinBox(minimum=1, maximum=200, value=10, suffix=" px")
        gl.addRow("Max gap", self.gap_spin)
        self.preview_btn = QPushButton("Preview")
        self.apply_gaps_btn = QPushButton("Apply")
        self.apply_gaps_btn.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.preview_btn)
        row.addWidget(self.apply_gaps_btn)
        gl.addRow(row)
        lay.addWidget(gaps)

        self.live_check = QCheckBox("Live grain view", checked=True)
        self.grains_label = QLabel("grains: -")
        self.grains_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.live_check)
        row.addWidget(self.grains_label)
        lay.addLayout(row)

        save = QGroupBox("Autosave")
        sl = QVBoxLayout(save)
        self.save_label = QLabel("nothing to save yet")
        self.save_label.setWordWrap(True)
        self.folder_btn = QPushButton("Autosave folder…")
        self.save_btn = QPushButton("Save now")
        sl.addWidget(self.save_label)
        row = QHBoxLayout()
        row.addWidget(self.folder_btn)
        row.addWidget(self.save_btn)
        sl.addLayout(row)
        lay.addWidget(save)
        lay.addStretch()

        self.delete_btn.toggled.connect(lambda on: self._set_tool("delete" if on else None))
        self.draw_btn.toggled.connect(lambda on: self._set_tool("draw" if on else None))
        self.finish_btn.clicked.connect(self.finish_line)
        self.cancel_btn.clicked.connect(self.cancel_line)
        self.preview_btn.clicked.connect(self.preview_gaps)
        self.apply_gaps_btn.clicked.connect(self.apply_gaps)
        self.live_check.toggled.connect(lambda on: on and self._schedule())
        self.folder_btn.clicked.connect(self._choose_folder)
        self.save_btn.clicked.connect(lambda: self.autosave_in_background(force=True))

    # -------------------------------------------------------------- layers
    def _layers(self, kind: str) -> list:
        return [lay for lay in self.viewer.layers if type(lay).__name__ == kind]

    def _refresh_layers(self, event=None) -> None:
        for combo, kind in ((self.boundaries_combo, "Labels"), (self.image_combo, "Image")):
            current = combo.currentText()
            names = [lay.name for lay in self._layers(kind)
                     if not lay.name.endswith((" grains", " highlight"))]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._on_layer_choice()

    @property
    def boundaries_layer(self):
        """The Labels layer being corrected, or None."""
        return layer_named(self.viewer, self.boundaries_combo.currentText())

    @property
    def image_layer(self):
        """The Image layer the boundaries belong to, or None."""
        return layer_named(self.viewer, self.image_combo.currentText())

    def _on_layer_choice(self, *args) -> None:
        layer = self.boundaries_layer
        if layer is None:
            return
        pair_image_combo(self.image_combo, layer.name)
        if id(layer) in self._watched:
            return
        self._watched.add(id(layer))
        self._saved.setdefault(id(layer), np.asarray(layer.data) != 0)
        for ev in (layer.events.paint, layer.events.set_data, layer.events.data):
            ev.connect(self._on_edited)
        self._schedule(save=False)

    def _forget(self, event) -> None:
        """Drop what is cached under a removed layer's id (a new layer may reuse the id)."""
        key = id(getattr(event, "value", None))
        self._fingerprints.pop(key, None)
        self._saved.pop(key, None)
        self._watched.discard(key)

    def _on_inserted(self, event) -> None:
        self._refresh_layers()
        self._offer_sidecar(event.value)

    # -------------------------------------------------------- dirty state
    @property
    def busy(self) -> bool:
        """True while a tool or the grain view is computing on a worker."""
        return self._busy > 0

    @property
    def dirty(self) -> bool:
        """True when the boundaries differ from what was last autosaved."""
        layer = self.boundaries_layer
        if layer is None:
            return False
        saved = self._saved.get(id(layer))
        current = np.asarray(layer.data) != 0
        return saved is None or not np.array_equal(saved, current)

    def _on_edited(self, event=None) -> None:
        self._schedule(save=True)

    def _schedule(self, save: bool = False) -> None:
        if self.live_check.isChecked():
            self._grains_timer.start()
        if save:
            self._save_timer.start()

    # --------------------------------------------------------------- mouse
    def _set_tool(self, tool: str | None) -> None:
        for name, btn in (("delete", self.delete_btn), ("draw", self.draw_btn)):
            if name != tool and btn.isChecked():
                btn.blockSignals(True)
                btn.setChecked(False)
                btn.blockSignals(False)
        self.tool = tool
        layer = self.boundaries_layer
        if tool and layer is not None:
            layer.mode = "pan_zoom"  # a click must not also paint
        if tool != "draw":
            self.cancel_line()

    def _data_point(self, position) -> tuple[float, float] | None:
        layer = self.boundaries_layer
        if layer is None:
            return None
        r, c = np.asarray(layer.world_to_data(position))[-2:]
        return float(r), float(c)

    def _on_mouse(self, viewer, event) -> None:
        if self.tool is None or event.type != "mouse_press" or event.button != 1:
            return
        point = self._data_point(event.position)
        if point is None:
            return
        if self.tool == "delete":
            self.delete_at(point)
        elif self.tool == "draw":
            self.add_draft_point(point)

    def _on_double_click(self, viewer, event) -> None:
        if self.tool == "draw" and len(self.draft) >= 2:
            self.finish_line()

    # --------------------------------------------------------------- tools
    def delete_at(self, point: tuple[float, float]) -> None:
        """Delete the boundary segment nearest ``point`` (data coordinates)."""
        self._run_edit(edit.delete_segment, point, max_distance=self.pick_spin.value())

    def add_draft_point(self, point: tuple[float, float]) -> None:
        """Add a vertex to the boundary being drawn (shown as a dashed preview path)."""
        self.draft.append(point)
        if len(self.draft) == 1:  # a path needs two vertices: show the first as a point
            self._remove_layer("draft boundary")
            layer = self.boundaries_layer
            self.viewer.add_points(np.array(self.draft), name="draft boundary", size=3,
                                   face_color="cyan", scale=layer.scale if layer else None)
            self._select(layer)
        else:
            self._show_shapes("draft boundary", [np.array(self.draft)], "path", "cyan")

    def finish_line(self) -> None:
        """Lay the drawn polyline as a boundary (needs two or more points)."""
        if len(self.draft) < 2:
            show_warning("Click at least two points before finishing the line.")
            return
        points = list(self.draft)
        thickness = self.thick_spin.value() or None
        self.cancel_line()
        self._run_edit(edit.draw_boundary, points, thickness=thickness,
                       snap_distance=self.pick_spin.value())

    def cancel_line(self) -> None:
        """Forget the points clicked so far."""
        self.draft = []
        self._remove_layer("draft boundary")

    def preview_gaps(self) -> None:
        """Show the lines that would close dangling ends, without applying them."""
        layer = self._require_layer()
        if layer is None:
            return
        snapshot = np.asarray(layer.data) != 0

        def shown(proposal):
            self._proposal, self._proposal_of = proposal, snapshot
            self._show_shapes("gap preview", proposal.lines, "line", "yellow")
            self.apply_gaps_btn.setEnabled(len(proposal) > 0)
            show_info(f"{len(proposal)} gap(s) to close; press Apply to lay them.")

        self._start(edit.propose_gap_closures, snapshot, self.gap_spin.value(), on_done=shown)

    def apply_gaps(self) -> None:
        """Lay the previewed gap-closing lines (recomputed if the map changed since)."""
        layer = self._require_layer()
        if layer is None:
            return
        current = np.asarray(layer.data) != 0
        proposal = self._proposal
        if self._proposal_of is None or not np.array_equal(self._proposal_of, current):
            proposal = None
        self._remove_layer("gap preview")
        self.apply_gaps_btn.setEnabled(False)
        self._proposal = self._proposal_of = None
        self._run_edit(edit.close_gaps, self.gap_spin.value(), proposal=proposal,
                       thickness=self.thick_spin.value() or None)

    # ------------------------------------------------------------- workers
    def _require_layer(self):
        layer = self.boundaries_layer
        if layer is None:
            show_warning("Choose a boundaries layer first (run the extraction dock, or open one).")
        return layer

    def _start(self, fn, *args, on_done=None, **kwargs):
        # superqt's worker: the handler given at creation is the only one (napari's would also
        # post every error as a red notification, and without a handler at creation superqt
        # re-raises it -- a missed click showed two messages, or ended a script)
        worker = create_short_worker(fn, *args, _start_thread=False,
                                     _connect={"errored": if_alive(self, self._on_error)},
                                     **kwargs)
        self._busy += 1

        def done():
            self._busy -= 1

        if on_done is not None:
            worker.returned.connect(if_alive(self, on_done))
        worker.finished.connect(done)
        worker.start()
        return worker

    def _run_edit(self, fn, *args, **kwargs) -> None:
        layer = self._require_layer()
        if layer is None:
            return
        snapshot = np.asarray(layer.data) != 0
        self._start(fn, snapshot, *args, on_done=lambda r: self._apply(layer, snapshot, r),
                    **kwargs)

    def _apply(self, layer, snapshot: np.ndarray, result: edit.EditResult) -> None:
        if not np.array_equal(np.asarray(layer.data) != 0, snapshot):
            show_warning("The boundaries changed while the tool was computing; try again.")
            return
        removed = np.nonzero(snapshot & ~result.boundaries)
        added = np.nonzero(result.boundaries & ~snapshot)
        with layer.block_history():  # one undo step for the whole tool use
            if removed[0].size:
                layer.data_setitem(removed, 0)
            if added[0].size:
                layer.data_setitem(added, 1)
        self.viewer.status = result.description

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, GrainsError):
            show_warning(str(exc))
        else:
            show_error(f"{type(exc).__name__}: {exc}")

    # ---------------------------------------------------------- live grains
    def update_grains(self) -> None:
        """Recompute the grain labels of the current boundaries on a worker."""
        layer = self.boundaries_layer
        if layer is None or not self.live_check.isChecked():
            return
        if self._grains_pending:
            self._grains_timer.start()  # one at a time; run again after this one
            return
        self._grains_pending = True
        snapshot = np.asarray(layer.data) != 0
        min_area, source = self.live_min_area()

        def shown(labels):
            self._grains_pending = False
            if layer not in self.viewer.layers:  # removed while we counted: nothing to show
                return
            self.n_grains = int(labels.max())
            self.grains_label.setText(f"grains: {self.n_grains} (≥ {min_area} px, {source})")
            name = f"{layer.name} grains"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = labels
            else:
                self.viewer.add_labels(labels, name=name, opacity=0.35, scale=layer.scale,
                                       translate=layer.translate)
                self._select(layer)  # keep editing the boundaries

        worker = self._start(label_boundaries, snapshot, min_area, on_done=shown)
        worker.errored.connect(lambda e: setattr(self, "_grains_pending", False))

    def live_min_area(self) -> tuple[int, str]:
        """Smallest grain (px) the live view keeps, and where that setting comes from.

        The measurement dock's "Smallest grain" when one is open in this viewer, so both docks
        count the same grains; otherwise the core's default.
        """
        from napari_grains._widgets.measurement import MeasurementWidget

        window = getattr(self.viewer, "window", None)
        try:
            docks = list(window.dock_widgets.values()) if window is not None else []
        except (AttributeError, RuntimeError):  # an older napari, or a closing window
            docks = []
        for widget in docks:
            if isinstance(widget, MeasurementWidget):
                if id(widget) not in self._followed:  # recount when that setting changes
                    self._followed.add(id(widget))
                    widget.min_area.valueChanged.connect(
                        if_alive(self, lambda *a: self._schedule(save=False)))
                return int(widget.min_area.value()), "measurement dock's smallest grain"
        from napari_grains.measure import MeasureParams

        return int(MeasureParams().min_area), "default smallest grain"

    # ------------------------------------------------------------ autosave
    # Fingerprinting an image (SHA-256 of its whole file, or of its pixels) and writing a
    # sidecar take seconds for a large micrograph, so both run on workers; the GUI thread only
    # compares maps and applies results. A synchronous save remains for the moments that
    # cannot wait (napari closing, a layer being removed, the public ``autosave()``).
    def _target(self, image_layer) -> dict:
        """Where this image's sidecar goes (``image_sha256`` only when already known)."""
        path = image_source_path(image_layer)
        folder = self.autosave_folder
        if folder is None and (path is None or not writable_home(path)):
            folder = default_edits_folder()
        return {"image_path": path, "folder": folder, "name": image_layer.name,
                "image_sha256": self._fingerprints.get(id(image_layer))}

    def _boundaries_to_save(self, force: bool):
        """``(layer, image, current map)`` to write now, or None when nothing is due."""
        self._save_timer.stop()
        layer, image = self.boundaries_layer, self.image_layer
        if layer is None:
            return None
        if image is None:
            self.save_label.setText("not saved: choose the image these boundaries belong to")
            return None
        current = np.asarray(layer.data) != 0  # computed once per save
        saved = self._saved.get(id(layer))
        if not force and saved is not None and np.array_equal(saved, current):
            return None
        return layer, image, current

    def autosave(self, force: bool = False) -> Path | None:
        """Write the boundaries to the image's sidecar now, on this thread.

        Used where the write cannot be deferred (closing); the debounced autosave after an
        edit runs :meth:`autosave_in_background` instead. Returns the sidecar written (or
        the last one, when nothing changed), or None when it could not be written.
        """
        due = self._boundaries_to_save(force)
        if due is None:  # no layer or no image: nothing written; unchanged: the last save
            ok = self.boundaries_layer is not None and self.image_layer is not None
            return self.last_sidecar if ok else None
        layer, image, current = due
        self._save_seq += 1
        seq = self._save_seq
        try:
            path, sha = _save_job(current, self._target(image), _pixels_if_no_file(image),
                                  self._write_lock, seq, self._written)
        except GrainsError as exc:
            self._save_failed(exc)
            return None
        self._saved_done(seq, layer, image, current, (path, sha))
        return path

    def autosave_in_background(self, force: bool = False) -> None:
        """Write the boundaries to the sidecar on a worker (only the newest map is written).

        While a write is running, a new request waits for it and then writes the map as it is
        then, so edits made meanwhile are never lost and writes never overtake each other.
        """
        if self._save_worker is not None:
            self._save_again = True
            return
        due = self._boundaries_to_save(force)
        if due is None:
            return
        layer, image, current = due
        self._save_seq += 1
        seq = self._save_seq
        self.save_label.setText("saving…")
        worker = create_short_worker(_save_job, current, self._target(image),
                                     _pixels_if_no_file(image), self._write_lock, seq,
                                     self._written, _start_thread=False,
                                     _connect={"errored": if_alive(self, self._save_failed)})
        self._save_worker = worker
        self._busy += 1
        worker.returned.connect(if_alive(
            self, lambda res: self._saved_done(seq, layer, image, current, res)))
        worker.finished.connect(if_alive(self, self._save_finished))
        worker.start()

    def _saved_done(self, seq: int, layer, image, current: np.ndarray, result) -> None:
        path, sha = result
        self._fingerprints[id(image)] = sha
        if path is None or seq < self._save_seq_applied:
            return  # a newer save (e.g. a synchronous one at closing) already landed
        self._save_seq_applied = seq
        self._saved[id(layer)] = current
        self.last_sidecar = path
        self.save_label.setText(f"saved {path}")

    def _save_failed(self, exc: BaseException) -> None:
        if isinstance(exc, GrainsError):
            self.save_label.setText(f"NOT saved: {exc}")
            show_error(f"Autosave failed: {exc}")
        else:
            self.save_label.setText(f"NOT saved: {type(exc).__name__}: {exc}")
            show_error(f"Autosave failed unexpectedly ({type(exc).__name__}: {exc})")

    def _save_finished(self) -> None:
        self._busy -= 1
        self._save_worker = None
        if self._save_again:  # edits arrived while writing: write the newest map now
            self._save_again = False
            self.autosave_in_background()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for autosaved corrections")
        if folder:
            self.autosave_folder = Path(folder)
            self.autosave_in_background(force=True)

    def _offer_sidecar(self, layer) -> None:
        """Look for a sidecar of a newly opened image on a worker; offer it when found."""
        if type(layer).__name__ != "Image" or is_dock_output(layer):
            return
        key = id(layer)
        if key in self._fingerprints or key in self._looking:
            return
        self._looking.add(key)
        target = self._target(layer)

        def found_one(result) -> None:
            self._looking.discard(key)
            sha, found = result
            self._fingerprints[key] = sha
            if layer in self.viewer.layers:
                self._restore(layer, sha, found)

        worker = self._start(_lookup_job, target, _pixels_if_no_file(layer), on_done=found_one)
        worker.errored.connect(lambda e: self._looking.discard(key))

    def _restore(self, layer, sha: str, found: sidecar.Sidecar | None) -> None:
        if found is None or sha in self._offered:
            return
        self._offered.add(sha)
        if tuple(found.shape) != tuple(np.shape(layer.data)[-2:]):
            return
        if not self.ask_question(
            "Restore corrections?",
            f"Corrected boundaries for '{layer.name}' were autosaved on {found.saved_at}.\n"
            f"Restore them from {found.path.name}?",
        ):
            return
        name = f"{layer.name} boundaries"
        restored = self.viewer.add_labels(found.boundaries.astype(np.uint8), name=name,
                                          scale=layer.scale[-2:], translate=layer.translate[-2:])
        self._saved[id(restored)] = found.boundaries.copy()
        self.boundaries_combo.setCurrentText(restored.name)
        self.image_combo.setCurrentText(layer.name)
        self.last_sidecar = found.path
        self.save_label.setText(f"restored from {found.path}")

    # --------------------------------------------------------- unsaved edits
    def confirm_discard(self, can_cancel: bool) -> bool:
        """Ask what to do with unsaved edits; True when it is fine to go on closing."""
        answer = self.ask_unsaved(
            "The corrected boundaries have changes that are not autosaved yet. Save them?",
            can_cancel,
        )
        if answer == "save":
            return self.autosave(force=True) is not None or not can_cancel
        return answer == "discard"

    def _on_removing(self, event) -> None:
        layers = self.viewer.layers
        index = getattr(event, "index", None)
        layer = layers[index] if isinstance(index, int) and index < len(layers) else None
        if layer is not None and layer in (self.boundaries_layer, self.image_layer) and self.dirty:
            self.confirm_discard(can_cancel=False)

    # --------------------------------------------------------------- shapes
    def _show_shapes(self, name: str, shapes: list, kind: str, color: str) -> None:
        self._remove_layer(name)
        if not shapes:
            return
        layer = self.boundaries_layer
        self.viewer.add_shapes([np.asarray(s) for s in shapes], shape_type=kind, name=name,
                               edge_color=color, edge_width=1.5,
                               scale=layer.scale if layer is not None else None)
        self._select(layer)

    def _select(self, layer) -> None:
        """Make ``layer`` the active one again, if it is still in the viewer."""
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer

    def _remove_layer(self, name: str) -> None:
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
