"""Extraction dock: edge stack preview, Net1, Net2 iterations, editable boundaries.

What the user sees, top to bottom: the image layer and model to use; edge-detector and
pipeline parameters (changing them re-draws a debounced preview of the RGB edge stack as a
``<image> edges`` layer); *Run Net1* (``<image> initial guess``), *Refine with Net2* (each
iteration lands in one ``<image> iterations`` layer of shape (iteration, y, x) as it is
computed, so the dims slider scrubs them and its play button animates them), *Run all*,
*Cancel*; a convergence plot; *Use this iteration*, which turns the iteration under the slider
into a ``<image> boundaries`` Labels layer (1 = boundary) that napari's brush, eraser and undo
edit.

Threading: every computation runs in a napari ``thread_worker`` over the core's stage
functions (:mod:`napari_grains.extract`); the GUI thread only copies finished arrays into
layers. What was computed is kept in a :class:`_Session` keyed by the image and the
parameters each stage depends on, so re-running after changing only the threshold (or the
Net2 settings) skips the stages whose inputs did not change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas  # noqa: F401  (napari's Labels layer imports it on first use: pay it now)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_grains import extract as core
from napari_grains._widgets._common import (
    OUTPUT_KEY,
    ConvergencePlot,
    calibration_of,
    fingerprint,
    geometry_of,
    if_alive,
    image_layer_names,
    layer_image,
    notify_error,
    refill_combo,
    scrolled_layout,
)
from napari_grains.errors import GrainsError
from napari_grains.io import color_note, to_gray_float
from napari_grains.sidecar import data_sha256

PREVIEW_DEBOUNCE_MS = 300
BROWSE = "Browse folder…"
# ExtractParams fields that only Net2 / only the final threshold depend on
_NET2_FIELDS = ("tolerance", "max_iterations", "convergence")
_FINAL_FIELDS = ("threshold", "closing_radius", "extend_ends", "split_concave")


def _stage_keys(fp: str, model: str, p: core.ExtractParams) -> tuple[tuple, tuple]:
    d = asdict(p)
    net1 = (fp, model) + tuple((k, repr(v)) for k, v in sorted(d.items())
                               if k not in _NET2_FIELDS + _FINAL_FIELDS)
    return net1, net1 + tuple((k, repr(d[k])) for k in _NET2_FIELDS)


@dataclass
class _Session:
    """What has been computed for one image, model and parameter set."""

    image: str                      # layer name the outputs belong to
    net1_key: tuple
    params: core.ExtractParams      # with the scale resolved
    model: Any                      # GrainModel
    pre: core.Preprocessed
    edges: Any                      # EdgeStack (working resolution)
    initial: np.ndarray             # Net1 map, working resolution, float32
    initial_original: np.ndarray | None = None  # the same, resized to the image (worker-made)
    net2_key: tuple | None = None
    frames: np.ndarray | None = None    # (1 + capacity, H, W) uint8, original size; 0: Net1
    work: list[np.ndarray] = field(default_factory=list)  # uint8, working size
    changes: list[float] = field(default_factory=list)
    last: np.ndarray | None = None      # last Net2 map, working size, float32
    converged: bool = False
    complete: bool = False              # the Net2 loop ended by its own rule or the cap
    result: core.ExtractResult | None = None

    def start_net2(self, key: tuple) -> None:
        self.net2_key, self.work, self.changes = key, [], []
        self.last, self.converged, self.complete, self.result = None, False, False, None
        cap = max(1, int(self.params.max_iterations))
        # frame 0 is Net1's guess, frame k the k-th Net2 iteration: the slider's index is the
        # iteration number (napari labels the slider with the index, not the world position)
        self.frames = np.zeros((1 + cap, *self.pre.original_shape), np.uint8)
        if self.initial_original is not None:
            self.frames[0] = np.clip(np.asarray(self.initial_original) * 255 + 0.5, 0, 255)


def _unrounded(spin, default: float) -> float:
    """The spin box's value, or ``default`` when the box shows ``default`` rounded (a box
    holds √2 as 1.41; the dock must extract as the command line does)."""
    value = float(spin.value())
    return default if abs(value - default) <= 0.5 * 10.0 ** -spin.decimals() else value


# ---------------------------------------------------------------------------------------
# worker bodies (no Qt, no napari: they only call the core and yield what they computed)
# ---------------------------------------------------------------------------------------


def _preview_job(image: np.ndarray, params: core.ExtractParams, model_loader, scale_cache):
    gray = to_gray_float(image)
    if params.mode == "native" and params.scale == "auto":
        scale = scale_cache.get("scale")
        if scale is None:
            scale = core.estimate_scale(gray, model_loader(), params)
    else:
        scale = float(params.scale) if params.mode == "native" else 1.0
    pre = core.preprocess(gray, params, scale=scale)
    edges = core.compute_edges(pre, params)
    rgb = core._to_original(edges.rgb, pre.original_shape, nearest=True)
    return rgb, edges.thresholds, scale


def _run_job(image, params: core.ExtractParams, model_loader, session: _Session | None,
             net1_key: tuple, until: str, known_scale: float | None = None):
    """Generator: Net1 (unless ``session`` has it), then Net2 and the boundaries if asked.

    Yields ``(kind, payload)``: ``("status", (text, fraction))``, ``("session", _Session)``,
    ``("edges", rgb)``, ``("initial", map)``, ``("iteration", (k, frame_u8, work_u8, y,
    change, converged))``, ``("boundaries", bool map)``.
    """
    if session is None:
        yield "status", ("loading the model and preparing the image…", 0.02)
        model = model_loader()
        gray = to_gray_float(image)
        p = replace(params)
        if p.mode == "native" and p.scale == "auto":
            if known_scale is None:  # the edge preview may have estimated it already
                yield "status", ("estimating the scale…", 0.04)
                known_scale = core.estimate_scale(gray, model, p)
            p.scale = known_scale
        scale = float(p.scale) if p.mode == "native" else 1.0
        pre = core.preprocess(gray, p, scale=scale)
        edges = core.compute_edges(pre, p)
        yield "edges", core._to_original(edges.rgb, pre.original_shape, nearest=True)
        yield "status", ("Net1: initial guess…", 0.1)
        initial = core.run_net1(edges, model, p)
        # resized here, on the worker, once: the result reuses it (no resize in a GUI slot)
        initial_original = core._to_original(initial, pre.original_shape)
        session = _Session("", net1_key, p, model, pre, edges, initial, initial_original)
        yield "session", session
        yield "initial", initial_original
    if until == "net1":
        return
    p = replace(session.params, **{k: getattr(params, k) for k in _NET2_FIELDS + _FINAL_FIELDS})
    if not session.complete:
        cap = max(1, int(p.max_iterations))
        last = session.initial
        for k, y, change, conv in core.iter_net2(session.initial, session.model, p):
            frame = np.floor(core._to_original(y, session.pre.original_shape) * 255 + 0.5)
            work = np.floor(y * 255 + 0.5).astype(np.uint8)
            yield "iteration", (k, frame.astype(np.uint8), work, y, change, conv)
            yield "status", ((f"Net2 iteration {k}: change {change:.5f} "
                             f"(tolerance {p.tolerance})"), 0.3 + 0.65 * min(1.0, k / cap))
            last = y
        refined = last
    else:
        refined = session.last
    if until == "boundaries":
        yield "boundaries", core.finalize(refined, session.pre, p)


def _finalize_job(refined: np.ndarray, pre: core.Preprocessed, params: core.ExtractParams):
    return core.finalize(refined, pre, params)


# ---------------------------------------------------------------------------------------
# the dock
# ---------------------------------------------------------------------------------------


class ExtractionWidget(QWidget):
    """Dock widget running the extraction pipeline on an image layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: _Session | None = None
        self.worker = None
        self._preview_worker = None
        self._failed = False  # the last run ended in an error (its figures were cleared)
        self._preview_id = 0
        #: number of edge previews shown so far (tests and benchmarks wait on it)
        self.previews_shown = 0
        self._models: dict[str, Any] = {}
        self._scales: dict[tuple, float] = {}
        self._colour_noted: set[str] = set()  # images whose "turned gray" note was shown
        self._build()
        self._preview_timer = QTimer(self, singleShot=True, interval=PREVIEW_DEBOUNCE_MS)
        self._preview_timer.timeout.connect(self.preview_edges)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)
        self._refresh_layers()
        self._set_running(False)

    # --- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        from napari_grains.nets import list_models

        lay = scrolled_layout(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.currentTextChanged.connect(self.schedule_preview)
        self.model_combo = QComboBox()
        self.model_combo.addItems([*list_models(), BROWSE])
        self.model_combo.activated.connect(self._on_model_activated)
        self._last_model = self.model_combo.currentText()
        self.mode = QComboBox()
        self.mode.addItems(list(core.MODES))
        self.mode.setToolTip("native: the image's own resolution times 'scale'; "
                             "paper: squeezed to 96×496 like the authors' script")
        self.scale = self._spin(0.0, 16.0, 0.0, 0.05, 2, special="auto",
                                tip="resize factor before the nets; auto matches the grain "
                                    "size to the model's training data")
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        form.addRow("mode", self.mode)
        form.addRow("scale", self.scale)
        lay.addLayout(form)

        edges = QGroupBox("edge stack (Sobel R, LoG G, Canny B)")
        ef = QFormLayout(edges)
        self.sobel_t = self._spin(0.0, 1.0, 0.0, 0.005, 4, special="auto")
        self.log_sigma = self._spin(0.5, 10.0, 2.0, 0.25, 2)
        self.log_t = self._spin(0.0, 1.0, 0.0, 0.0005, 4, special="auto")
        self.canny_sigma = self._spin(0.5, 10.0, core.ExtractParams().canny_sigma, 0.25, 2)
        self.canny_t = self._spin(0.0, 1.0, 0.0, 0.01, 3, special="auto",
                                  tip="Canny high threshold (low = 0.4 × high)")
        for label, w in (("Sobel threshold", self.sobel_t), ("LoG σ", self.log_sigma),
                         ("LoG threshold", self.log_t), ("Canny σ", self.canny_sigma),
                         ("Canny threshold", self.canny_t)):
            ef.addRow(label, w)
        self.live = QCheckBox("live preview")
        self.live.setChecked(True)
        self.live.toggled.connect(self.schedule_preview)
        self.thresholds_label = QLabel("")
        self.thresholds_label.setWordWrap(True)
        ef.addRow(self.live)
        ef.addRow(self.thresholds_label)
        lay.addWidget(edges)
        for w in (self.mode, self.scale, self.sobel_t, self.log_sigma, self.log_t,
                  self.canny_sigma, self.canny_t):
            signal = w.currentTextChanged if isinstance(w, QComboBox) else w.valueChanged
            signal.connect(self.schedule_preview)

        nets = QGroupBox("nets")
        nf = QFormLayout(nets)
        self.threshold = self._spin(0.01, 0.99, 0.2, 0.05, 2, tip="boundary where map > this")
        self.tolerance = self._spin(0.0, 1.0, 0.003, 0.0005, 4,
                                    tip="Net2 stops when the mean |change| is below this")
        self.max_iter = QSpinBox()
        self.max_iter.setRange(1, 500)
        self.max_iter.setValue(50)
        self.rule = QComboBox()
        self.rule.addItems(list(core.CONVERGENCE_RULES))
        self.rule.setToolTip("paper: mean |change| < tolerance; script: the authors' MATLAB "
                             "rule (uint8 maps, only growth counts, Net1's maximum)")
        default_ext = core.ExtractParams().extend_ends
        self.extend_ends = self._spin(0.0, 5.0, default_ext, 0.5, 1, special="off",
                                      tip="prolong loose boundary ends straight ahead to the "
                                      "next boundary, by at most this many mean grain "
                                      "intercepts (closes gaps Net2 left; off = 0)")
        self.split_concave = self._spin(
            0.0, 0.5, core.ExtractParams().split_concave, 0.01, 2, special="off",
            tip="split a grain with a straight cut between two concave corners at least this "
            "deep (× the grain's diameter): grains are close to convex, so such a grain is "
            "most often two whose boundary the image does not show (off = 0)")
        nf.addRow("threshold", self.threshold)
        nf.addRow("close loose ends (× intercept)", self.extend_ends)
        nf.addRow("split concave grains (× diameter)", self.split_concave)
        nf.addRow("tolerance", self.tolerance)
        nf.addRow("convergence", self.rule)
        nf.addRow("max iterations", self.max_iter)
        lay.addWidget(nets)

        grid = QGridLayout()
        self.net1_btn = QPushButton("Run Net1")
        self.net2_btn = QPushButton("Refine with Net2")
        self.all_btn = QPushButton("Run all")
        self.cancel_btn = QPushButton("Cancel")
        self.use_btn = QPushButton("Use this iteration")
        self.net1_btn.clicked.connect(lambda: self.run("net1"))
        self.net2_btn.clicked.connect(lambda: self.run("net2"))
        self.all_btn.clicked.connect(lambda: self.run("boundaries"))
        self.cancel_btn.clicked.connect(self.cancel)
        self.use_btn.clicked.connect(self.use_iteration)
        grid.addWidget(self.net1_btn, 0, 0)
        grid.addWidget(self.net2_btn, 0, 1)
        grid.addWidget(self.all_btn, 1, 0)
        grid.addWidget(self.cancel_btn, 1, 1)
        grid.addWidget(self.use_btn, 2, 0, 1, 2)
        lay.addLayout(grid)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self.plot = ConvergencePlot()
        lay.addWidget(self.plot.canvas)
        lay.addStretch(1)

    @staticmethod
    def _spin(lo, hi, value, step, decimals, special=None, tip=None) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(decimals)
        s.setSingleStep(step)
        s.setValue(value)
        if special:
            s.setSpecialValueText(special)  # shown at the minimum (0 = automatic)
        if tip:
            s.setToolTip(tip)
        return s

    # --- inputs ------------------------------------------------------------------------
    def _refresh_layers(self, event=None) -> None:
        refill_combo(self.image_combo, image_layer_names(self.viewer))
        self.schedule_preview()

    def image_layer(self):
        """The image layer picked in the dock (GrainsError when there is none)."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise GrainsError("open an image first (File › Open, or File › Open Sample › "
                              "napari-grains), then pick it in the dock.")
        return self.viewer.layers[name]

    def params(self) -> core.ExtractParams:
        """The :class:`~napari_grains.extract.ExtractParams` the dock's fields describe."""
        auto = lambda s: None if s.value() <= s.minimum() else float(s.value())
        scale = self.scale.value()
        return core.ExtractParams(
            mode=self.mode.currentText(),
            scale="auto" if scale <= 0 else max(0.05, float(scale)),
            threshold=float(self.threshold.value()),
            extend_ends=float(self.extend_ends.value()),
            split_concave=float(self.split_concave.value()),
            tolerance=float(self.tolerance.value()),
            max_iterations=int(self.max_iter.value()),
            convergence=self.rule.currentText(),
            sobel_threshold=auto(self.sobel_t),
            log_sigma=float(self.log_sigma.value()),
            log_threshold=auto(self.log_t),
            canny_sigma=_unrounded(self.canny_sigma, core.ExtractParams().canny_sigma),
            canny_thresholds=auto(self.canny_t),
        ).validated()

    def model_key(self) -> str:
        """The model picked: a shipped model's name or a folder path."""
        return self.model_combo.currentText()

    def add_model_folder(self, folder: str | Path) -> None:
        """Add a trained model's folder to the picker and select it."""
        text = str(folder)
        if self.model_combo.findText(text) < 0:
            self.model_combo.insertItem(self.model_combo.count() - 1, text)
        self.model_combo.setCurrentText(text)
        self._last_model = text
        self.schedule_preview()

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemText(index) != BROWSE:
            self._last_model = self.model_combo.currentText()
            self.schedule_preview()
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder of a trained model (card.json)")
        if folder:
            self.add_model_folder(folder)
        else:
            self.model_combo.setCurrentText(self._last_model)

    def _model_loader(self, key: str):
        def load():
            if key not in self._models:
                from napari_grains.nets import load_model

                self._models[key] = load_model(key)
            return self._models[key]
        return load

    # --- edge preview ------------------------------------------------------------------
    def schedule_preview(self, *_args) -> None:
        """Ask for an edge preview in ``PREVIEW_DEBOUNCE_MS`` (later requests restart it)."""
        if self.live.isChecked() and self.image_combo.currentText():
            self._preview_timer.start()

    def preview_edges(self) -> None:
        """Compute the edge stack of the current settings in a worker; show only the latest."""
        try:
            layer = self.image_layer()
            image = layer_image(layer)
            params = self.params()
        except GrainsError as exc:
            notify_error(exc, "edge preview")
            return
        self._preview_id += 1
        request = self._preview_id
        key = (fingerprint(image), self.model_key())
        cache = {"scale": self._scales.get(key)}
        worker = create_worker(_preview_job, image, params, self._model_loader(self.model_key()),
                               cache, _connect={"errored": _reporter("edge preview")},
                               _start_thread=False)

        def done(out, request=request, layer_name=layer.name, key=key):
            if request != self._preview_id or layer_name not in self.viewer.layers:
                return  # a newer request is on its way, or the image is gone
            rgb, thresholds, scale = out
            if params.mode == "native" and params.scale == "auto":
                self._scales[key] = scale  # an estimate: the next run needs none
            self.previews_shown += 1
            self._show(f"{layer_name} edges", rgb, self.viewer.layers[layer_name], rgb=True,
                       blending="additive")
            self.thresholds_label.setText(
                "thresholds used: " + ", ".join(f"{k} {_fmt(v)}" for k, v in thresholds.items())
                + (f"; scale {scale:.3g}" if params.mode == "native" else ""))

        worker.returned.connect(done)
        self._preview_worker = worker
        worker.start()

    # --- running the nets --------------------------------------------------------------
    def run(self, until: str) -> None:
        """Run the pipeline up to ``"net1"``, ``"net2"`` or ``"boundaries"`` in a worker.

        Stages whose inputs (image, model, parameters) match the last run are reused.
        """
        if self.worker is not None:
            return
        try:
            layer = self.image_layer()
            image = layer_image(layer)
            params = self.params()
        except GrainsError as exc:
            notify_error(exc, "extraction")
            return
        fp = fingerprint(image)
        if image.ndim == 3 and fp not in self._colour_noted:  # once per image
            self._colour_noted.add(fp)
            note = color_note(image, layer.name)
            if note:
                show_info(note)
        net1_key, net2_key = _stage_keys(fp, self.model_key(), params)
        s = self.session
        if s is None or s.net1_key != net1_key or s.image != layer.name:
            s = self.session = None
        elif until != "net1" and s.net2_key != net2_key:
            s.complete = False
        self._run_layer = layer
        self._run_params = params
        self._net2_key = net2_key
        self._until = until
        if s is not None and until != "net1" and not s.complete:
            self._start_net2()
        if s is not None and s.complete:
            self._note(f"reusing the {len(s.changes)} Net2 iterations already computed", 0.95)
        elif s is not None and until == "net1":
            self._note("Net1 result already computed for these settings", 1.0)
            return
        # progress goes to the dock's bar and napari's status bar, not to create_worker's
        # _progress: napari's progress widget calls processEvents() on every update, which
        # re-enters the event loop for each Net2 iteration and can hold the GUI in nested loops
        self._failed = False
        self.worker = create_worker(
            _run_job, image, params, self._model_loader(self.model_key()), s, net1_key, until,
            self._scales.get((fp, self.model_key())),
            _connect={"errored": if_alive(self, self._on_run_error)}, _start_thread=False)
        self.worker.yielded.connect(self._on_yield)
        self.worker.aborted.connect(lambda: self._note("cancelled", None))
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.worker.start()

    def _on_run_error(self, exc: Exception) -> None:
        """Report a failed run, and leave nothing in the dock that looks like its result."""
        notify_error(exc, "extraction")
        self._failed = True
        self.progress.setValue(0)
        self.status.setText(f"extraction failed: {exc}")
        self.thresholds_label.setText("")
        self.plot.set([], float(self.tolerance.value()))

    def cancel(self) -> None:
        """Stop the running worker after its current step (Net1 or one Net2 iteration)."""
        if self.worker is not None:
            self.worker.quit()
            self._note("cancelling after the current step…", None)

    def _start_net2(self) -> None:
        self.session.params = replace(
            self.session.params,
            **{k: getattr(self._run_params, k) for k in _NET2_FIELDS + _FINAL_FIELDS})
        self.session.start_net2(self._net2_key)
        self.plot.set([], self.session.params.tolerance)

    def _on_yield(self, item) -> None:
        kind, payload = item
        layer = self._run_layer
        name = layer.name
        if kind == "status":
            self._note(*payload)
        elif kind == "session":
            payload.image = name
            self.session = payload
            if self._until != "net1":
                self._start_net2()
        elif kind == "edges":
            self._show(f"{name} edges", payload, layer, rgb=True, blending="additive")
        elif kind == "initial":
            self._show(f"{name} initial guess", payload, layer, colormap="magma",
                       contrast_limits=(0.0, 1.0), blending="additive")
            self._note("Net1 initial guess ready", 0.3)
        elif kind == "iteration":
            self._add_iteration(*payload)
        elif kind == "boundaries":
            # the final settings of this run (a re-threshold reuses the nets and session)
            self.session.params = replace(
                self.session.params, **{k: getattr(self._run_params, k) for k in _FINAL_FIELDS})
            self._finish_result(payload)
            self._boundaries_layer(payload, len(self.session.changes))

    def _add_iteration(self, k, frame, work, y, change, converged) -> None:
        s = self.session
        s.frames[k] = frame
        s.work.append(work)
        s.changes.append(change)
        s.last, s.converged = y, converged
        if converged or k >= s.frames.shape[0] - 1:
            s.complete = True
        name = f"{s.image} iterations"
        new = name not in self.viewer.layers
        # frame 0 is Net1's guess, so the slider's number is the iteration number
        # additive: dark = no boundary lets the micrograph show through (the walk-through
        # found the opaque layer hid it)
        layer = self._show(name, s.frames[:k + 1], self._run_layer, leading=1,
                           colormap="magma", contrast_limits=(0, 255), blending="additive")
        labels = self.viewer.dims.axis_labels
        if new and self.viewer.dims.ndim == 3 and labels[0].lstrip("-").isdigit():
            self.viewer.dims.axis_labels = ("Net2 iteration", *labels[1:])
        layer.metadata["changes"] = list(s.changes)
        self.viewer.dims.set_current_step(0, k)
        self.plot.set(s.changes, s.params.tolerance)

    def _finish_result(self, boundaries: np.ndarray) -> None:
        s = self.session
        k = len(s.changes)
        s.result = core.ExtractResult(
            boundaries=boundaries, edges=s.edges,
            initial=s.initial_original,
            iterations=s.frames[1:k + 1], changes=np.asarray(s.changes), n_iterations=k,
            converged=s.converged, refined=s.last if s.last is not None else s.initial,
            preprocessed=s.pre, params=replace(s.params), model_name=s.model.name)

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        if self.progress.value() < 100 and self.status.text() != "cancelled" and \
                not self._failed:
            self.progress.setValue(100)

    def _set_running(self, running: bool) -> None:
        for b in (self.net1_btn, self.net2_btn, self.all_btn):
            b.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _note(self, text: str, fraction: float | None) -> None:
        self.status.setText(text)
        self.viewer.status = f"napari-grains: {text}"
        if fraction is not None:
            # QProgressBar.setValue repaints synchronously, which in a window holding napari's
            # OpenGL canvas re-composes the whole window; schedule the paint instead
            self.progress.setUpdatesEnabled(False)
            self.progress.setValue(round(100 * fraction))
            self.progress.setUpdatesEnabled(True)
            self.progress.update()

    # --- results -----------------------------------------------------------------------
    def current_iteration(self) -> int:
        """0-based index of the Net2 iteration the dims slider shows; −1 for Net1's guess
        (the slider at 0) or when none is computed."""
        s = self.session
        if s is None or not s.work:
            return -1
        name = f"{s.image} iterations"
        if name not in self.viewer.layers:
            return len(s.work) - 1
        layer = self.viewer.layers[name]
        point = layer.world_to_data(self.viewer.dims.point[-layer.ndim:])
        return int(np.clip(round(float(point[0])), 0, len(s.work))) - 1

    def use_iteration(self) -> None:
        """Turn the iteration under the slider (or Net1's map) into a boundaries layer."""
        s = self.session
        if s is None:
            notify_error(GrainsError("run Net1 (or Run all) first."), "use this iteration")
            return
        try:
            now = self.params()
            params = replace(s.params, **{k: getattr(now, k) for k in _FINAL_FIELDS}).validated()
        except GrainsError as exc:
            notify_error(exc, "use this iteration")
            return
        k = self.current_iteration()
        if k < 0:
            refined = s.initial
        elif k == len(s.work) - 1 and s.last is not None:
            refined = s.last  # exact float map: same as the core's result
        else:
            refined = s.work[k].astype(np.float32) / 255
        worker = create_worker(_finalize_job, refined, s.pre, params,
                               _connect={"errored": _reporter("use this iteration")},
                               _start_thread=False)
        worker.returned.connect(lambda b, k=k: self._boundaries_layer(b, k + 1, params))
        self._finalize_worker = worker
        worker.start()

    def _boundaries_layer(self, boundaries: np.ndarray, iteration: int, params=None):
        from napari.utils.colormaps import DirectLabelColormap

        s = self.session
        params = params or s.params
        base = f"{s.image} boundaries"
        name = self._unedited_name(base)
        data = boundaries.astype(np.uint8)
        image_layer = _layer_or_none(self.viewer, s.image)
        meta = {**(calibration_of(image_layer) if image_layer is not None else {}),
                "napari_grains": {"iteration": iteration, "threshold": params.threshold,
                                  "model": s.model.name, "params": asdict(params),
                                  "written": data_sha256(data)}}
        if name != base:
            show_info(f"'{base}' holds edits or boundaries from elsewhere, so it is kept as it "
                      f"is; the new result is in '{name}'.")
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.metadata.update(meta)
        else:
            geo = geometry_of(image_layer) if image_layer is not None else {}
            layer = self.viewer.add_labels(
                data, name=name, metadata=meta, opacity=0.8, **geo,
                colormap=DirectLabelColormap(color_dict={None: "transparent", 1: "magenta"}))
        layer.selected_label = 1
        self._note(f"boundaries from iteration {iteration} (threshold "
                   f"{params.threshold:g}) in '{name}': edit with the brush/eraser", 1.0)
        return layer

    def _unedited_name(self, base: str) -> str:
        """``base``, or ``base [2]``, ``base [3]``…: the first layer name that is free or holds
        exactly what this dock last wrote there. A boundaries layer someone edited (brush,
        correction dock) or loaded is never overwritten by a new run."""
        k = 1
        while True:
            name = base if k == 1 else f"{base} [{k}]"
            if name not in self.viewer.layers:
                return name
            layer = self.viewer.layers[name]
            written = layer.metadata.get("napari_grains", {}).get("written")
            if written is not None and written == data_sha256(np.asarray(layer.data)):
                return name
            k += 1

    def _show(self, name: str, data: np.ndarray, source, *, leading: int = 0, rgb=False,
              **kwargs):
        """Put ``data`` in layer ``name`` (created on top of ``source`` when missing)."""
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            return layer
        geo = geometry_of(source, leading)  # leading axes start at 0: index k is world k
        return self.viewer.add_image(data, name=name, rgb=rgb, metadata={OUTPUT_KEY: True},
                                     **geo, **kwargs)


def _layer_or_none(viewer, name: str):
    return viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 (no .get)


def _reporter(doing: str):
    """An ``errored`` handler (given at creation, so napari does not re-raise the error)."""
    return lambda exc: notify_error(exc, doing)


def _fmt(v) -> str:
    if isinstance(v, (tuple, list)):
        return "/".join(_fmt(x) for x in v)
    try:
        return f"{float(v):.3g}"
    except (TypeError, ValueError):
        return str(v)
