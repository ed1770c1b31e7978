"""Longest GUI event-loop stall while the extraction dock works on a 2048×2048 image.

A 10 ms QTimer on the GUI thread records when it actually fires; the longest gap between two
firings, minus the 10 ms, is the longest time napari could not answer the user. Scenarios, in
a shown napari window with the extraction dock on a 2048×2048 synthetic micrograph
(:func:`napari_grains.synth.generate_pair`, seed 3, native mode, scale 1):

* **preview**: a parameter change, the debounced edge-stack preview computed and shown;
* **run all**: Net1, ``--iterations`` Net2 iterations (each appended to the iteration layer,
  the slider moved to it, the convergence plot redrawn) and the boundaries layer;
* **use iteration**: the first iteration turned into the boundaries Labels layer;
* **scrub**: the dims slider moved across every iteration (napari re-slices the layer);
* **repaint floor**: for comparison, napari redrawing the image after a contrast change, with
  no napari-grains code involved: the cost of one canvas repaint on this machine.

Before the window opens, each core stage (preprocess, edges, Net1, Net2, finalize) also runs in
a plain thread while the main thread ticks every 5 ms: the longest tick gap shows whether the
computation itself could hold the GUI (through Python's GIL).

Goal: every stall under 100 ms. Run (starts a virtual X display when there is none)::

    .venv/bin/python benchmarks/bench_gui_latency.py [--iterations 10] [--size 2048]

The figures depend on the machine and its load; the command prints the CPU count and torch
threads with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


class StallMonitor:
    """Record the gaps between the firings of a fast QTimer on the GUI thread."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.times: list[float] = []
        self.timer = QTimer(interval=interval_ms)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def start(self) -> None:
        self.times = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        self.times.append(time.perf_counter())
        gaps = np.diff(self.times) - self.interval
        return {"max_ms": float(gaps.max()) * 1e3, "p99_ms": float(np.percentile(gaps, 99)) * 1e3,
                "duration_s": self.times[-1] - self.times[0]}


