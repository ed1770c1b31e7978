"""Many images: extract + measure + export, on a local process pool or a Dask cluster.

:func:`iter_batch` is the core: a generator that yields one :class:`BatchEvent` per image as
it finishes (``"done"`` or ``"failed"``), keeps ``OUT/summary.csv`` up to date after every
image, and writes ``OUT/field_statistics.json`` at the end when two or more images were
measured. Stop iterating (or close the generator) to cancel: images not started are dropped.
One bad image is reported as ``"failed"`` and never stops the others.

:func:`run_batch` wraps it with a progress bar for the command line.

Where the work runs:

* ``workers=1``: in this process, one image after the other (handy for a GUI thread worker);
* ``workers=N`` (default: the number of CPU cores): a local
  :class:`concurrent.futures.ProcessPoolExecutor` of ``N`` spawned processes;
* ``scheduler="tcp://host:8786"`` (or a ``distributed.Client``): an existing Dask distributed
  cluster; the workers need napari-grains installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from napari_grains.errors import GrainsError
from napari_grains.io import atomic_write, list_images

__all__ = [
    "SUMMARY_COLUMNS",
    "BatchEvent",
    "BatchResult",
    "iter_batch",
    "process_image",
    "run_batch",
    "summary_row",
    "write_summary_csv",
]

#: Columns of ``summary.csv`` (one row per image).
SUMMARY_COLUMNS = (
    "image", "stem", "status", "error", "n_grains", "n_cut_by_border", "unit", "pixel_size",
    "pixel_size_source", "mean_ecd", "median_ecd", "std_ecd", "lognormal_mu", "lognormal_sigma",
    "grains_per_mm2", "G_planimetric", "mean_intercept", "G_intercept", "anisotropy_index",
    "bamboo_fraction", "mean_grain_length_along_line", "n_iterations", "converged", "seconds",
    "output_dir",
)


@dataclass
class BatchEvent:
    """One image of a batch, finished.

    Attributes
    ----------
    kind : {"done", "failed"}
    index : int
        Position of the image in the input list.
    path : Path
        The image.
    n_finished, n_total : int
        Progress of the batch.
    row : dict
        Its line of ``summary.csv`` (see :data:`SUMMARY_COLUMNS`).
    summary : dict or None
        The image's full summary statistics when done.
    error : str or None
        What went wrong, when failed.
    outputs : dict
        Export kind -> file written.
    """

    kind: str
    index: int
    path: Path
    n_finished: int
    n_total: int
    row: dict
    summary: dict | None = None
    error: str | None = None
    outputs: dict = field(default_factory=dict)


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    rows : list of dict
        One ``summary.csv`` row per image, in input order.
    failed : list of BatchEvent
    field_statistics : dict or None
        Over the measured images (two or more).
    summary_csv : Path
    out_dir : Path
    warnings : list of str
        ``"<image name>: <warning>"`` for measured images whose summary carries warnings.
    """

    rows: list
    failed: list
    field_statistics: dict | None
    summary_csv: Path
    out_dir: Path
    warnings: list = field(default_factory=list)


def summary_row(stem: str, image: str, summary: dict | None, *, status: str = "done",
                error: str | None = None, extra: dict | None = None) -> dict:
    """One ``summary.csv`` row from an image's summary statistics."""
    row = {c: None for c in SUMMARY_COLUMNS}
    row.update({"image": image, "stem": stem, "status": status, "error": error})
    if summary is not None:
        unit = summary.get("unit") or "px"
        ecd = summary["equivalent_diameter"].get(unit) or summary["equivalent_diameter"]["px"]
        e = summary["astm_e112"]
        inter = e["intercept"]
        key = "mean_intercept_px" if unit == "px" else f"mean_intercept_{_ascii(unit)}"
        lf = summary.get("lognormal") or {}
        row.update({
            "n_grains": summary["n_grains"], "n_cut_by_border": summary["n_cut_by_border"],
            "unit": unit, "pixel_size": summary.get("pixel_size"),
            "mean_ecd": ecd["mean"], "median_ecd": ecd["median"], "std_ecd": ecd["std"],
            "lognormal_mu": lf.get("mu"), "lognormal_sigma": lf.get("sigma"),
            "grains_per_mm2": (e["planimetric"] or {}).get("grains_per_mm2"),
            "G_planimetric": (e["planimetric"] or {}).get("G"),
            "mean_intercept": inter.get(key), "G_intercept": inter.get("G"),
            "anisotropy_index": inter.get("anisotropy_index"),
        })
        ic = summary.get("interconnect")
        if ic:
            gl = ic.get(f"grain_length_{_ascii(unit)}") or ic.get("grain_length_px") or {}
            row["bamboo_fraction"] = ic.get("bamboo_fraction")
            row["mean_grain_length_along_line"] = gl.get("mean")
    if extra:
        row.update({k: v for k, v in extra.items() if k in row})
    return row


