"""Model of the ``vggt`` section (documented in params.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.params.base import MaxPoints, Neighbours, Positive, Section, Seed, Source


class VggtParams(Section):
    """``vggt``: weights, pre-processing, point output and evaluation of the vggt stage (see params.yaml)."""

    weights: Source
    preset: Literal["tiny", "1b"]
    revision: str
    frames_per_chunk: Annotated[int, Field(ge=2)]  # consecutive chunks share one frame
    target_size: Annotated[int, Field(ge=28, multiple_of=14)]  # patch size 14
    mode: Literal["crop", "pad"]
    max_points: MaxPoints
    sampling: Literal["random", "fps"]
    normal_neighbours: Neighbours
    max_frames: Annotated[int, Field(ge=0)]  # 0 = all
    eval_max_depth_m: Positive
    seed: Seed

    @property
    def random_weights(self) -> bool:
        return self.weights.strip() == "random"

