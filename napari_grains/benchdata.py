"""The fixed, held-out synthetic benchmark, regenerated from seeds.

The images are not committed: ``napari-grains evaluate --make-benchmark DIR`` (or
:func:`make_benchmark`) writes them with :mod:`napari_grains.synth` from fixed seeds, the same
bytes on every machine for a given generator version. Each set is a folder in the synthetic
layout (``images/``, ``targets/``, ``labels/``, ``manifest.jsonl``) that ``napari-grains
evaluate --data DIR`` scores; ``DIR/benchmark.json`` records the definition, the generator
version and a fingerprint (sha256 of the ground-truth arrays) of every set.

Sets
----
``paper96``
    100 images of 96 × 496 px from the paper's generator with its defaults (mean grain
    diameter drawn in 20..80 px, the paper's noise).
``large-small``, ``large-medium``, ``large-large``
    10 images each of 512 × 512 px at a mean grain diameter of 15, 40 and 100 px (paper noise,
    sigma of ln(diameter) drawn in 0.2..0.4): does a model work at native resolution, away from
    the 96 × 496 it was trained on?
``realistic``
    30 images of 256 × 256 px with the realism concepts on (``SynthParams.realistic()``: blur,
    uneven illumination, low contrast, texture, bend contours, twins, grooves; grain diameters
    6..160 px): the hard set.

Seeds
-----
Set ``k`` (1..5, in the order above) is the synthetic data set with seed ``900_000_000 + k``
(pair ``i`` uses ``SeedSequence(900_000_000 + k, spawn_key=(i,))``). **Training must not use
seeds in 900_000_000..900_000_999**, neither as a data-set seed nor as a per-pair seed; the
project's training uses 50_000_000 + i (see :mod:`napari_grains.train`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_grains.errors import GrainsError

__all__ = [
    "BENCHMARK_VERSION",
    "SEED_BASE",
    "SETS",
    "BenchmarkSet",
    "MakeEvent",
    "fingerprint",
    "iter_make_benchmark",
    "make_benchmark",
    "set_params",
]

#: Version of the benchmark definition; bump when a set changes.
BENCHMARK_VERSION = "1"
#: Seeds of the benchmark sets are ``SEED_BASE + k``; training must avoid SEED_BASE..+999.
SEED_BASE = 900_000_000


def _paper96():
    from napari_grains.synth import SynthParams

    return SynthParams.paper()


def _large(diameter: float) -> Callable:
    def make():
        from napari_grains.synth import SynthParams

        return SynthParams.paper(height=512, width=512, mean_diameter=(diameter, diameter))

    return make


def _realistic():
    from napari_grains.synth import SynthParams

    return SynthParams.realistic(height=256, width=256)


@dataclass(frozen=True)
class BenchmarkSet:
    """Definition of one benchmark set.

    Attributes
    ----------
    name : str
        Folder name and the name evaluation tables use.
    count : int
        Number of images.
    seed : int
        Data-set seed passed to :func:`napari_grains.synth.iter_save_pairs`.
    description : str
        One line for tables and docs.
    make_params : callable
        Returns the :class:`napari_grains.synth.SynthParams` of the set.
    """

    name: str
    count: int
    seed: int
    description: str
    make_params: Callable


#: The benchmark sets, in order.
SETS: dict[str, BenchmarkSet] = {
    s.name: s
    for s in (
        BenchmarkSet("paper96", 100, SEED_BASE + 1,
                     "96x496, paper generator defaults (grains 20-80 px)", _paper96),
        BenchmarkSet("large-small", 10, SEED_BASE + 2,
                     "512x512, mean grain diameter 15 px, paper noise", _large(15.0)),
        BenchmarkSet("large-medium", 10, SEED_BASE + 3,
                     "512x512, mean grain diameter 40 px, paper noise", _large(40.0)),
        BenchmarkSet("large-large", 10, SEED_BASE + 4,
                     "512x512, mean grain diameter 100 px, paper noise", _large(100.0)),
        BenchmarkSet("realistic", 30, SEED_BASE + 5,
                     "256x256, all realism concepts, grains 6-160 px", _realistic),
    )
}


def set_params(name: str):
    """The :class:`~napari_grains.synth.SynthParams` of benchmark set ``name``."""
    return _get(name).make_params()


def _get(name: str) -> BenchmarkSet:
    if name not in SETS:
        raise GrainsError(f"unknown benchmark set {name!r}; the sets are {', '.join(SETS)}.")
    return SETS[name]


@dataclass
class MakeEvent:
    """Progress of :func:`iter_make_benchmark`: one image written.

    Attributes
    ----------
    set : str
        Set being written.
    index : int
        Images written so far over all sets (1-based).
    total : int
        Images to write over all sets.
    """

    set: str
    index: int
    total: int


def fingerprint(folder: str | Path) -> str:
    """sha256 over the ground-truth boundary maps of a set, in manifest order.

    Two folders with the same fingerprint hold the same ground truth (the PNG bytes may differ
    between encoder versions; the arrays do not).
    """
    from napari_grains.io import read_image
    from napari_grains.synth import read_manifest

    h = hashlib.sha256()
    root = Path(folder)
    for rec in read_manifest(root):
        target = read_image(root / rec["target"]).data > 0.5
        h.update(np.asarray(target.shape, np.int64).tobytes())
        h.update(np.packbits(target).tobytes())
    return h.hexdigest()


def iter_make_benchmark(
    root: str | Path,
    *,
    sets: Iterable[str] | None = None,
    n_images: int | None = None,
    overwrite: bool = False,
    workers: int | None = 1,
) -> Generator[MakeEvent, None, dict[str, Path]]:
    """Write the benchmark sets into ``root``, yielding progress.

    Parameters
    ----------
    root : str or Path
        Folder that receives one sub-folder per set and ``benchmark.json``.
    sets : iterable of str, optional
        Names of the sets to write (default: all of :data:`SETS`).
    n_images : int, optional
        Images per set instead of the defined counts: the first ``n_images`` of each set (same
        seeds), for quick checks. ``benchmark.json`` then says ``"official": false``.
    overwrite : bool
        Replace sets that exist already.
    workers : int or None
        Processes for the generator (None: all cores).

    Returns
    -------
    dict of str to Path
        The folder of each set written (``StopIteration.value``).

    Raises
    ------
    GrainsError
        For an unknown set name, a bad count, or a set that exists and ``overwrite`` is False.
    """
    from napari_grains import synth
    from napari_grains.io import atomic_write

    names = list(sets) if sets is not None else list(SETS)
    chosen = [_get(n) for n in names]
    if n_images is not None and n_images < 1:
        raise GrainsError(f"images per set must be at least 1, got {n_images}.")
    out = Path(root)
    if out.exists() and not out.is_dir():
        raise GrainsError(f"{out} is a file; give a folder for the benchmark.")
    counts = {s.name: min(s.count, n_images) if n_images else s.count for s in chosen}
    for s in chosen:
        if (out / s.name / "manifest.jsonl").exists() and not overwrite:
            raise GrainsError(f"{out / s.name} exists already; pass --overwrite to regenerate "
                              "it, or choose another folder.")
    total = sum(counts.values())
    done = 0
    folders: dict[str, Path] = {}
    info_path = out / "benchmark.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info.update(version=BENCHMARK_VERSION, generator_version=synth.GENERATOR_VERSION)
    info.setdefault("sets", {})
    for s in chosen:
        folder = out / s.name
        params = s.make_params()
        for _ in synth.iter_save_pairs(folder, counts[s.name], params, s.seed, workers=workers,
                                       overwrite=overwrite):
            done += 1
            yield MakeEvent(s.name, done, total)
        folders[s.name] = folder
        info["sets"][s.name] = {
            "description": s.description,
            "count": counts[s.name],
            "official": counts[s.name] == s.count,
            "seed": s.seed,
            "params": params.to_dict(),
            "fingerprint": fingerprint(folder),
        }
        text = json.dumps(info, indent=2) + "\n"
        atomic_write(info_path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return folders


def make_benchmark(root: str | Path, **kwargs) -> dict[str, Path]:
    """Write the benchmark sets (see :func:`iter_make_benchmark`) and return their folders.

    Examples
    --------
    >>> folders = make_benchmark("bench", sets=["paper96"], n_images=4)  # doctest: +SKIP
    """
    gen = iter_make_benchmark(root, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
