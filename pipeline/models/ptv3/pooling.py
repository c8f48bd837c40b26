"""Grid pooling (stride-2 voxel coarsening) between PTv3 stages, with torch-only segment reduces.

`GridPooling`: proj Linear(C_in -> C_out) -> cluster rows by (cloud, grid_coord // stride) -> feat
reduced by max, coord by mean -> LayerNorm -> GELU -> re-serialize (orders shuffled, as upstream's
pooling always does). Coarse voxels are ordered lexicographically by (cloud, x, y, z), like
upstream's `torch.unique(dim=0)` on the batch-tagged coordinates.
"""

from __future__ import annotations

import torch
from torch import nn

from .point import PointBatch, batch_to_offset
from .serialization import serialize

_REDUCES = {"max": "max", "mean": "mean", "sum": "sum", "min": "min"}


def cluster_voxels(grid_coord: torch.Tensor, batch: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group rows by (cloud, grid_coord // stride).

    Returns (cluster [M] index of each row's group, counts [G], coarse grid_coord [G, 3], coarse batch [G]),
    groups sorted by (cloud, x, y, z).
    """
    g = torch.div(grid_coord.long(), stride, rounding_mode="floor")
    key = (batch.long() << 48) | (g[:, 0] << 32) | (g[:, 1] << 16) | g[:, 2]
    uniq, cluster, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    mask16 = (1 << 16) - 1
    coarse = torch.stack([(uniq >> 32) & mask16, (uniq >> 16) & mask16, uniq & mask16], dim=1)
    return cluster, counts, coarse, uniq >> 48


def segment_reduce(src: torch.Tensor, cluster: torch.Tensor, counts: torch.Tensor, reduce: str) -> torch.Tensor:
    """Reduce rows of src [M, C] into [G, C] by group index `cluster` [M] (every group non-empty).

    Rows are stably sorted by group, then `torch.segment_reduce` with lengths=counts (deterministic).
    """
    if reduce not in _REDUCES:
        raise ValueError(f"segment_reduce: reduce must be one of {sorted(_REDUCES)}, got {reduce!r}")
    order = torch.sort(cluster, stable=True).indices
    return torch.segment_reduce(src[order], _REDUCES[reduce], lengths=counts, axis=0)


class GridPooling(nn.Module):
    """Stride-s voxel pooling; parameter names as upstream (`proj`, `norm.0`)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, reduce: str = "max", shuffle_orders: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.reduce = reduce
        self.shuffle_orders = shuffle_orders
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.Sequential(nn.LayerNorm(out_channels))
        self.act = nn.Sequential(nn.GELU())

    def forward(self, point: PointBatch, orders: tuple[str, ...], generator: torch.Generator | None = None) -> PointBatch:
        cluster, counts, coarse_grid, coarse_batch = cluster_voxels(point.grid_coord, point.batch, self.stride)
        feat = segment_reduce(self.proj(point.feat), cluster, counts, self.reduce)
        coord = segment_reduce(point.coord, cluster, counts, "mean")
        feat = self.act(self.norm(feat))
        out = PointBatch(
            coord=coord,
            grid_coord=coarse_grid,
            feat=feat,
            offset=batch_to_offset(coarse_batch, point.num_clouds),
            batch=coarse_batch,
            parent=point,
            pooling_inverse=cluster,
        )
        out.serialized_order, out.serialized_inverse, out.serialized_depth = serialize(
            out.grid_coord, out.batch, orders, self.shuffle_orders, generator
        )
        return out
