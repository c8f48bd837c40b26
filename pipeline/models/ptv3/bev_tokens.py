"""Spatial tokens on a fixed bird's-eye grid of the camera frame, so token n is the same region in every frame.

LAQ compares the tokens of two frames; with farthest-point tokens the n-th token of frame t and of frame
t+offset are unrelated places. Pooling per-point features into fixed cells of the camera's ground plane
(the point-cloud analogue of an image patch grid, as LAPA's latent-action encoder reads a ViT patch grid)
makes ego-motion visible as a shift of the token pattern: driving forward moves content to nearer rows,
turning moves it sideways.

Grid, OpenCV camera axes (x right, y down, z forward), units of the points (metres for ground-truth depth):
``cells_x`` columns over ``x in [-width/2, width/2)``, ``cells_z`` rows over ``z in [0, depth)``; height (y)
is ignored. Token ``n = row * cells_x + col`` (row 0 nearest the camera, col 0 leftmost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BEVGrid:
    """``cells_x`` x ``cells_z`` cells covering ``width`` x ``depth`` (points' units) in front of the camera."""

    cells_x: int
    cells_z: int
    width: float
    depth: float

    def __post_init__(self) -> None:
        if self.cells_x < 1 or self.cells_z < 1:
            raise ValueError(f"BEV grid needs >= 1 cell per axis, got {self.cells_x} x {self.cells_z}")
        if not (self.width > 0 and self.depth > 0):
            raise ValueError(f"BEV grid extent must be positive, got width {self.width}, depth {self.depth}")

    @property
    def n_tokens(self) -> int:
        return self.cells_x * self.cells_z

    def centres(self) -> np.ndarray:
        """(N, 3) cell centres in the camera frame, y = 0, token order."""
        col, row = np.meshgrid(np.arange(self.cells_x), np.arange(self.cells_z), indexing="xy")
        x = (col.ravel() + 0.5) * self.width / self.cells_x - self.width / 2
        z = (row.ravel() + 0.5) * self.depth / self.cells_z
        return np.stack([x, np.zeros_like(x), z], axis=1)

    def cell_of(self, xyz: np.ndarray) -> np.ndarray:
        """(M,) token index of each point (M, 3); -1 for points outside the grid."""
        col = np.floor((xyz[:, 0] + self.width / 2) / self.width * self.cells_x)
        row = np.floor(xyz[:, 2] / self.depth * self.cells_z)
        inside = (col >= 0) & (col < self.cells_x) & (row >= 0) & (row < self.cells_z)
        return np.where(inside, row * self.cells_x + col, -1).astype(np.int64)


def _cell_sums(cell: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(n, C) float64 sums of the rows of ``values`` (M, C) per ``cell`` (M,) in [0, n).

    One ``np.bincount`` over the flattened (cell, channel) bins: every bin adds its rows in row order from
    0.0 in float64, the same sums as ``np.add.at`` (bit for bit) at a fraction of the cost.
    """
    c = values.shape[1]
    bins = (cell[:, None] * c + np.arange(c)).reshape(-1)
    return np.bincount(bins, weights=values.astype(np.float64).reshape(-1), minlength=n * c).reshape(n, c)


def pool_bev(xyz: np.ndarray, features: np.ndarray, grid: BEVGrid) -> dict[str, np.ndarray]:
    """Mean features per cell of ``grid``.

    ``xyz`` (M, 3) points in the camera frame, ``features`` (M, C) one row per point. Returns ``tokens``
    (N, C) float32 (zeros in empty cells), ``token_xyz`` (N, 3) float32 (centroid of the cell's points, the
    cell centre at y = 0 when empty), ``token_mask`` (N,) bool (cell holds a point) and ``counts`` (N,) int64.
    """
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(features) != len(xyz):
        raise ValueError(f"pool_bev: xyz {xyz.shape} and features {features.shape} must be (M, 3) and (M, C)")
    cell = grid.cell_of(xyz)
    inside = cell >= 0
    cell = cell[inside]
    n = grid.n_tokens
    counts = np.bincount(cell, minlength=n)
    denom = np.maximum(counts, 1)[:, None]
    tokens = _cell_sums(cell, features[inside], n)
    centroid = _cell_sums(cell, xyz[inside], n)
    mask = counts > 0
    token_xyz = np.where(mask[:, None], centroid / denom, grid.centres())
    return {"tokens": (tokens / denom).astype(np.float32), "token_xyz": token_xyz.astype(np.float32),
            "token_mask": mask, "counts": counts.astype(np.int64)}