def wait(app, condition, timeout: float) -> bool:
    """Process events until ``condition()`` is true (False on timeout)."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.002)
    return False


def measure(app, label: str, action, condition, timeout: float, rows: list) -> None:
    mon = StallMonitor()
    mon.start()
    t0 = time.perf_counter()
    action()
    ok = wait(app, condition, timeout)
    stats = mon.stop()
    stats["work_s"] = time.perf_counter() - t0
    rows.append((label, stats, "" if ok else f"TIMED OUT after {timeout:.0f} s"))


def core_gil_gaps(image: np.ndarray, iterations: int) -> list[tuple[str, float, float]]:
    """Run each core stage in a thread while this thread ticks every 5 ms (no GUI).

    Returns (stage, seconds, longest tick gap in ms): a long gap would mean the stage holds
    Python's GIL, which would freeze napari's GUI thread the same way.
    """
    import threading

    from napari_grains import extract as core
    from napari_grains.nets import load_model

    model = load_model("paper")
    p = core.ExtractParams(scale=1.0, max_iterations=iterations, tolerance=0.0)
    out: list[tuple[str, float, float]] = []

    def ticked(label, fn):
        box: dict = {}
        worker = threading.Thread(target=lambda: box.setdefault("v", fn()))
        gaps = [0.0]
        t0 = last = time.perf_counter()
        worker.start()
        while worker.is_alive():
            time.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last - 0.005)
            last = now
        worker.join()
        out.append((label, time.perf_counter() - t0, max(gaps) * 1e3))
        return box["v"]

    pre = ticked("preprocess", lambda: core.preprocess(image, p, scale=1.0))
    edges = ticked("edges", lambda: core.compute_edges(pre, p))
    initial = ticked("net1", lambda: core.run_net1(edges, model, p))
    its = ticked(f"net2 x{iterations}", lambda: list(core.iter_net2(initial, model, p)))
    ticked("finalize", lambda: core.finalize(its[-1][1], pre, p))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="image side in pixels")
    ap.add_argument("--iterations", type=int, default=10, help="Net2 iterations to run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_grains._widgets.extraction import ExtractionWidget
    from napari_grains.synth import SynthParams, generate_pair

    torch.set_num_threads(args.threads)
    print(f"bench_gui_latency: {os.cpu_count()} CPUs visible, torch threads {args.threads}, "
          f"image {args.size}x{args.size}, {args.iterations} Net2 iterations", flush=True)
    image = generate_pair(SynthParams(height=args.size, width=args.size), seed=3).image
    gil = core_gil_gaps(image, min(args.iterations, 3))
    rows: list = []
    try:
        viewer = napari.Viewer(show=True)
        app = QApplication.instance()
        viewer.add_image(image, name="big")
        dock = ExtractionWidget(viewer)
        viewer.window.add_dock_widget(dock, area="right")
        dock.mode.setCurrentText("native")
        dock.scale.setValue(1.0)
        dock.max_iter.setValue(args.iterations)
        dock.tolerance.setValue(0.0)
        wait(app, lambda: False, 1.0)  # let the window settle
        wait(app, lambda: "big edges" in viewer.layers, 300)  # the first preview

        # the floor: what one napari repaint of this scene costs on this machine
        big = viewer.layers["big"]
        measure(app, "repaint floor", lambda: setattr(big, "contrast_limits", (0.05, 0.95)),
                lambda: True, 5, rows)
        wait(app, lambda: False, 0.5)
        shown = dock.previews_shown
        measure(app, "preview", lambda: dock.log_sigma.setValue(2.5),
                lambda: dock.previews_shown > shown, 300, rows)
        slot_ms: dict[str, list[float]] = {}
        handle = dock._on_yield

        def timed(item):  # GUI time of each event the worker sends (napari's updates included)
            t = time.perf_counter()
            handle(item)
            slot_ms.setdefault(item[0], []).append((time.perf_counter() - t) * 1e3)
        dock._on_yield = timed  # connected by the next run
        measure(app, "run all", dock.all_btn.click,
                lambda: dock.worker is None and "big boundaries" in viewer.layers, 3600, rows)

        def first():
            viewer.dims.set_current_step(0, 0)
            dock.use_btn.click()
        measure(app, "use iteration", first,
                lambda: viewer.layers["big boundaries"].metadata["napari_grains"]["iteration"]
                == 1, 120, rows)

        steps = iter(range(args.iterations))
        done = {"v": False}

        def scrub():
            from qtpy.QtCore import QTimer

            def step():
                try:
                    viewer.dims.set_current_step(0, next(steps))
                    QTimer.singleShot(30, step)
                except StopIteration:
                    done["v"] = True
            step()
        measure(app, "scrub", scrub, lambda: done["v"], 120, rows)
        n = viewer.layers["big iterations"].data.shape[0]
        viewer.close()
    finally:
        if display is not None:
            display.stop()
    print(f"{'scenario':<14} {'longest stall':>14} {'99th pct':>9} {'duration':>9}  notes")
    for label, s, note in rows:
        print(f"{label:<14} {s['max_ms']:>11.1f} ms {s['p99_ms']:>6.1f} ms {s['work_s']:>7.1f} s"
              f"  {note}")
    print("GUI time of the dock's handler per event of 'run all' (layer updates included):")
    for kind, times in slot_ms.items():
        rest = times[1:] or times
        print(f"  {kind:<11} first {times[0]:7.1f} ms   later: median {np.median(rest):6.1f} ms, "
              f"max {max(rest):6.1f} ms  ({len(times)} events)")
    print("core stages in a worker thread, no GUI (longest gap of a 5 ms ticker thread):")
    for label, secs, gap in gil:
        print(f"  {label:<12} {secs:6.2f} s   longest gap {gap:6.1f} ms")
    worst = max(s["max_ms"] for _, s, _ in rows)
    print(f"iterations computed: {n}; longest stall overall {worst:.1f} ms "
          f"(goal < 100 ms: {'met' if worst < 100 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