def _ascii(unit: str) -> str:
    return "px" if unit == "px" else {"µm": "um"}.get(unit, unit)


def write_summary_csv(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Write ``summary.csv`` (atomically, replacing the batch's previous version)."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(SUMMARY_COLUMNS))
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False), overwrite=True)


def process_image(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    stem: str,
    *,
    model: str = "default",
    extract_params: dict | None = None,
    measure_params: dict | None = None,
    pixel_size: float | None = None,
    unit: str | None = None,
    histogram: dict | None = None,
    overwrite: bool = False,
    threads: int | None = None,
) -> dict:
    """Read, extract, measure and export one image; never raises.

    Runs in worker processes, so everything it takes and returns is plain data.

    Parameters
    ----------
    path : path
        The micrograph.
    out_dir : path
        Results go to ``out_dir/stem/``.
    stem : str
        Name of the image's results.
    model : str
        Model name or folder, for :func:`napari_grains.nets.load_model`.
    extract_params, measure_params : dict, optional
        Fields of :class:`~napari_grains.extract.ExtractParams` and
        :class:`~napari_grains.measure.MeasureParams`.
    pixel_size, unit : optional
        Override the pixel size the file records (None: use the file's, if any).
    histogram : dict, optional
        Histogram options (bins, log, weights).
    overwrite : bool
        Replace earlier results of the same stem.
    threads : int, optional
        Torch CPU threads to use in this process.

    Returns
    -------
    dict
        ``ok`` (bool), ``row`` (summary.csv row), ``summary``, ``outputs``, ``error``.
    """
    t0 = time.perf_counter()
    name = Path(path).name
    try:
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        from napari_grains.extract import ExtractParams, extract
        from napari_grains.io import color_note, read_image
        from napari_grains.measure import MeasureParams, measure, provenance
        from napari_grains.nets import load_model

        mg = read_image(path)
        if pixel_size is not None:
            ps, u, source = pixel_size, unit, "given"
        elif mg.pixel_size is not None:
            ps, u, source = mg.pixel_size, mg.unit, "file"
        else:
            ps, u, source = None, None, None
        mp = MeasureParams(**(measure_params or {})).validate()
        ep = ExtractParams(**(extract_params or {}))
        gm = load_model(model)
        res = extract(mg, gm, ep)
        prov = provenance(
            input_path=path, model=gm,
            parameters={"extract": _plain(res.params.__dict__), "measure": mp.to_dict(),
                        "histogram": histogram or {}},
            extra={"pixel_size_source": source,
                   "extraction": {"n_iterations": int(res.n_iterations),
                                  "converged": bool(res.converged)}},
        )
        m = measure(res.boundaries, pixel_size=ps, unit=u, image=mg.data, params=mp,
                    provenance=prov)
        note = color_note(mg)
        if note:  # listed with the run's other warnings, and kept in the summary JSON
            m.summary.setdefault("warnings", []).append(note)
        target = Path(out_dir) / stem
        outputs = m.save_all(target, stem, overwrite=overwrite, histogram=histogram)
        from napari_grains.io import write_image

        write_image(target / f"{stem}_boundaries.png",
                    (res.boundaries.astype("uint8") * 255), overwrite=True)
        outputs["boundaries"] = target / f"{stem}_boundaries.png"
        extra = {"pixel_size_source": source, "n_iterations": int(res.n_iterations),
                 "converged": bool(res.converged), "seconds": time.perf_counter() - t0,
                 "output_dir": str(target)}
        return {"ok": True, "row": summary_row(stem, str(path), m.summary, extra=extra),
                "summary": m.summary, "outputs": {k: str(v) for k, v in outputs.items()},
                "error": None}
    except GrainsError as exc:
        text = str(exc)
        msg = text if text.startswith(name) else f"{name}: {text}"  # name it once, first
    except MemoryError:
        msg = f"{name}: out of memory; try fewer workers or a smaller image."
    except Exception as exc:  # noqa: BLE001 - a bug or odd file: report it, keep the batch going
        msg = (f"{name}: unexpected {type(exc).__name__}: {exc} (please report this with the "
               f"file)\n{traceback.format_exc(limit=4)}")
    row = summary_row(stem, str(path), None, status="failed", error=msg.splitlines()[0],
                      extra={"seconds": time.perf_counter() - t0})
    return {"ok": False, "row": row, "summary": None, "outputs": {}, "error": msg}


