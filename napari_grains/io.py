"""Reading micrographs and writing results safely.

Everything the core computes on is a 2-D float32 image in [0, 1]. :func:`read_image` turns the
files users have (PNG, JPEG, TIFF of 8/16 bit, float, RGB/RGBA, and microscope formats handled by
:mod:`napari_grains.formats`) into that, keeping the pixel size when the file knows it.
:func:`atomic_write` makes every export all-or-nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_grains.errors import GrainsError

#: Extensions read by the built-in readers (microscope formats are added by ``formats``).
PLAIN_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class Micrograph:
    """A gray image ready for the core, with what is known of its pixel size.

    Attributes
    ----------
    data : ndarray of float32, shape (rows, cols)
        Intensities scaled to [0, 1].
    pixel_size : float or None
        Edge length of one pixel in ``unit``; None when the file does not say.
    unit : str or None
        Unit of ``pixel_size`` (``"nm"``, ``"µm"``, ...).
    path : Path or None
        Where it was read from.
    metadata : dict
        Anything else worth keeping (original dtype, shape, format).
    """

    data: np.ndarray
    pixel_size: float | None = None
    unit: str | None = None
    path: Path | None = None
    metadata: dict = field(default_factory=dict)


def to_gray_float(array: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Convert an image array to a 2-D float32 gray image in [0, 1].

    Accepts (rows, cols) gray, (rows, cols, 3) RGB and (rows, cols, 4) RGBA arrays of any
    integer or float dtype. Integer images are scaled by their dtype's range (so a dark 16-bit
    image stays dark); float images already in [0, 1] are kept, other floats are min-max scaled.

    Raises
    ------
    GrainsError
        For 3-D stacks, empty images, complex or non-finite data.
    """
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    if a.size == 0 or min(a.shape[:2] or (0,)) == 0:
        raise GrainsError(f"{name} is empty (shape {a.shape}); open a real micrograph.")
    if np.iscomplexobj(a) or not (np.issubdtype(a.dtype, np.number)):
        raise GrainsError(f"{name} has data type {a.dtype}, which is not an image.")
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3].astype(np.float64)
        a = rgb @ np.array([0.2989, 0.5870, 0.1140])  # MATLAB rgb2gray weights
        a = _scale(a, array.dtype)
    elif a.ndim == 2:
        a = _scale(a.astype(np.float64), a.dtype)
    elif a.ndim == 3 and 1 in a.shape:
        return to_gray_float(np.squeeze(a), name=name)
    else:
        raise GrainsError(
            f"{name} has shape {a.shape}: napari-grains works on single 2-D images. "
            "For a stack or a time series, pick one plane (e.g. in napari, or with "
            "tifffile.imread(path)[i]) and save it as its own file."
        )
    if not np.all(np.isfinite(a)):
        raise GrainsError(f"{name} contains NaN or infinite values; clean them up first.")
    return a.astype(np.float32)


