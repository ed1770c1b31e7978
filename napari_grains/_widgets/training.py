"""Training dock: train Net1/Net2 on synthetic data in the background, watch it learn.

The synthetic-data parameters show a preview pair (image and target as layers), regenerated
on a worker a moment after a parameter changes. Start runs
:func:`napari_grains.train.iter_train` in a ``thread_worker`` -- never on the GUI thread -- and
draws its typed events: progress and ETA from ``Step``, loss and validation curves from
``Epoch`` / ``Validation``. Stop sets a flag the worker checks after every optimiser step; it
then closes the training generator, which writes a resumable checkpoint and keeps the best
model. Resume continues from that checkpoint. When training ends or stops, the model folder
is offered to the extraction dock's model picker.
"""

from __future__ import annotations

import errno
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_grains._widgets._common import OUTPUT_KEY, if_alive, scrolled_layout, stoppable
from napari_grains.errors import GrainsError

PREVIEW_DEBOUNCE_MS = 400


def _train_events(config, out_dir: Path, resume: Path | None, stop: threading.Event):
    """Iterate the core's training generator until it ends or ``stop`` is set.

    Closing the core generator here, in the worker thread, is what makes it write the
    checkpoint and keep the best model when the user stops.
    """
    from napari_grains.train import iter_train

    yield from stoppable(lambda: iter_train(config, out_dir, resume=resume), stop)
    return out_dir


def _preview_pair(config, index: int):
    from napari_grains import synth
    from napari_grains.train import _synth_params  # the exact parameters training will use

    return synth.generate_pair(_synth_params(config), seed=config.data_seed, index=index)


def describe_error(exc: BaseException, out_dir: Path | None) -> str:
    """A user-facing message for a training failure, saying what to do."""
    keep = f" The best checkpoint so far is kept in {out_dir}." if out_dir else ""
    text = str(exc)
    if isinstance(exc, GrainsError):
        return text
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return ("Training ran out of memory: lower the batch size or the image size." + keep)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "The disk is full: free some space or choose another output folder." + keep
    if isinstance(exc, OSError):
        return f"Could not write the model ({exc}); choose another output folder." + keep
    return f"Training failed: {type(exc).__name__}: {exc}." + keep


