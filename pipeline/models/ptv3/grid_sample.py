"""Voxelisation (grid sampling) of a point cloud: one representative point per occupied voxel.

Matches upstream `GridSample(mode="train", return_grid_coord=True, return_inverse=True)` in what it
computes: grid_coord = floor(coord / grid_size) - min(floor(coord / grid_size)), one point per voxel
chosen uniformly at random, and `inverse` mapping every input point to its voxel row. Differences
that do not change the encoder output: the representative is drawn from a seeded
`numpy.random.default_rng(seed)` (deterministic), and voxel rows are ordered lexicographically by
(x, y, z) instead of by upstream's FNV hash (the encoder is invariant to row order: it sorts by
curve codes, which are unique per voxel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridSampleResult:
    """index [M] chosen input rows; inverse [N] voxel row of each input point; grid_coord [M, 3] int64 >= 0."""

    index: np.ndarray
    inverse: np.ndarray
    grid_coord: np.ndarray


def grid_sample(coord: np.ndarray, grid_size: float, seed: int = 0) -> GridSampleResult:
    """Voxelise coord [N, 3] (metres) with cubic voxels of `grid_size` metres."""
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or coord.shape[0] == 0:
        raise ValueError(f"grid_sample: coord must be a non-empty (N, 3) array, got shape {coord.shape}")
    if not grid_size > 0:
        raise ValueError(f"grid_sample: grid_size must be > 0 metres, got {grid_size}")
    if not np.isfinite(coord).all():
        raise ValueError("grid_sample: coord contains NaN or inf")
    voxel = np.floor(coord / grid_size).astype(np.int64)
    voxel -= voxel.min(axis=0)
    dims = voxel.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) >= 2.0**62:
        raise ValueError(f"grid_sample: voxel extent {dims.tolist()} too large for grid_size {grid_size}")
    key = (voxel[:, 0] * dims[1] + voxel[:, 1]) * dims[2] + voxel[:, 2]
    order = np.argsort(key, kind="stable")
    _, first, inverse_sorted, counts = np.unique(key[order], return_index=True, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    pick = first + np.floor(rng.random(len(counts)) * counts).astype(np.int64)
    index = order[pick]
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = inverse_sorted.reshape(-1)
    return GridSampleResult(index=index, inverse=inverse, grid_coord=voxel[index])