def _scale(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if info.min < 0:
            return (a - info.min) / (info.max - info.min)
        return a / info.max
    if not np.all(np.isfinite(a)):
        return a
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return a
    if hi == lo:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def read_image(path: str | os.PathLike) -> Micrograph:
    """Read a micrograph file into a :class:`Micrograph`.

    Parameters
    ----------
    path : str or Path
        PNG, JPEG, TIFF or BMP; microscope formats (DM3/DM4, MRC, ...) when
        :mod:`napari_grains.formats` can read them.

    Raises
    ------
    GrainsError
        When the file is missing, unreadable, corrupt, or not a single 2-D image.
    """
    p = Path(path)
    if not p.exists():
        raise GrainsError(f"no such file: {p}")
    if p.is_dir():
        raise GrainsError(f"{p} is a folder; give an image file (or use 'napari-grains run' on folders).")
    ext = p.suffix.lower()
    try:
        from napari_grains import formats  # microscope formats, optional
    except ImportError:  # pragma: no cover - formats is part of the package
        formats = None
    if formats is not None and formats.handles(p):
        return formats.read(p)
    if ext not in PLAIN_EXTENSIONS:
        raise GrainsError(
            f"{p.name}: unsupported file type '{ext or '(none)'}'. napari-grains reads "
            "PNG, JPEG, TIFF, BMP and microscope formats (DM3/DM4, MRC, ...); "
            "export your image to one of those."
        )
    _check_signature(p, ext)
    try:
        if ext in (".tif", ".tiff"):
            arr, pixel_size, unit, meta = _read_tiff(p)
        else:
            import imageio.v3 as iio

            arr = iio.imread(p)
            pixel_size, unit, meta = None, None, {}
    except GrainsError:
        raise
    except Exception as exc:  # corrupt file: say so, never a traceback
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise GrainsError(f"could not read {p.name}: the file looks corrupt or is not a "
                          f"{ext[1:].upper()} image ({type(exc).__name__}: {detail}). "
                          "Open it in an image viewer, or export it again.") from exc
    meta.update({"dtype": str(arr.dtype), "shape": tuple(arr.shape), "format": ext[1:]})
    data = to_gray_float(arr, name=p.name)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        meta["color"] = _color_kind(arr)
    return Micrograph(data=data, pixel_size=pixel_size, unit=unit, path=p, metadata=meta)


def _color_kind(arr: np.ndarray) -> str:
    """``"color"`` when the RGB channels of ``arr`` really differ (mean spread over 2 % of the
    range), ``"gray"`` for a gray image stored as RGB."""
    rgb = arr[..., :3]
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000))))
    rgb = rgb[::step, ::step].astype(np.float64)  # a subsample is enough to tell
    span = (float(np.iinfo(arr.dtype).max) - float(np.iinfo(arr.dtype).min)
            if np.issubdtype(arr.dtype, np.integer) else max(float(np.ptp(rgb)), 1e-12))
    spread = (rgb.max(axis=-1) - rgb.min(axis=-1)) / span
    return "color" if float(spread.mean()) > 0.02 else "gray"


def color_note(m: Micrograph | np.ndarray, name: str | None = None) -> str | None:
    """What a user should know when a colour image was turned gray, else None.

    The pipeline works on one gray channel, made with luminance weights as the authors'
    MATLAB code does (``rgb2gray``). Grains that differ in hue but not in brightness (colour
    etching, polarised light) then look alike, and their boundary can be missed.

    Parameters
    ----------
    m : Micrograph or ndarray
        A micrograph read by :func:`read_image` (its metadata say whether the file was in
        colour), or the array of an image layer (looked at directly).
    name : str, optional
        What to call the image in the note (default: the file's name).
    """
    if isinstance(m, Micrograph):
        if m.metadata.get("color") != "color":
            return None
        name = name or (m.path.name if m.path is not None else None)
    else:
        a = np.asarray(m)
        if not (a.ndim == 3 and a.shape[-1] in (3, 4)) or _color_kind(a) != "color":
            return None
    name = name or "the image"
    return (f"{name} is a colour image; napari-grains turned it gray with luminance weights "
            "(as MATLAB's rgb2gray), so grains that differ only in hue look alike and their "
            "boundaries can be missed.")


#: How files of each plain type begin (their "magic number").
_SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".bmp": (b"BM",),
}


def _check_signature(p: Path, ext: str) -> None:
    """Refuse a file whose first bytes do not match its extension (a renamed or empty file)."""
    signatures = _SIGNATURES.get(ext)
    if not signatures:
        return
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise GrainsError(f"could not open {p}: {exc.strerror or exc}; check its "
                          "permissions.") from exc
    if not head:
        raise GrainsError(f"{p.name} is an empty file (0 bytes); copy or export it again.")
    if not any(head.startswith(sig) for sig in signatures):
        kind = ext[1:].upper().replace("JPEG", "JPG")
        raise GrainsError(f"{p.name} is not a {kind} file: its content does not start like "
                          f"one, so it is corrupt or another format (or text) renamed to "
                          f"'{ext}'. Open it in an image viewer and export it as PNG or TIFF.")


