"""Input transform of Concerto (upstream `concerto.transform.default()`) and conversion to a PointBatch.

Steps on one cloud:
1. CenterShift(apply_z=True): subtract ((xmin+xmax)/2, (ymin+ymax)/2, zmin); metres, no scaling.
2. GridSample(grid_size, default 0.02 m): one seeded-random point per voxel (grid_sample.py).
3. Colour / 255 (uint8 0..255 in, float 0..1 out).
4. feat = [x, y, z, r, g, b, nx, ny, nz] of the kept points ([M, 9] float32).
Missing colour or normals are zeros, the in-distribution "missing" value used in Concerto training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .grid_sample import grid_sample
from .point import PointBatch


@dataclass(frozen=True)
class ConcertoInput:
    """One transformed cloud.

    coord [M, 3] float32 centred metres; grid_coord [M, 3] int64; feat [M, 9] float32;
    inverse [N] int64 voxel row of each input point; shift [3] float64 subtracted from the input coords.
    """

    coord: np.ndarray
    grid_coord: np.ndarray
    feat: np.ndarray
    inverse: np.ndarray
    shift: np.ndarray

    def to_point_batch(self, device: torch.device | str = "cpu") -> PointBatch:
        """A one-cloud PointBatch on `device`."""
        m = self.coord.shape[0]
        return PointBatch(
            coord=torch.from_numpy(self.coord).to(device),
            grid_coord=torch.from_numpy(self.grid_coord).to(device),
            feat=torch.from_numpy(self.feat).to(device),
            offset=torch.tensor([m], device=device),
        )


def _check(name: str, arr: np.ndarray | None, n: int) -> np.ndarray | None:
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.shape != (n, 3):
        raise ValueError(f"concerto transform: {name} must have shape ({n}, 3), got {arr.shape}")
    return arr


def concerto_transform(
    coords: np.ndarray,
    colors: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    grid_size: float = 0.02,
    seed: int = 0,
) -> ConcertoInput:
    """coords (N, 3) metres, colors (N, 3) uint8 0..255 or None, normals (N, 3) unit vectors or None."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3 or coords.shape[0] == 0:
        raise ValueError(f"concerto transform: coords must be a non-empty (N, 3) array, got {coords.shape}")
    n = coords.shape[0]
    colors = _check("colors", colors, n)
    normals = _check("normals", normals, n)
    if colors is not None and colors.dtype != np.uint8:
        raise ValueError(f"concerto transform: colors must be uint8 0..255, got dtype {colors.dtype}")
    if normals is not None and not np.isfinite(normals).all():
        raise ValueError("concerto transform: normals contain NaN or inf")

    lo, hi = coords.min(axis=0), coords.max(axis=0)
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    centred = coords - shift
    gs = grid_sample(centred, grid_size, seed)
    idx = gs.index
    coord = centred[idx].astype(np.float32)
    rgb = (colors[idx].astype(np.float32) / 255.0) if colors is not None else np.zeros_like(coord)
    nrm = normals[idx].astype(np.float32) if normals is not None else np.zeros_like(coord)
    feat = np.concatenate([coord, rgb, nrm], axis=1)
    return ConcertoInput(coord=coord, grid_coord=gs.grid_coord, feat=feat, inverse=gs.inverse, shift=shift)