def _plain(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _stems(paths: Sequence[Path]) -> list[str]:
    from napari_grains.measure import unique_stems

    return unique_stems(paths)


def iter_batch(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    model: str = "default",
    extract_params: dict | None = None,
    measure_params: dict | None = None,
    pixel_size: float | None = None,
    unit: str | None = None,
    histogram: dict | None = None,
    workers: int | None = None,
    scheduler=None,
    overwrite: bool = False,
) -> Generator[BatchEvent, None, dict | None]:
    """Process images and yield a :class:`BatchEvent` as each one finishes.

    Parameters
    ----------
    paths : sequence of path
        Image files and folders (folders are expanded, not recursively).
    out_dir : path
        Results: ``out_dir/<stem>/...`` per image, ``out_dir/summary.csv``,
        ``out_dir/field_statistics.json``.
    model, extract_params, measure_params, pixel_size, unit, histogram
        As :func:`process_image`.
    workers : int, optional
        Local processes (default: the number of CPU cores); 1 runs in this process.
    scheduler : str or distributed.Client, optional
        Send the images to this Dask cluster instead of a local pool.
    overwrite : bool
        Replace results already in ``out_dir``; without it an existing ``summary.csv`` is
        refused before anything runs.

    Yields
    ------
    BatchEvent

    Returns
    -------
    dict or None
        The field statistics (also written to ``field_statistics.json``), when two or more
        images were measured.

    Raises
    ------
    GrainsError
        Before any work: no images, or earlier results and no ``overwrite``.
    """
    from napari_grains.measure import MeasureParams
    from napari_grains.plots import check_histogram_options
    from napari_grains.stats import combine_fields

    files = list_images(paths)
    if not files:
        raise GrainsError("no images found in " + ", ".join(str(p) for p in paths)
                          + " (napari-grains reads PNG, JPEG, TIFF, BMP and microscope files).")
    out = Path(out_dir)
    summary_csv = out / "summary.csv"
    if summary_csv.exists() and not overwrite:
        raise GrainsError(f"{summary_csv} exists already; use --overwrite to replace the "
                          "results there or choose another output folder.")
    if out.exists() and not out.is_dir():
        raise GrainsError(f"{out} is a file; give a folder for the results.")
    MeasureParams(**(measure_params or {})).validate()  # bad options fail before any work
    check_histogram_options(histogram)
    if extract_params:
        from napari_grains.extract import ExtractParams

        ExtractParams(**extract_params).validated()
    if scheduler is None:  # a missing or corrupt model fails once, before any work
        from napari_grains.nets import load_model

        load_model(model)
    stems = _stems(files)
    kwargs = {"model": model, "extract_params": extract_params,
              "measure_params": measure_params, "pixel_size": pixel_size, "unit": unit,
              "histogram": histogram, "overwrite": overwrite}
    n = len(files)
    rows: list = [None] * n
    summaries: dict[int, dict] = {}
    out.mkdir(parents=True, exist_ok=True)

    def _event(i: int, res: dict, k: int) -> BatchEvent:
        rows[i] = res["row"]
        if res["ok"]:
            summaries[i] = res["summary"]
        write_summary_csv(summary_csv, [r for r in rows if r is not None])
        return BatchEvent(kind="done" if res["ok"] else "failed", index=i, path=files[i],
                          n_finished=k, n_total=n, row=res["row"], summary=res["summary"],
                          error=res["error"], outputs=res["outputs"])

    if scheduler is not None:
        source = _dask_results(files, out, stems, kwargs, scheduler)
    elif workers == 1 or n == 1:
        source = ((i, process_image(f, out, s, **kwargs)) for i, (f, s) in
                  enumerate(zip(files, stems, strict=True)))
    else:
        source = _pool_results(files, out, stems, kwargs, workers)
    try:
        for k, (i, res) in enumerate(source, start=1):
            yield _event(i, res, k)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if len(summaries) >= 2:
        fs = combine_fields([summaries[i] for i in sorted(summaries)])
        fs["images"] = [str(files[i]) for i in sorted(summaries)]
        text = json.dumps(fs, indent=2, ensure_ascii=False)
        atomic_write(out / "field_statistics.json",
                     lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)
        return fs
    return None


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _pool_results(files, out, stems, kwargs, workers):
    import multiprocessing as mp

    n_workers = max(1, min(int(workers or _default_workers()), len(files)))
    threads = max(1, _default_workers() // n_workers)
    ctx = mp.get_context("spawn")  # torch and fork do not mix
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx)
    futures = {}
    try:
        for i, (f, s) in enumerate(zip(files, stems, strict=True)):
            futures[pool.submit(process_image, f, out, s, threads=threads, **kwargs)] = i
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = futures[fut]
                yield i, _future_result(fut.result, files[i], stems[i])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _future_result(get, path, stem) -> dict:
    """The worker's result, or a failure record when the worker itself died."""
    try:
        return get()
    except Exception as exc:  # noqa: BLE001 - the worker process crashed or was lost
        msg = f"{Path(path).name}: the worker running it failed ({type(exc).__name__}: {exc})."
        return {"ok": False, "row": summary_row(stem, str(path), None, status="failed",
                                                error=msg), "summary": None, "outputs": {},
                "error": msg}


def _dask_results(files, out, stems, kwargs, scheduler):
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise GrainsError("--scheduler needs dask.distributed: pip install 'dask[distributed]'.") \
            from exc
    own = isinstance(scheduler, str)
    try:
        client = Client(scheduler, timeout="10s") if own else scheduler
    except OSError as exc:
        raise GrainsError(f"could not reach the Dask scheduler at {scheduler}: {exc}. Start "
                          "one (dask scheduler / dask worker) or drop --scheduler.") from exc
    futures = []
    index = {}
    try:
        for i, (f, s) in enumerate(zip(files, stems, strict=True)):
            fut = client.submit(process_image, str(f), str(out), s, pure=False, threads=1,
                                key=f"napari-grains-{s}-{i}-{time.time_ns()}", **kwargs)
            futures.append(fut)
            index[fut.key] = i
        for fut in as_completed(futures):
            i = index[fut.key]
            yield i, _future_result(fut.result, files[i], stems[i])
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
        if own:
            client.close()


def run_batch(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    **kwargs,
) -> BatchResult:
    """Run :func:`iter_batch` to the end with a tqdm progress bar.

    Failed images are reported on the bar as they happen and listed in the result; they
    never end the batch.

    Returns
    -------
    BatchResult
    """
    from tqdm import tqdm

    gen = iter_batch(paths, out_dir, **kwargs)
    rows: dict[int, dict] = {}
    failed = []
    warnings: list[str] = []
    bar = None
    fs = None
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                fs = stop.value
                break
            if bar is None:
                bar = tqdm(total=ev.n_total, unit="image", disable=not progress,
                           desc="napari-grains run")
            bar.update(1)
            rows[ev.index] = ev.row
            for w in (ev.summary or {}).get("warnings", []):
                warnings.append(f"{Path(ev.path).name}: {w}")
            if ev.kind == "failed":
                failed.append(ev)
                if progress:  # live note above the bar; the caller lists failures at the end
                    bar.write(f"skipped {ev.error.splitlines()[0]}", file=sys.stderr)
    finally:
        gen.close()
        if bar is not None:
            bar.close()
    return BatchResult(rows=[rows[i] for i in sorted(rows)], failed=failed, field_statistics=fs,
                       summary_csv=Path(out_dir) / "summary.csv", out_dir=Path(out_dir),
                       warnings=warnings)

