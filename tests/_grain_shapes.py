"""Exact test geometries shared by the grain-measurement tests."""

from __future__ import annotations

import math

import numpy as np


def square_grid(n_cells: int = 10, period: int = 10) -> np.ndarray:
    """Boundary lines every ``period`` px, frame included: n_cells² cells of (period-1)² px."""
    size = n_cells * period + 1
    b = np.zeros((size, size), bool)
    b[::period, :] = True
    b[:, ::period] = True
    return b


def hex_tiling(shape=(200, 240), spacing=20.0):
    """Labels of the Voronoi cells of a hexagonal lattice (regular hexagons), and the seeds."""
    from scipy import ndimage as ndi

    h, w = shape
    seeds = np.zeros(shape, np.int32)
    k = 0
    row_step = spacing * math.sqrt(3) / 2
    for i in range(-1, int(h / row_step) + 2):
        for j in range(-1, int(w / spacing) + 2):
            r = i * row_step + 7.3
            c = j * spacing + (spacing / 2 if i % 2 else 0) + 5.1
            if 0 <= round(r) < h and 0 <= round(c) < w:
                k += 1
                seeds[round(r), round(c)] = k
    _, (ri, ci) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[ri, ci], k


def boundaries_of(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, bool)
    b[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    b[1:, :] |= labels[1:, :] != labels[:-1, :]
    return b
