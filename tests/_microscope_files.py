"""Writers of small microscope files for the tests (from the formats' specifications)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MRC_MODES = {np.dtype(np.int8): 0, np.dtype(np.int16): 1, np.dtype(np.float32): 2,
             np.dtype(np.uint16): 6}


def write_mrc(path: Path, data: np.ndarray, pixel_size_angstrom: float | None) -> Path:
    """Write a 2-D MRC2014 file (little endian, no extended header)."""
    data = np.asarray(data)
    ny, nx = data.shape
    words = np.zeros(256, dtype="<i4")
    floats = words.view("<f4")
    words[0:3] = (nx, ny, 1)
    words[3] = MRC_MODES[data.dtype]
    if pixel_size_angstrom is not None:  # sampling (MX, MY, MZ) and cell size in Å
        words[7:10] = (nx, ny, 1)
        floats[10:13] = (nx * pixel_size_angstrom, ny * pixel_size_angstrom, pixel_size_angstrom)
    floats[13:16] = 90.0
    words[16:19] = (1, 2, 3)
    floats[19:22] = (data.min(), data.max(), data.mean())
    header = bytearray(words.tobytes())
    header[208:212] = b"MAP "
    header[212:216] = bytes([0x44, 0x44, 0, 0])  # machine stamp: little endian
    path.write_bytes(bytes(header) + data.astype(data.dtype.newbyteorder("<")).tobytes())
    return path


def write_emd(path: Path, data: np.ndarray, pixel_size: float, unit: str = "nm") -> Path:
    """Write a 2-D image as an EMD (Berkeley NCEM) file with RosettaSciIO's own writer."""
    from rsciio.emd import file_writer

    ny, nx = data.shape
    axes = [
        {"name": "y", "units": unit, "scale": pixel_size, "offset": 0.0, "size": ny,
         "navigate": False},
        {"name": "x", "units": unit, "scale": pixel_size, "offset": 0.0, "size": nx,
         "navigate": False},
    ]
    signal = {"data": data, "axes": axes, "original_metadata": {},
              "metadata": {"General": {"title": "grains"}, "Signal": {}}}
    file_writer(str(path), signal)
    return path


# --- DigitalMicrograph 3 (Gatan's tag-tree format), the minimal tree an image needs ---------

_DM_SIMPLE = {np.dtype(np.int16): 2, np.dtype(np.int32): 3, np.dtype(np.uint16): 4,
              np.dtype(np.uint32): 5, np.dtype(np.float32): 6, np.dtype(np.float64): 7,
              np.dtype(np.uint8): 10}
_DM_IMAGE_TYPE = {np.dtype(np.int16): 1, np.dtype(np.float32): 2, np.dtype(np.uint8): 6,
                  np.dtype(np.int32): 7, np.dtype(np.uint16): 10, np.dtype(np.uint32): 11,
                  np.dtype(np.float64): 12}


def _dm_name(name: str) -> bytes:
    raw = name.encode("latin-1")
    return len(raw).to_bytes(2, "big") + raw


def _dm_int(value: int, version: int) -> bytes:  # DM3 lengths are 4 bytes, DM4 lengths 8
    return int(value).to_bytes(4 if version == 3 else 8, "big")


def _dm_tag(kind: int, name: str, body: bytes, version: int) -> bytes:
    size = _dm_int(len(body), version) if version == 4 else b""  # DM4 tags state their size
    return bytes([kind]) + _dm_name(name) + size + body


def _dm_group(name: str, children: list[bytes], version: int) -> bytes:
    body = b"\x00\x01" + _dm_int(len(children), version) + b"".join(children)
    return _dm_tag(20, name, body, version)


def _dm_data(name: str, info: list[int], payload: bytes, version: int) -> bytes:
    head = b"%%%%" + _dm_int(len(info), version) + b"".join(_dm_int(i, version) for i in info)
    return _dm_tag(21, name, head + payload, version)


def _dm_scalar(name: str, value, dtype, version: int) -> bytes:
    dt = np.dtype(dtype)
    payload = np.asarray(value, dt.newbyteorder("<")).tobytes()
    return _dm_data(name, [_DM_SIMPLE[dt]], payload, version)


def _dm_text(name: str, text: str, version: int) -> bytes:  # short texts: arrays of uint16
    codes = np.frombuffer(text.encode("utf-16-le"), "<u2")
    return _dm_data(name, [20, 4, len(codes)], codes.tobytes(), version)


def _dm_calibration(name: str, scale: float, unit: str, version: int) -> bytes:
    return _dm_group(name, [_dm_scalar("Origin", 0.0, np.float32, version),
                            _dm_scalar("Scale", scale, np.float32, version),
                            _dm_text("Units", unit, version)], version)


def write_dm(path: Path, data: np.ndarray, pixel_size: float, unit: str = "nm",
             version: int = 3) -> Path:
    """Write a 2-D image as a little-endian DM3 or DM4 file (Gatan DigitalMicrograph).

    The tag tree holds what DigitalMicrograph writes for a plain image: ``ImageList`` → one
    image → ``ImageData`` with ``Data``, ``DataType``, ``Dimensions`` (x, y), ``PixelDepth``
    and ``Calibrations`` (``Brightness`` and one ``Dimension`` entry per axis, x first). DM4
    differs from DM3 by 8-byte lengths and a size field after each tag's name.
    """
    v = int(version)
    data = np.ascontiguousarray(data)
    ny, nx = data.shape
    raw = data.astype(data.dtype.newbyteorder("<")).tobytes()
    image_data = _dm_group("ImageData", [
        _dm_group("Calibrations", [
            _dm_calibration("Brightness", 1.0, "Counts", v),
            _dm_group("Dimension", [_dm_calibration("", pixel_size, unit, v),
                                    _dm_calibration("", pixel_size, unit, v)], v),
        ], v),
        _dm_data("Data", [20, _DM_SIMPLE[data.dtype], data.size], raw, v),
        _dm_scalar("DataType", _DM_IMAGE_TYPE[data.dtype], np.int32, v),
        _dm_group("Dimensions", [_dm_scalar("", nx, np.int32, v),
                                 _dm_scalar("", ny, np.int32, v)], v),
        _dm_scalar("PixelDepth", data.dtype.itemsize, np.int32, v),
    ], v)
    image = _dm_group("", [image_data, _dm_group("ImageTags", [], v),
                           _dm_text("Name", "grains", v)], v)
    image_list = _dm_group("ImageList", [image], v)
    root = b"\x00\x01" + _dm_int(1, v) + image_list  # the root group has no tag header
    body = root + b"\x00" * 8
    header = (v.to_bytes(4, "big") + _dm_int(len(body) + 4, v) + (1).to_bytes(4, "big"))
    path.write_bytes(header + body)
    return path


def write_dm3(path: Path, data: np.ndarray, pixel_size: float, unit: str = "nm") -> Path:
    """Write a DM3 file (see :func:`write_dm`)."""
    return write_dm(path, data, pixel_size, unit, version=3)
