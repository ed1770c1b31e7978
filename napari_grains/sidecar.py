"""Autosave of hand-corrected boundaries in a sidecar file (no GUI).

No correction is ever lost: the napari correction dock writes the edited boundary map, a few
seconds after the last edit, to ``<image stem>.grains-edits.npz`` next to the image (or in a
folder the user chooses). The write is atomic (:func:`napari_grains.io.atomic_write`), so a crash
mid-write leaves the previous sidecar intact. When the same image is opened again -- matched
by the SHA-256 of its file, not by name -- the dock offers the sidecar back.

A sidecar is a NumPy ``.npz`` archive holding ``boundaries`` (bit-packed bool) and ``header``
(a JSON string: image path, image sha256, shape, save time, format version).

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()); img = d / "a.png"; _ = img.write_bytes(b"pixels")
>>> b = np.zeros((4, 5), bool); b[2] = True
>>> p = save_sidecar(b, image_path=img)
>>> p.name
'a.grains-edits.npz'
>>> bool((find_sidecar(img).boundaries == b).all())
True
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_grains.errors import GrainsError
from napari_grains.io import atomic_write, sha256_file

#: Suffix after the image's stem.
SUFFIX = ".grains-edits.npz"
#: Sidecar format version written in the header.
VERSION = 1


@dataclass
class Sidecar:
    """A saved correction, as read back.

    Attributes
    ----------
    boundaries : ndarray of bool, shape (rows, cols)
    path : Path
        The sidecar file.
    image_path : str or None
        The image it was made for, as written at save time.
    image_sha256 : str
        Fingerprint of that image (its file, or its pixel data when it had no file).
    shape : tuple of int
    saved_at : str
        ISO 8601 UTC time of the save.
    """

    boundaries: np.ndarray
    path: Path
    image_path: str | None
    image_sha256: str
    shape: tuple[int, int]
    saved_at: str


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (:func:`napari_grains.io.sha256_file`)."""
    return sha256_file(path, chunk=chunk)


def data_sha256(data: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes: the fingerprint of an image with no file."""
    a = np.ascontiguousarray(data)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(memoryview(a).cast("B"))  # the buffer itself: no copy of a large image
    return h.hexdigest()


def sidecar_path(
    image_path: str | os.PathLike | None = None,
    *,
    folder: str | os.PathLike | None = None,
    name: str | None = None,
) -> Path:
    """Where the sidecar of an image lives.

    Parameters
    ----------
    image_path : path, optional
        The image file; the sidecar goes next to it unless ``folder`` is given.
    folder : path, optional
        A folder the user chose for sidecars (needed when the image has no file or its
        folder is read-only).
    name : str, optional
        Stem to use when there is no image file (e.g. the napari layer name).

    Raises
    ------
    GrainsError
        When neither an image path nor a folder and name say where to write.
    """
    if image_path is not None:
        p = Path(image_path)
        stem = p.stem
        base = Path(folder) if folder is not None else p.parent
    else:
        if folder is None or not name:
            raise GrainsError(
                "this image has no file, so its corrections cannot be saved next to it; "
                "choose an autosave folder."
            )
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        base = Path(folder)
    return base / f"{stem}{SUFFIX}"


def save_sidecar(
    boundaries: np.ndarray,
    *,
    image_path: str | os.PathLike | None = None,
    image_sha256: str | None = None,
    folder: str | os.PathLike | None = None,
    name: str | None = None,
) -> Path:
    """Write the corrected boundaries atomically; returns the sidecar path.

    Parameters
    ----------
    boundaries : ndarray, shape (rows, cols)
        Boundary map (nonzero = boundary).
    image_path : path, optional
        The image file the boundaries belong to.
    image_sha256 : str, optional
        Its fingerprint; computed from ``image_path`` when omitted.
    folder, name : optional
        See :func:`sidecar_path`.

    Raises
    ------
    GrainsError
        For a map that is not 2-D, or when there is nothing to fingerprint the image by.
    """
    b = np.asarray(boundaries)
    if b.ndim != 2:
        raise GrainsError(f"boundary map has shape {b.shape}; a sidecar holds one 2-D map.")
    if image_sha256 is None:
        if image_path is None:
            raise GrainsError("give the image path or its fingerprint (image_sha256) to autosave.")
        image_sha256 = file_sha256(image_path)
    path = sidecar_path(image_path, folder=folder, name=name)
    header = {
        "version": VERSION,
        "image_path": str(Path(image_path).resolve()) if image_path is not None else None,
        "image_sha256": image_sha256,
        "shape": [int(b.shape[0]), int(b.shape[1])],
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    packed = np.packbits(b.astype(bool), axis=None)

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, boundaries=packed, header=np.array(json.dumps(header)))

    try:
        return atomic_write(path, _write)
    except OSError as exc:
        raise GrainsError(
            f"could not autosave corrections to {path}: {exc}. Choose another autosave folder."
        ) from exc


def load_sidecar(path: str | os.PathLike) -> Sidecar:
    """Read a sidecar file.

    Raises
    ------
    GrainsError
        When the file is missing or not a napari-grains sidecar.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            packed = z["boundaries"]
        shape = tuple(int(s) for s in header["shape"])
        n = shape[0] * shape[1]
        boundaries = np.unpackbits(packed, count=n).astype(bool).reshape(shape)
    except FileNotFoundError as exc:
        raise GrainsError(f"no sidecar at {p}") from exc
    except Exception as exc:
        raise GrainsError(f"{p.name} is not a readable napari-grains sidecar ({exc}); "
                          "delete it or choose another file.") from exc
    return Sidecar(
        boundaries=boundaries,
        path=p,
        image_path=header.get("image_path"),
        image_sha256=header.get("image_sha256", ""),
        shape=shape,  # type: ignore[arg-type]
        saved_at=header.get("saved_at", ""),
    )


def find_sidecar(
    image_path: str | os.PathLike | None = None,
    *,
    image_sha256: str | None = None,
    folder: str | os.PathLike | None = None,
    name: str | None = None,
) -> Sidecar | None:
    """The sidecar saved for this image, or None.

    Looks where :func:`sidecar_path` says and accepts the file only when its recorded
    fingerprint matches the image's (a sidecar for an older version of a file with the same
    name is ignored). Unreadable sidecars are ignored too.
    """
    try:
        path = sidecar_path(image_path, folder=folder, name=name)
    except GrainsError:
        return None
    if not path.exists():
        return None
    try:
        sc = load_sidecar(path)
    except GrainsError:
        return None
    if image_sha256 is None:
        if image_path is None:
            return None
        image_sha256 = file_sha256(image_path)
    return sc if sc.image_sha256 == image_sha256 else None
