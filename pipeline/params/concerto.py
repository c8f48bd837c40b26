"""Model of the ``concerto`` section (documented in params.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from pipeline.params.base import Count, Positive, Section, Seed, Source


class ConcertoParams(Section):
    """``concerto``: encoder weights, input points and token layout of the cached features (see params.yaml)."""

    weights: Source
    preset: Literal["tiny", "small", "base", "large"]
    points_from: Literal["drives", "pointclouds", "vggt"]
    grid_size: Positive
    tokens: Literal["bev", "fps"]
    bev_cells_x: Count
    bev_cells_z: Count
    bev_width: Positive
    bev_depth: Positive
    bev_ground: Literal["keep", "drop", "fill", "both"]
    bev_ground_margin: Annotated[float, Field(ge=0.0)]
    spatial_tokens: Count
    seed: Seed
    max_points: Annotated[int, Field(ge=0)]

    @field_validator("max_points")
    @classmethod
    def _no_cap_or_enough(cls, value: int) -> int:
        if 0 < value < 16:
            raise ValueError(f"max_points = {value} must be 0 (no cap) or >= 16")
        return value

    @property
    def random_weights(self) -> bool:
        return self.weights.strip() == "random"

    @property
    def n_tokens(self) -> int:
        """Spatial tokens per frame of the chosen layout."""
        return self.bev_cells_x * self.bev_cells_z if self.tokens == "bev" else self.spatial_tokens
