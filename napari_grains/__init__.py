"""napari-grains: crystal grain boundaries from micrographs, and grain measurement.

The core (everything importable without a screen) lives in this package's plain modules;
the napari face lives in :mod:`napari_grains._widgets` and friends, and the command line
in :mod:`napari_grains.cli`.
"""

__version__ = "0.1.0"

from napari_grains.errors import GrainsError

__all__ = ["GrainsError", "__version__"]
