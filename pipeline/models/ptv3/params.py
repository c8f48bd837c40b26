"""The ``concerto`` section of params.yaml (read by the ``concerto`` stage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    - ``spatial_tokens``: N, spatial tokens per frame (FPS centres over the voxels, Voronoi-mean features);
    - ``seed``: seeds random init, voxel choice, serialization shuffles and the ``max_points`` subsample;
    - ``max_points``: cap on points per frame before the encoder (uniform random subsample; 0 = no cap).
    """

    weights: str = "random"
    preset: Literal["tiny", "small", "base", "large"] = "tiny"
    points_from: Literal["pointclouds", "vggt"] = "pointclouds"
    grid_size: float = 0.02
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
        if self.max_points < 0 or 0 < self.max_points < 16:
            raise ValueError(f"max_points = {self.max_points} must be 0 (no cap) or >= 16")

    @property
    def random_weights(self) -> bool:
        return self.weights.strip() == "random"
