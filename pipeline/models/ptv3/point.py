"""The sparse point-set container passed between PTv3 modules.

One `PointBatch` holds M voxels (rows) of B clouds concatenated in cloud order:
- `coord`      [M, 3] float, metres (mean of the pooled children after a GridPooling),
- `grid_coord` [M, 3] int64 voxel indices >= 0 at the current stage resolution,
- `feat`       [M, C] float features,
- `batch`      [M] int64 cloud index, non-decreasing; `offset` [B] int64 cumulative row counts.
Serialization adds `serialized_order` / `serialized_inverse` [K, M] (K orders). After a pooling the
coarse batch records `parent` (the finer PointBatch) and `pooling_inverse` [M_parent] (row of the
coarse voxel each parent row went into), which the feature up-cast walks back.
`cache` holds per-stage sparse-conv neighbour maps and attention padding (same role as spconv's
`indice_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def offset_to_counts(offset: torch.Tensor) -> torch.Tensor:
    """[B] cumulative counts -> [B] per-cloud counts."""
    return torch.diff(offset, prepend=offset.new_zeros(1))


def offset_to_batch(offset: torch.Tensor) -> torch.Tensor:
    """[B] cumulative counts -> [M] cloud index per row."""
    counts = offset_to_counts(offset)
    return torch.repeat_interleave(torch.arange(len(counts), device=offset.device), counts)


def batch_to_offset(batch: torch.Tensor, num_clouds: int | None = None) -> torch.Tensor:
    """[M] non-decreasing cloud index -> [B] cumulative counts."""
    return torch.cumsum(torch.bincount(batch, minlength=num_clouds or 0), dim=0)


@dataclass
class PointBatch:
    coord: torch.Tensor
    grid_coord: torch.Tensor
    feat: torch.Tensor
    offset: torch.Tensor
    batch: torch.Tensor | None = None
    serialized_order: torch.Tensor | None = None
    serialized_inverse: torch.Tensor | None = None
    serialized_depth: int | None = None
    parent: "PointBatch | None" = None
    pooling_inverse: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch is None:
            self.batch = offset_to_batch(self.offset)
        m = self.coord.shape[0]
        if self.grid_coord.shape != (m, 3) or self.feat.shape[0] != m or self.batch.shape != (m,):
            raise ValueError(
                f"PointBatch: inconsistent rows coord {tuple(self.coord.shape)}, grid_coord "
                f"{tuple(self.grid_coord.shape)}, feat {tuple(self.feat.shape)}, batch {tuple(self.batch.shape)}"
            )

    @property
    def num_clouds(self) -> int:
        return int(self.offset.numel())
