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