def _read_tiff(p: Path):
    import tifffile

    with tifffile.TiffFile(p) as tf:
        page = tf.pages[0]
        pixel_size, unit = _tiff_pixel_size(tf, page)
        meta = {"pages": len(tf.pages)}
        # The first series is the image as the writer meant it: a stack stays a stack, so
        # to_gray_float can refuse it with a clear message instead of silently taking plane 0.
        arr = tf.series[0].asarray() if len(tf.series) else page.asarray()
    return arr, pixel_size, unit, meta


def _tiff_pixel_size(tf, page) -> tuple[float | None, str | None]:
    """Pixel size from ImageJ metadata or the resolution tags, if present."""
    ij = tf.imagej_metadata or {}
    tags = page.tags
    unit = ij.get("unit")
    res = tags.get("XResolution")
    if res is not None:
        num, den = res.value
        if num:
            per_unit = num / den  # pixels per unit
            if ij and unit and unit not in ("pixel", "pixels", ""):
                return 1.0 / per_unit, _norm_unit(unit)
            ru = tags.get("ResolutionUnit")
            ru = int(ru.value) if ru is not None else 1
            if ru == 3:  # centimetre
                return 1e4 / per_unit, "µm"
            if ru == 2 and per_unit > 1000:  # inch, only when clearly a microscope calibration
                return 25400.0 / per_unit, "µm"
    return None, None


def _norm_unit(unit: str) -> str:
    u = unit.strip().replace("\\u00B5", "µ")
    return {"micron": "µm", "um": "µm", "microns": "µm", "μm": "µm"}.get(u, u)


def write_image(path: str | os.PathLike, array: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write a PNG or TIFF atomically (see :func:`atomic_write`)."""
    p = Path(path)
    ext = p.suffix.lower()

    def _write(tmp: Path) -> None:
        if ext in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, array, compression="zlib")
        else:
            import imageio.v3 as iio

            iio.imwrite(tmp, array, extension=ext)

    return atomic_write(p, _write, overwrite=overwrite)


def atomic_write(
    path: str | os.PathLike,
    writer: Callable[[Path], None],
    *,
    overwrite: bool = True,
) -> Path:
    """Write a file all-or-nothing.

    ``writer(tmp_path)`` writes to a temporary file in the same folder; only when it returns
    without error is the temporary file renamed over ``path`` (an atomic step on POSIX and
    Windows). A writer that fails leaves any older ``path`` untouched and no partial file.

    Parameters
    ----------
    overwrite : bool
        When False and ``path`` exists, raise :class:`GrainsError` instead of replacing it.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise GrainsError(f"{p} exists already; choose another name or allow overwriting.")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part" + p.suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _chmod_like_open(tmp)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, overwrite: bool = True,
                **kwargs) -> Iterator:
    """``open()`` for writing, all-or-nothing: the file appears only if the block succeeds.

    Examples
    --------
    >>> with atomic_open(tmp_path / "table.csv") as fh:  # doctest: +SKIP
    ...     fh.write("a,b\\n")
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise GrainsError(f"{p} exists already; choose another name or allow overwriting.")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _chmod_like_open(tmp)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _read_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


#: The process umask, read once at import: reading it means setting it, which is not
#: thread-safe (exports and autosaves run on worker threads).
_UMASK = _read_umask()


def _chmod_like_open(path: Path) -> None:
    """Give a mkstemp file (mode 0600) the permissions a plain open() would have."""
    os.chmod(path, 0o666 & ~_UMASK)


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (model checks, provenance, sidecar matching).

    Raises
    ------
    GrainsError
        When the file cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
    except OSError as exc:
        raise GrainsError(f"cannot read {path} to fingerprint it: {exc}") from exc
    return h.hexdigest()


def list_images(paths) -> list[Path]:
    """Expand files and folders (not recursive) into a sorted list of readable image files."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and _is_image_name(q)))
        elif p.exists():
            out.append(p)
        else:
            raise GrainsError(f"no such file or folder: {p}")
    return out


def _is_image_name(p: Path) -> bool:
    if p.name.startswith("."):
        return False
    ext = p.suffix.lower()
    if ext in PLAIN_EXTENSIONS:
        return True
    try:
        from napari_grains import formats
    except ImportError:  # pragma: no cover
        return False
    return formats.handles(p)
