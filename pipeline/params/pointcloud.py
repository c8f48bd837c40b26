"""Model of the ``pointcloud`` section (documented in params.yaml)."""

from __future__ import annotations

from typing import Literal

from pipeline.params.base import Count, MaxPoints, Neighbours, Positive, Section, Seed


class PointcloudParams(Section):
    """``pointcloud``: depth maps -> subsampled point clouds (see params.yaml)."""

    max_points: MaxPoints
    sampling: Literal["random", "fps"]
    far_m: Positive
    coordinates: Literal["camera", "world"]
    normals: Literal["grid", "knn"]
    normal_step_px: Count
    normal_neighbours: Neighbours
    seed: Seed
