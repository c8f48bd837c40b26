"""The ``concerto`` section of params.yaml (read by the ``concerto`` stage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.models.ptv3.bev_tokens import BEVGrid

# params.yaml preset -> preset name of pipeline/models/ptv3/config.py
PRESET_NAMES = {"tiny": "tiny", "small": "concerto_small", "base": "concerto_base", "large": "concerto_large"}


@dataclass(frozen=True)
class ConcertoParams:
    """``concerto`` section of params.yaml.

    - ``weights``: ``random`` (the ``preset`` with seeded random init; announced everywhere, features carry no
      meaning), a released name (``concerto_small``, ``concerto_base``, ``concerto_large``, ... fetched from the
      Hugging Face repo ``Pointcept/Concerto``; needs network or a filled cache) or a local official ``.pth``;
    - ``preset``: architecture for random init: ``tiny`` (CPU), ``small``, ``base``, ``large``; ignored when
      ``weights`` names a checkpoint (the file carries its own config);
    - ``points_from``: ``pointclouds`` (``data/pointclouds``, from ground-truth depth, metres) or ``vggt``
      (``data/vggt/points`` from the vggt stage; VGGT units, arbitrary scale per sequence);
    - ``grid_size``: voxel size of the grid sampling, in the units of the points (metres for ``pointclouds``).
      Upstream uses 0.02 m; the offline CPU default is coarser to fit the time budget;
    - ``tokens``: layout of the per-frame spatial tokens. ``bev`` (default): a fixed bird's-eye grid of the
      camera frame, ``bev_cells_x`` x ``bev_cells_z`` cells over ``bev_width`` x ``bev_depth`` (units of the
      points), mean point features per cell, so token n is the same region in every frame
      (:mod:`pipeline.models.ptv3.bev_tokens`); ``fps``: ``spatial_tokens`` farthest-point centres over the
      voxels with Voronoi-mean features (not aligned across frames);
    - ``seed``: seeds random init, voxel choice, serialization shuffles and the ``max_points`` subsample;
    - ``max_points``: cap on points per frame before the encoder (uniform random subsample; 0 = no cap).
    """

    weights: str = "random"
    preset: Literal["tiny", "small", "base", "large"] = "tiny"
    points_from: Literal["pointclouds", "vggt"] = "pointclouds"
    grid_size: float = 0.02
    tokens: Literal["bev", "fps"] = "bev"
    bev_cells_x: int = 8
    bev_cells_z: int = 12
    bev_width: float = 32.0
    bev_depth: float = 48.0
    spatial_tokens: int = 64
    seed: int = 0
    max_points: int = 0

    def validate(self) -> None:
        if not self.weights.strip():
            raise ValueError("weights must be 'random', a released Concerto name or a .pth path")
        if not self.grid_size > 0:
            raise ValueError(f"grid_size = {self.grid_size} must be positive")
        if self.spatial_tokens < 1:
            raise ValueError(f"spatial_tokens = {self.spatial_tokens} must be >= 1")
        if self.bev_cells_x < 1 or self.bev_cells_z < 1:
            raise ValueError(f"bev_cells_x = {self.bev_cells_x} and bev_cells_z = {self.bev_cells_z} must be >= 1")
        if not (self.bev_width > 0 and self.bev_depth > 0):
            raise ValueError(f"bev_width = {self.bev_width} and bev_depth = {self.bev_depth} must be positive")
        if self.max_points < 0 or 0 < self.max_points < 16:
            raise ValueError(f"max_points = {self.max_points} must be 0 (no cap) or >= 16")

    @property
    def n_tokens(self) -> int:
        """Spatial tokens per frame of the chosen layout."""
        return self.bev_cells_x * self.bev_cells_z if self.tokens == "bev" else self.spatial_tokens

    def bev_grid(self):
        return BEVGrid(self.bev_cells_x, self.bev_cells_z, self.bev_width, self.bev_depth)

    @property
    def random_weights(self) -> bool:
        return self.weights.strip() == "random"