class TrainingWidget(QWidget):
    """Dock widget that trains a model on synthetic data in a background worker.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    #: Emitted with the model folder when a run ends or is stopped (best model saved).
    model_saved = Signal(str)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.preview_worker = None
        self.events: list = []
        self.model_path: Path | None = None
        self._stop = threading.Event()
        self._t0 = 0.0
        self._last_draw = 0.0
        self._build()
        self._preview_timer = QTimer(self, singleShot=True, interval=PREVIEW_DEBOUNCE_MS)
        self._preview_timer.timeout.connect(self.update_preview)
        for spin in self._data_inputs:
            signal = getattr(spin, "valueChanged", None) or spin.currentIndexChanged
            signal.connect(lambda *a: self._preview_timer.start())

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = scrolled_layout(self)
        data = QGroupBox("Synthetic data")
        form = QFormLayout(data)
        self.preset = QComboBox()
        self.preset.addItems(["realistic", "paper"])
        self.rows = QSpinBox(minimum=16, maximum=2048, singleStep=16, value=96)
        self.cols = QSpinBox(minimum=16, maximum=2048, singleStep=16, value=96)
        self.dmin = QDoubleSpinBox(minimum=2, maximum=500, value=8, suffix=" px")
        self.dmax = QDoubleSpinBox(minimum=2, maximum=500, value=30, suffix=" px")
        self.n_pairs = QSpinBox(minimum=4, maximum=100000, value=200)
        self.data_seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=50_000_000)
        self.preview_index = QSpinBox(minimum=0, maximum=100000, value=0)
        size = QHBoxLayout()
        size.addWidget(self.rows)
        size.addWidget(QLabel("×"))
        size.addWidget(self.cols)
        diam = QHBoxLayout()
        diam.addWidget(self.dmin)
        diam.addWidget(QLabel("to"))
        diam.addWidget(self.dmax)
        form.addRow("Preset", self.preset)
        form.addRow("Image size (rows × cols)", size)
        form.addRow("Mean grain diameter", diam)
        form.addRow("Pairs", self.n_pairs)
        form.addRow("Data seed", self.data_seed)
        form.addRow("Preview pair #", self.preview_index)
        self.preview_btn = QPushButton("Show preview")
        form.addRow(self.preview_btn)
        lay.addWidget(data)
        self._data_inputs = [self.preset, self.rows, self.cols, self.dmin, self.dmax,
                             self.data_seed, self.preview_index]

        tr = QGroupBox("Training")
        form = QFormLayout(tr)
        self.net1_epochs = QSpinBox(minimum=0, maximum=10000, value=5)
        self.net2_epochs = QSpinBox(minimum=0, maximum=10000, value=5)
        self.batch = QSpinBox(minimum=1, maximum=4096, value=16)
        self.lr = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1.0, singleStep=1e-4,
                                 value=1e-3)
        self.variant = QComboBox()
        self.variant.addItems(["unet", "paper"])
        self.variant.setToolTip("Net2 layout: 'unet' (skip connections, the project's) or "
                                "'paper' (the authors' layout).")
        self.device = QLabel(self._device_text())
        self.out_edit = QLineEdit(str(self._default_out()))
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        out = QHBoxLayout()
        out.addWidget(self.out_edit)
        out.addWidget(browse)
        form.addRow("Net1 epochs", self.net1_epochs)
        form.addRow("Net2 epochs", self.net2_epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("Net2 variant", self.variant)
        form.addRow("Device", self.device)
        form.addRow("Model folder", out)
        lay.addWidget(tr)

        buttons = QHBoxLayout()
        self.start_btn = QPushButton("Start")
        self.stop_btn = QPushButton("Stop")
        self.resume_btn = QPushButton("Resume")
        self.stop_btn.setEnabled(False)
        for b in (self.start_btn, self.stop_btn, self.resume_btn):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.progress = QProgressBar(maximum=1000)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self.curves = CurvesWidget()
        lay.addWidget(self.curves)
        lay.addStretch()

        self.preview_btn.clicked.connect(self.update_preview)
        self.start_btn.clicked.connect(lambda: self.start())
        self.stop_btn.clicked.connect(self.stop)
        self.resume_btn.clicked.connect(lambda: self.start(resume=True))

    @staticmethod
    def _device_text() -> str:
        from napari_grains.train import resolve_device

        dev = resolve_device("auto")
        if dev.type == "cuda":
            import torch

            return f"CUDA ({torch.cuda.get_device_name(dev)})"
        return "CPU (no CUDA GPU found)"

    @staticmethod
    def _default_out() -> Path:
        return Path.home() / "napari-grains-models" / datetime.now().strftime("trained-%Y%m%d-%H%M")

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the trained model")
        if folder:
            self.out_edit.setText(folder)

    # -------------------------------------------------------------- config
    def config(self, **overrides):
        """The :class:`~napari_grains.train.TrainConfig` the controls describe.

        Raises
        ------
        GrainsError
            When a value cannot work (the message says which).
        """
        from napari_grains.train import TrainConfig, default_card

        if self.dmin.value() > self.dmax.value():
            raise GrainsError("the smallest grain diameter is larger than the largest.")
        size = (self.rows.value() // 16 * 16, self.cols.value() // 16 * 16)
        kwargs = {
            "n_pairs": self.n_pairs.value(), "size": size, "crop": size,
            "synth_preset": "realistic" if self.preset.currentText() == "realistic" else None,
            "grain_size_range": (self.dmin.value(), self.dmax.value()),
            "data_seed": self.data_seed.value(),
            "card": default_card(self.variant.currentText()),
            "net1_epochs": self.net1_epochs.value(), "net2_epochs": self.net2_epochs.value(),
            "batch_size": self.batch.value(), "lr": self.lr.value(),
        }
        kwargs.update(overrides)
        return TrainConfig(**kwargs)

    # ------------------------------------------------------------- preview
    def update_preview(self) -> None:
        """Generate the preview pair on a worker and show it as two layers."""
        try:
            cfg = self.config(n_pairs=max(4, self.n_pairs.value()))
        except GrainsError as exc:
            show_warning(str(exc))
            return
        worker = create_worker(_preview_pair, cfg, self.preview_index.value(),
                               _start_thread=False)
        worker.returned.connect(if_alive(self, self._show_preview))
        worker.errored.connect(lambda e: show_warning(describe_error(e, None)))
        self.preview_worker = worker
        worker.start()

    def _show_preview(self, pair) -> None:
        for name, data, add in (("synthetic image", pair.image, self.viewer.add_image),
                                ("synthetic target", pair.target.astype(np.uint8),
                                 self.viewer.add_labels)):
            if name in self.viewer.layers:
                self.viewer.layers[name].data = data
            else:
                add(data, name=name, metadata={OUTPUT_KEY: True})

    # ------------------------------------------------------------ training
    @property
    def running(self) -> bool:
        """True while a training worker is alive."""
        return self.worker is not None

    def start(self, resume: bool = False, **overrides) -> None:
        """Start (or with ``resume``, continue) training in a background worker."""
        if self.running:
            show_info("Training is already running; stop it first.")
            return
        out = Path(self.out_edit.text()).expanduser()
        try:
            cfg = self.config(**overrides)
            ckpt = out / "checkpoint"
            if resume and not ckpt.is_dir():
                raise GrainsError(f"{out} holds no checkpoint to resume; press Start instead.")
            if not resume and ckpt.is_dir() and any(ckpt.iterdir()):
                raise GrainsError(f"{out} holds an earlier training: press Resume to continue "
                                  "it, or choose another folder to start a new one.")
        except GrainsError as exc:
            show_warning(str(exc))
            return
        self._stop.clear()
        self.events = [] if not resume else self.events
        self.model_path = None
        self._t0 = time.perf_counter()
        worker = create_worker(_train_events, cfg, out, out if resume else None, self._stop,
                               _start_thread=False)
        worker.yielded.connect(if_alive(self, self._on_event))
        worker.returned.connect(if_alive(self, self._on_returned))
        worker.errored.connect(if_alive(self, lambda e: self._on_error(e, out)))
        worker.finished.connect(if_alive(self, self._on_finished))
        self.worker = worker
        self._set_running(True)
        self.status.setText("generating synthetic data…")
        worker.start()

    def stop(self) -> None:
        """Ask the worker to stop after the current step (the best model is kept)."""
        if self.running:
            self._stop.set()
            self.status.setText("stopping after this step…")

    def _set_running(self, on: bool) -> None:
        self.start_btn.setEnabled(not on)
        self.resume_btn.setEnabled(not on)
        self.stop_btn.setEnabled(on)

    def _on_event(self, ev) -> None:
        from napari_grains import train

        self.events.append(ev)
        if isinstance(ev, train.DataProgress):
            self.status.setText(f"{ev.what}: {ev.done}/{ev.total}")
        elif isinstance(ev, train.Step):
            frac = self._fraction(ev)
            self.progress.setValue(int(1000 * frac))
            elapsed = time.perf_counter() - self._t0
            eta = elapsed / frac * (1 - frac) if frac > 0 else float("nan")
            self.status.setText(
                f"{ev.stage} epoch {ev.epoch + 1}, batch {ev.batch + 1}/{ev.n_batches}, "
                f"loss {ev.loss:.4f} — ETA {_fmt_seconds(eta)}"
            )
            if time.perf_counter() - self._last_draw > 0.5:
                self.draw_curves()
        elif isinstance(ev, (train.Epoch, train.Validation)):
            self.draw_curves()

    def _fraction(self, ev) -> float:
        n1, n2 = self.net1_epochs.value(), self.net2_epochs.value()
        total = max(1, n1 + n2)
        done = (0 if ev.stage == "net1" else n1) + ev.epoch + (ev.batch + 1) / ev.n_batches
        return min(1.0, done / total)

    def curve_data(self) -> dict:
        """Per stage: steps and losses, and the validation error after each epoch."""
        from napari_grains import train

        data: dict = {}
        for stage in ("net1", "net2"):
            steps = [e for e in self.events if isinstance(e, train.Step) and e.stage == stage]
            vals = [e for e in self.events
                    if isinstance(e, train.Validation) and e.stage == stage and e.epoch >= 0]
            if not steps:
                continue
            per_epoch = max(1, steps[-1].n_batches)
            offset = steps[0].step - 1 - steps[0].epoch * per_epoch  # steps of a resumed run
            data[stage] = {
                "step": np.array([e.step for e in steps]),
                "loss": np.array([e.loss for e in steps]),
                "val_step": np.array([offset + (v.epoch + 1) * per_epoch for v in vals]),
                "val_error": np.array([v.error for v in vals]),
            }
        return data

    def draw_curves(self) -> None:
        """Redraw the loss and validation curves (a QPainter plot: cheap on the GUI thread)."""
        self._last_draw = time.perf_counter()
        self.curves.set_data(self.curve_data())

    def _on_returned(self, out_dir) -> None:
        from napari_grains import train

        self.progress.setValue(1000 if not self._stop.is_set() else self.progress.value())
        done = [e for e in self.events if isinstance(e, train.Done)]
        if done or self._stop.is_set():
            self.model_path = Path(out_dir)
            what = "finished" if done else "stopped (resume continues it)"
            self.status.setText(f"Training {what}; best model saved in {out_dir}")
            self._publish(self.model_path)

    def _on_error(self, exc: BaseException, out: Path) -> None:
        msg = describe_error(exc, out if (out / "checkpoint").is_dir() else None)
        self.status.setText(msg)
        show_error(msg)

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        self.draw_curves()

    def _publish(self, path: Path) -> None:
        """Tell the extraction dock(s) about the new model, then emit ``model_saved``."""
        docks = getattr(getattr(self.viewer, "window", None), "dock_widgets", {}) or {}
        for widget in list(docks.values()):  # inner widgets of the docks
            adder = getattr(widget, "add_model_folder", None)
            if callable(adder):
                adder(str(path))
        show_info(f"Model saved: {path}")
        self.model_saved.emit(str(path))


_COLOURS = {"net1": "#1f77b4", "net2": "#ff7f0e"}


class CurvesWidget(QWidget):
    """Training loss per step and validation error per epoch, drawn with QPainter.

    Plain Qt drawing of a few hundred points costs well under a millisecond, so the curves
    follow every event without a matplotlib render on the GUI thread.
    """

    def __init__(self):
        super().__init__()
        self.data: dict = {}
        self.setMinimumHeight(180)

    def set_data(self, data: dict) -> None:
        """Show ``data`` (see :meth:`TrainingWidget.curve_data`)."""
        self.data = data
        self.update()

    def paintEvent(self, event):  # Qt API name
        from qtpy.QtCore import QPointF, QRectF
        from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF

        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fg = self.palette().windowText().color()
        w, h = self.width(), self.height()
        left, right, top, bottom = 44, 8, 8, 50
        plot = QRectF(left, top, max(1, w - left - right), max(1, h - top - bottom))
        p.setPen(QPen(fg, 1))
        p.drawRect(plot)
        series = [(st, d) for st, d in self.data.items() if len(d["step"])]
        if not series:
            p.drawText(plot, Qt.AlignCenter, "loss and validation curves appear here")
            p.end()
            return
        xs = np.concatenate([np.r_[d["step"], d["val_step"]] for _, d in series]).astype(float)
        ys = np.concatenate([np.r_[d["loss"], d["val_error"]] for _, d in series]).astype(float)
        ys = ys[np.isfinite(ys)]
        x0, x1 = float(xs.min()), float(max(xs.max(), xs.min() + 1))
        y0, y1 = 0.0, float(ys.max()) * 1.05 if ys.size and ys.max() > 0 else 1.0

        def pt(x, y):
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (y - y0) / (y1 - y0) * plot.height())

        for i, (stage, d) in enumerate(series):
            colour = QColor(_COLOURS.get(stage, "#888888"))
            p.setPen(QPen(colour, 1.2))
            p.drawPolyline(QPolygonF([pt(x, y) for x, y in zip(d["step"], d["loss"])
                                      if np.isfinite(y)]))
            p.setBrush(colour)
            for x, y in zip(d["val_step"], d["val_error"]):
                if np.isfinite(y):
                    p.drawEllipse(pt(x, y), 3.5, 3.5)
            p.setPen(QPen(colour, 1))
            p.drawText(QRectF(plot.left(), plot.bottom() + 32, plot.width(), 16),
                       Qt.AlignLeft if i == 0 else Qt.AlignRight,
                       f"{stage}: — loss  ● val. error")
        p.setPen(QPen(fg, 1))
        p.drawText(QPointF(2, plot.top() + 10), f"{y1:.3g}")
        p.drawText(QPointF(2, plot.bottom()), "0")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), 16), Qt.AlignLeft,
                   f"{x0:.0f}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), 16), Qt.AlignRight,
                   f"{x1:.0f}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 16, plot.width(), 16), Qt.AlignCenter,
                   "optimiser step (per stage)")
        p.end()


def _fmt_seconds(s: float) -> str:
    if not np.isfinite(s):
        return "…"
    s = round(s)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"
